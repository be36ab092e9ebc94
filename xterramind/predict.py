"""The ``predict`` verb: a TerraMind model fine-tuned with TerraTorch (``xterramind.load_task``) over a cube.

Tiles lie on the same global lattice as every verb's; each tile's output is blended into its neighbours' with
weights that depend on the lattice only, so the result does not depend on chunks or workers. Segmentation blends
the class probabilities (each tile's softmax) and takes the most likely class after blending, never before;
regression blends the values, in the model's units. A TiM model draws each tile's token grids from a seed of
(``seed``, the tile's global position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from . import products
from .arguments import flag, whole_number
from .engine import Layout, check_model, lay_out, provenance
from .errors import ConfigError, MissingBandsError
from .geo import georeferenced
from .models.sampling import tile_seed
from .models.task_handle import TaskModel
from .tiles import Tiles
from .verb import PIXELS, Prepared, Verb

__all__ = ["PREDICT", "predict", "prepare"]

OUTPUT = "prediction"  # the blended output: class probabilities, or values
CLASSES, PROBABILITY = "classes", "class_probability"


@dataclass(frozen=True)
class PredictJob:
    """What a predict region task needs besides its windows."""

    tiles: Tiles
    kind: str  # "segmentation" or "regression"
    outputs: int  # classes, or values per pixel
    seed: int  # TiM models: each tile's draws come from (seed, its position)
    blend: bool = True
    probabilities: str | None = None  # segmentation: how class_probability is stored (None: not)

    @property
    def class_dtype(self) -> np.dtype:
        """The smallest unsigned dtype holding every class and the nodata value (its largest value)."""
        return np.dtype(np.uint8 if self.outputs < 255 else np.uint16 if self.outputs < 65535 else np.uint32)


def prepare(
    cube: xr.Dataset | xr.DataArray,
    model: TaskModel,
    *,
    modalities=None,
    seed: int = 0,
    tile_size: int | None = None,
    overlap: int | None = None,
    chunks: int | None = None,
    batch_size: int | None = None,
    blend: bool = True,
    probabilities: str | None = None,
    check_input: bool = True,
) -> Prepared:
    """Predicting with a fine-tuned model: a Dataset on the input's pixel grid (see the accessor). The tiling
    defaults to the config's ``tiled_inference_parameters`` where they fit the token lattice, else the backbone's
    tile with 32 px of overlap."""
    check_model(model, TaskModel)
    seed, blend = whole_number("seed", seed), flag("blend", blend)
    probabilities = products.probabilities_option(probabilities)
    tiling = model.task.tiling or (model.config.image_size, 32)
    wanted = [spec.name for spec in model.inputs]
    layout = lay_out(cube, model, wanted if modalities is None else modalities,
                     tile_size=tiling[0] if tile_size is None else tile_size,
                     overlap=tiling[1] if overlap is None else overlap, chunks=chunks, batch_size=batch_size,
                     check_input=check_input, specs={spec.name: spec for spec in model.inputs})
    _check_inputs(layout, wanted)
    segmentation = model.kind == "segmentation"
    job = PredictJob(layout.tiles, model.kind, model.outputs, seed, blend, probabilities if segmentation else None)
    if segmentation:
        outputs = {CLASSES: (job.class_dtype, ())}
        if job.probabilities:
            outputs[PROBABILITY] = (np.dtype(job.probabilities), (job.outputs,))
    else:
        outputs = {OUTPUT: (np.float32, (job.outputs,) if job.outputs > 1 else ())}
    attrs = provenance(model, layout.tiles.modalities, seed if model.task.spec.tim else None, layout) | {
        "product": "prediction", "task": model.kind, "blend": int(blend)}
    return Prepared(PREDICT, layout, job, model, outputs, lambda arrays: _dataset(arrays, job, layout, model, attrs))


def predict(cube: xr.Dataset | xr.DataArray, model: TaskModel, **options) -> xr.Dataset:
    """Lazily predict with a fine-tuned model over the cube (see ``prepare`` and the accessor)."""
    return prepare(cube, model, **options).lazy()


def _check_inputs(layout: Layout, wanted: list[str]) -> None:
    given = list(layout.tiles.modalities)
    if sorted(given) != sorted(wanted):
        raise MissingBandsError(f"the model was fine-tuned on {wanted}; the cube gives {given}: pass "
                                f"modalities= naming {wanted} (a list, or each with its cube's band names)")


def kernel(job: PredictJob, model: TaskModel, inputs: dict, batch) -> dict[str, torch.Tensor]:
    """A batch's outputs as blended: class probabilities (the softmax of the scores), or values."""
    seeds = [tile_seed(job.seed, *ref.origin) for ref in batch] if model.task.spec.tim else None
    out, size = model.predict(inputs, seeds), next(iter(inputs.values())).shape[-2:]
    if out.shape[-2:] != size:
        raise ConfigError(f"the model gives {tuple(out.shape[-2:])} px for a {tuple(size)} px tile: set "
                          "rescale: true in its config's model_args (TerraTorch's default)")
    return {OUTPUT: torch.softmax(out, dim=1) if job.kind == "segmentation" else out}


def _stitched(job: PredictJob) -> dict:
    return {"channels": {OUTPUT: job.outputs}, "blend": job.blend}


def finish(job: PredictJob, model: TaskModel, blended: tuple[dict[str, torch.Tensor], torch.Tensor]
           ) -> dict[str, np.ndarray]:
    """Blended outputs -> blocks: the most likely class (from the float blend) and, if asked, the probabilities; or
    the values (NaN where there is no valid input)."""
    means, mask = blended
    mean = means[OUTPUT]
    if job.kind == "regression":
        return {OUTPUT: (mean if job.outputs > 1 else mean[0]).numpy()}
    nodata = np.iinfo(job.class_dtype).max
    classes = products.most_likely(mean, getattr(torch, job.class_dtype.name)).masked_fill_(~mask, nodata)
    out = {CLASSES: classes.numpy()}
    if job.probabilities:
        out[PROBABILITY] = products.stored_probabilities(mean, job.probabilities)
    return out


def _dataset(arrays, job: PredictJob, layout: Layout, model: TaskModel, attrs: dict) -> xr.Dataset:
    time = ("time",) * (layout.times is not None)
    if job.kind == "segmentation":
        names = model.task.class_names or tuple(f"class_{i}" for i in range(job.outputs))
        variables = {CLASSES: xr.DataArray(arrays[CLASSES], dims=(*time, "y", "x"), attrs={
            "long_name": "most likely class, after blending the tiles' probabilities",
            "flag_values": list(range(job.outputs)), "flag_meanings": " ".join(n.replace(" ", "_") for n in names),
            "nodata": int(np.iinfo(job.class_dtype).max)})}
        if PROBABILITY in arrays:
            variables[PROBABILITY] = products.probability_array(arrays[PROBABILITY], time, names)
    else:
        dims = (*time, "output", "y", "x") if job.outputs > 1 else (*time, "y", "x")
        variables = {OUTPUT: xr.DataArray(arrays[OUTPUT], dims=dims, attrs={
            "long_name": "predicted value, blended across tiles (the model's units)"})}
    dataset = xr.Dataset(variables, coords=layout.time_coords())
    dataset.attrs = attrs
    for var in dataset.data_vars.values():
        var.attrs |= {k: v for k, v in attrs.items() if k not in var.attrs}
    return georeferenced(dataset, products.output_grid(layout, layout.tiling.grid))


PREDICT = Verb("predict", prepare, kernel, PIXELS, _stitched, finish, takes=TaskModel)
