"""A fine-tuned model over a cube, ``predict`` against TerraTorch's ``tiled_inference``: time and peak memory.

    python -m benchmarks.predict --reference-python /path/to/venv-with-terratorch/bin/python [--sizes 1920 3840]
                                 [--predict-sizes 7680] [--rounds 2]

The model: a Sen1Floods11-like fine-tuning of TerraMind-tiny (S2L2A in; SelectIndices, ReshapeTokensToImage and
LearnedInterpolateToPyramidal necks; UNetDecoder [64, 32, 16, 8]; 2 classes), written by the benchmark as TerraTorch
leaves one (LightningCLI ``config.yaml`` and a Lightning ``.ckpt``) with seeded random weights. Both sides: that
checkpoint, fp32 on the CPU, 224 px tiles at stride 192, batch 8, the bundled real Sentinel-2 scene mirrored into a
``size`` x ``size`` px cube, each run in a fresh process and the ways alternated ``--rounds`` times (best kept).

- xterramind: ``load_task -> predict -> to_zarr`` from the cube stored as zarr (the classes, as stored by default);
- terratorch: the model built by its ``EncoderDecoderFactory`` from the same config with the checkpoint's state dict,
  the cube in memory (``tiled_inference`` needs it there) standardized with the config's statistics, the logits
  blended by ``tiled_inference`` and the argmax taken (``SemanticSegmentationTask``'s ``output_most_probable``).

At ``--predict-sizes`` only xterramind runs: predict's regions are 1920 px a side here (120 tokens), two in flight on
two cores, so its memory is bounded once a cube holds a few regions (1920^2 is one), which 7680^2 (16) shows; the
reference would hold that cube, padded, in float32 twice over.

Peak memory is the process's peak RSS, each in its own process (each includes its model). ``others``: the cores the
rest of the machine used during the kept run (from /proc/stat, as ``benchmarks.timing``), so that noise shows.
Without ``--reference-python`` only xterramind's figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.engine import SEED, best_alternated, build_source, in_fresh_process, open_source, peak_rss_gb
from benchmarks.plumbing import L2A_BANDS
from benchmarks.timing import foreign_seconds, machine_mark

STRIDE, TILE = 192, 224
REFERENCE = "terratorch tiled_inference"


def _result(started: tuple) -> dict:
    """Wall seconds since ``started``, this process's peak RSS, and the cores the rest of the machine used meanwhile."""
    wall, foreign = time.perf_counter() - started[2], foreign_seconds(started)
    others = None if foreign is None else max(0.0, foreign) / wall
    return {"seconds": wall, "peak_gb": peak_rss_gb(), "others": others}


def write_task(folder: Path) -> tuple[Path, Path]:
    """``config.yaml`` and ``task.ckpt`` of the benchmark's model, seeded weights, laid out as ``terratorch fit``
    leaves them (the state dict under ``model.``)."""
    import torch
    import yaml

    from xterramind.models.finetuned import FineTuned
    from xterramind.models.registry import resolve_modality
    from xterramind.models.task_config import read_config
    from xterramind.models.weights import empty_module, init_seeded_

    spec = resolve_modality("S2L2A")
    model_args = {"backbone": "terramind_v1_tiny", "backbone_pretrained": False, "backbone_modalities": ["S2L2A"],
                  "necks": [{"name": "SelectIndices", "indices": [2, 5, 8, 11]},
                            {"name": "ReshapeTokensToImage", "remove_cls_token": False},
                            {"name": "LearnedInterpolateToPyramidal"}],
                  "decoder": "UNetDecoder", "decoder_channels": [64, 32, 16, 8], "num_classes": 2}
    init_args = {"model_factory": "EncoderDecoderFactory", "model_args": model_args, "loss": "ce",
                 "class_names": ["Others", "Flood"],
                 "tiled_inference_parameters": {"crop": TILE, "stride": STRIDE, "batch_size": 8}}
    config = {"model": {"class_path": "terratorch.tasks.SemanticSegmentationTask", "init_args": init_args},
              "data": {"class_path": "terratorch.datamodules.GenericNonGeoSegmentationDataModule",
                       "init_args": {"batch_size": 8, "means": list(spec.mean), "stds": list(spec.std)}}}
    config_path, checkpoint = folder / "config.yaml", folder / "task.ckpt"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    module = init_seeded_(empty_module(lambda: FineTuned(read_config(config).spec)), SEED)
    torch.save({"epoch": 0, "global_step": 1, "state_dict": {f"model.{k}": v for k, v in module.state_dict().items()},
                "hyper_parameters": init_args}, checkpoint)
    return config_path, checkpoint


def child_xterramind(cube_path: Path, out: Path, config: Path, checkpoint: Path, batch: int) -> dict:
    import xterramind

    task = xterramind.load_task(config, checkpoint, device="cpu", precision="fp32")
    cube = open_source(cube_path)
    shutil.rmtree(out, ignore_errors=True)
    started = machine_mark()
    floods = cube.terramind.predict(task, batch_size=batch, tile_size=TILE, overlap=TILE - STRIDE)
    floods.terramind.to_zarr(out, progress=False)
    return _result(started)


def child_terratorch(pixels_path: Path, config: Path, checkpoint: Path, batch: int) -> dict:
    import torch
    import yaml

    from benchmarks.reference_worker import registries

    _library, _backbones, _full = registries()
    from terratorch.models import EncoderDecoderFactory
    from terratorch.tasks.tiled_inference import tiled_inference

    settings = yaml.safe_load(config.read_text())
    model = EncoderDecoderFactory().build_model("segmentation", **settings["model"]["init_args"]["model_args"])
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=True)
    model.eval()
    data = settings["data"]["init_args"]
    mean, std = torch.tensor(data["means"])[:, None, None], torch.tensor(data["stds"])[:, None, None]
    started = machine_mark()
    pixels = torch.from_numpy(np.load(pixels_path).astype(np.float32))
    standardized = ((pixels - mean) / std)[None]
    with torch.inference_mode():
        logits = tiled_inference(lambda chips: model(chips).output, standardized, crop=TILE, stride=STRIDE,
                                 batch_size=batch, verbose=False)
        classes = logits.argmax(dim=1).to(torch.uint8)
    return _result(started) | {"shape": list(classes.shape)}


def _child(*args, python: str | None = None) -> dict:
    return in_fresh_process("benchmarks.predict", *args, python=python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", "--size", type=int, nargs="+", default=[1920, 3840])
    parser.add_argument("--predict-sizes", type=int, nargs="*", default=[7680], help="sizes run by xterramind alone")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", "--repeat", type=int, default=2)
    parser.add_argument("--reference-python", default=os.environ.get("XTERRAMIND_REFERENCE_PYTHON"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        result = (child_xterramind(Path(path), Path(rest[0]), Path(rest[1]), Path(rest[2]), int(rest[3]))
                  if kind == "xterramind" else
                  child_terratorch(Path(path), Path(rest[0]), Path(rest[1]), int(rest[2])))
        print(json.dumps(result))
        return
    print(f"TerraMind-tiny S2L2A UNet segmentation (2 classes), fp32, CPU ({os.cpu_count()} cores), {TILE} px tiles "
          f"at stride {STRIDE}, batch {args.batch}; best of {args.rounds} alternated fresh processes")
    header = f"{'size':>6}{'what':>30}{'s':>8}{'km2/s':>8}{'peak GB':>9}{'others':>8}"
    print(header + (f"{'speed vs tt':>13}{'memory vs tt':>14}" if args.reference_python else ""))
    with tempfile.TemporaryDirectory(prefix="xterramind-predict-") as folder:
        folder = Path(folder)
        config, checkpoint = write_task(folder)
        for size in [*args.sizes, *(s for s in args.predict_sizes if s not in args.sizes)]:
            cube = build_source(size, folder, L2A_BANDS)
            ways = {"xterramind predict -> to_zarr": (("xterramind", cube, folder / "predict.zarr", config, checkpoint,
                                                       args.batch), None)}
            if args.reference_python and size in args.sizes:  # the cube in memory, as tiled_inference needs it
                pixels = folder / f"pixels-{size}.npy"
                np.save(pixels, open_source(cube).values)
                ways[REFERENCE] = (("terratorch", pixels, config, checkpoint, args.batch), args.reference_python)
            best = best_alternated(ways, args.rounds, _child)
            reference = best.get(REFERENCE)
            km2 = (size * 10 / 1000) ** 2
            for what, run in best.items():
                others = "?" if run["others"] is None else f"{run['others']:.2f}"
                line = (f"{size:>6}{what:>30}{run['seconds']:>8.1f}{km2 / run['seconds']:>8.2f}{run['peak_gb']:>9.2f}"
                        f"{others:>8}")
                if reference:
                    line += f"{reference['seconds'] / run['seconds']:>12.2f}x{run['peak_gb'] / reference['peak_gb']:>13.2f}x"
                print(line, flush=True)


if __name__ == "__main__":
    main()
