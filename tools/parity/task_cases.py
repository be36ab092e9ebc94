"""The fine-tuned-model parity cases: TerraTorch ``model_args`` of ``EncoderDecoderFactory`` models, shared by the
golden writer (``make_task_goldens.py``, run beside terratorch) and the tests (``tests/test_task_parity.py``).

Each case is one model (backbone, necks, decoder, head) built by TerraTorch's own task class, with seeded random
weights (``xterramind.models.weights.seeded_tensor``, a pure function of seed, name and shape), run on seeded,
already standardized inputs (``tools.parity.cases.make_input``) at one or more sizes. Neither weights nor inputs
are stored; the goldens keep the outputs (summarized by ``summarize``), the checkpoint layout and input checksums.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from tools.parity.cases import SEED, InputSpec, make_input

TIM_SEED = 20260501  # random.seed() before TerraTorch's TiM forward: it draws its generation seed with random.randint

# TerraTorch's names of TerraMind's pre-training bands (its PRETRAINED_BANDS), in TerraMind's order
BANDS = {
    "S2L2A": ["COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
              "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2"],
    "S2L1C": ["COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
              "NIR_NARROW", "WATER_VAPOR", "CIRRUS", "SWIR_1", "SWIR_2"],
    "S1GRD": ["VV", "VH"],
    "S1RTC": ["VV", "VH"],
    "DEM": ["DEM"],
}

# a data module's statistics (TerraMind's pre-training ones, moved a little: a fine-tuning set has its own)
MEANS = {
    "S2L2A": [1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988,
              2424.884, 1857.648],
    "S2L1C": [2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.56, 3306.481, 1473.847,
              506.07, 2472.825, 1838.929],
    "S1GRD": [-12.599, -20.293],
    "S1RTC": [-10.93, -17.329],
    "DEM": [670.665],
}
STDS = {
    "S2L2A": [2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
              1434.261, 1334.311],
    "S2L1C": [1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732, 1727.26, 1024.687,
              442.165, 1331.411, 1160.419],
    "S1GRD": [5.195, 5.89],
    "S1RTC": [4.391, 4.459],
    "DEM": [951.272],
}

PYRAMID = [{"name": "SelectIndices", "indices": [2, 5, 8, 11]}, {"name": "ReshapeTokensToImage", "remove_cls_token": False},
           {"name": "LearnedInterpolateToPyramidal"}]
UNET = {"decoder": "UNetDecoder", "decoder_channels": [64, 32, 16, 8]}


@dataclass(frozen=True)
class Run:
    """One forward pass: a batch of ``batch`` tiles of ``height`` x ``width`` pixels."""

    name: str
    batch: int
    height: int
    width: int


R224 = Run("224", 2, 224, 224)  # the pre-training size, two tiles
R96x128 = Run("96x128", 1, 96, 128)  # another size, not square


@dataclass(frozen=True)
class TaskCase:
    """One fine-tuned model as TerraTorch builds it, and what it is run on.

    ``tim_seeds``: for a TiM model, xterramind's first per-tile seed (tile ``i`` gets ``tim_seeds[0] + i``; with
    greedy decoding they change nothing), or ``None``: the seed TerraTorch draws for the batch after
    ``random.seed(TIM_SEED)``, which only a batch of one can reproduce (TerraTorch draws one stream per batch).
    """

    name: str
    task: str  # terratorch.tasks.<task>
    model_args: dict
    runs: tuple[Run, ...] = (R224, R96x128)
    seed: int = SEED
    tim_seeds: tuple[int, ...] | None = ()
    compares: str = ""  # what the case checks, in words
    task_args: dict = field(default_factory=dict)  # other init args of the task (loss, class_names, ...)

    @property
    def modalities(self) -> list[str]:
        return list(self.model_args["backbone_modalities"])

    @property
    def tim(self) -> bool:
        return self.model_args["backbone"].endswith("_tim")

    def bands(self, modality: str) -> list[str]:
        """The bands the model takes, TerraTorch's names, in its order."""
        return list((self.model_args.get("backbone_bands") or {}).get(modality, BANDS[modality]))

    def statistics(self, modality: str) -> tuple[list[float], list[float]]:
        """The data module's means and stds of the model's bands."""
        index = [BANDS[modality].index(band) for band in self.bands(modality)]
        return [MEANS[modality][i] for i in index], [STDS[modality][i] for i in index]

    def inputs(self, run: Run) -> dict[str, torch.Tensor]:
        """Seeded standardized inputs ``(B, C, H, W)`` by modality name (TerraTorch's and xterramind's alike)."""
        return {name: make_input(f"task-{self.name}:{run.name}",
                                 InputSpec(name, name, (run.batch, len(self.bands(name)), run.height, run.width)))
                for name in self.modalities}

    def seeds(self, run: Run) -> list[int]:
        """xterramind's per-tile TiM seeds for ``run``."""
        if self.tim_seeds is None:
            if run.batch != 1:
                raise ValueError(f"{self.name}: TerraTorch's own TiM draws are reproducible for one tile only")
            return [reference_tim_seed()]
        return [self.tim_seeds[0] + i for i in range(run.batch)] if self.tim_seeds else list(range(run.batch))


def reference_tim_seed() -> int:
    """The generation seed TerraTorch's TiM draws after ``random.seed(TIM_SEED)``."""
    return random.Random(TIM_SEED).randint(-(2**31), 2**31 - 1)


def _case(name, task="SemanticSegmentationTask", *, modalities=("S2L2A",), backbone="terramind_v1_tiny", necks=None,
          decoder=None, classes=2, compares="", runs=(R224, R96x128), tim_seeds=(), task_args=None, **args) -> TaskCase:
    model_args = {"backbone": backbone, "backbone_pretrained": False, "backbone_modalities": list(modalities)}
    model_args |= {k: v for k, v in args.items() if k.startswith("backbone_")}
    model_args["necks"] = PYRAMID if necks is None else necks
    model_args |= decoder or UNET
    model_args |= {k: v for k, v in args.items() if not k.startswith("backbone_")}
    if task == "SemanticSegmentationTask":
        model_args["num_classes"] = classes
    return TaskCase(name, task, model_args, tuple(runs), tim_seeds=tim_seeds, compares=compares,
                    task_args=dict(task_args or {}))


CASES: dict[str, TaskCase] = {case.name: case for case in (
    _case("unet_tiny", head_dropout=0.1, compares="tiny S2L2A, LearnedInterpolateToPyramidal, UNetDecoder, "
          "segmentation head: logits at 224 px (2 tiles) and 96x128"),
    _case("unet_tiny_multimodal", modalities=("S2L1C", "S1GRD"), backbone_merge_method="mean",
          task_args={"loss": "dice"},
          compares="two inputs (S2L1C 13 bands, S1GRD) merged by their mean, UNet: logits at 224 px and 96x128"),
    _case("upernet_tiny", decoder={"decoder": "UperNetDecoder", "decoder_channels": 64,
                                   "decoder_pool_scales": [1, 2, 3, 6], "decoder_align_corners": False},
          classes=3, compares="UperNetDecoder (pooling pyramid, FPN, align_corners false) on the learned pyramid, "
          "its 56 px output rescaled bilinearly: logits at 224 px and 96x128"),
    _case("upernet_tiny_scale_modules", necks=[{"name": "SelectIndices", "indices": [3, 5, 7, 11]},
                                               {"name": "ReshapeTokensToImage", "remove_cls_token": False}],
          decoder={"decoder": "UperNetDecoder", "decoder_channels": 32, "decoder_scale_modules": True},
          compares="UperNetDecoder's own (deprecated) scale modules instead of the neck, align_corners true "
          "(the default): logits at 224 px and 96x128"),
    _case("unet_base_swiglu", backbone="terramind_v1_base", runs=(Run("224", 1, 224, 224), Run("64x96", 1, 64, 96)),
          compares="base (SwiGLU MLP, no linear biases, 768 wide) with UNet: logits at 224 px (1 tile) and 64x96"),
    _case("regression_tiny", "PixelwiseRegressionTask",
          necks=[{"name": "SelectIndices", "indices": [5, 11]}, {"name": "ReshapeTokensToImage"},
                 {"name": "InterpolateToPyramidal"}, {"name": "AddBottleneckLayer"}],
          decoder={"decoder": "FCNDecoder", "decoder_channels": 32, "decoder_num_convs": 2},
          head_learned_upscale_layers=1, head_channel_list=[16], head_final_act="torch.nn.Softplus",
          head_dropout=0.1, task_args={"loss": "rmse"},
          compares="pixel-wise regression: ReshapeTokensToImage's class-token fallback (remove_cls_token left at "
          "true), InterpolateToPyramidal, AddBottleneckLayer, FCNDecoder, the regression head's pixel-shuffle "
          "upscale, conv-BN block and Softplus: (B, H, W) values at 224 px and 96x128"),
    _case("tim_tiny", backbone="terramind_v1_tiny_tim", backbone_tim_modalities=["LULC"], backbone_tim_temps=0.0,
          runs=(R224, Run("128", 1, 128, 128)), tim_seeds=(7,),
          compares="TiM (LULC) with greedy decoding (backbone_tim_temps 0: argmax on both sides, so the draws cannot "
          "differ): the generated LULC tokens exactly, then the logits, at 224 px (2 tiles) and 128 px"),
    _case("tim_tiny_sampled", backbone="terramind_v1_tiny_tim", backbone_tim_modalities=["LULC"],
          runs=(Run("224", 1, 224, 224),), tim_seeds=None,
          compares="TiM (LULC) with TerraTorch's own sampling (temperature 1, top-p 0.8) and its own random draws, "
          "for one tile: xterramind given the seed TerraTorch drew; the tokens exactly, then the logits"),
    _case("tim_tiny_two", backbone="terramind_v1_tiny_tim", backbone_tim_modalities=["LULC", "NDVI"],
          backbone_tim_temps=0.0, backbone_tim_top_k=5, runs=(R224,), tim_seeds=(3,),
          decoder={"decoder": "FCNDecoder", "decoder_channels": 32},
          necks=[{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage", "remove_cls_token": False}],
          compares="two chained TiM modalities (LULC, then NDVI conditioned on it), greedy: both token grids "
          "exactly, then the logits of an FCNDecoder model at 224 px"),
    _case("fcn_tiny_bands", backbone_bands={"S2L2A": ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1"]},
          necks=[{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage", "remove_cls_token": False},
                 {"name": "PermuteDims", "new_order": [0, 1, 3, 2]}],
          decoder={"decoder": "FCNDecoder", "decoder_channels": 64, "decoder_num_convs": 4},
          head_channel_list=[32], classes=4,
          compares="a 5-band subset of S2L2A (backbone_bands: a 5-channel patch embedding), PermuteDims (maps "
          "transposed: on 96x128 the output comes out 128x96 and is rescaled), FCNDecoder, a head with a conv block"),
    _case("linear_tiny_max", modalities=("S2L2A", "S1GRD"), backbone_merge_method="max",
          necks=[{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage", "remove_cls_token": False}],
          decoder={"decoder": "LinearDecoder", "decoder_upsampling_size": 16, "decoder_num_classes": 3}, classes=3,
          compares="max merge of two inputs, LinearDecoder (a transposed convolution to the classes). TerraTorch "
          "1.2.11 needs decoder_num_classes for it (its factory reads includes_head from the registry, which says "
          "False) and puts a segmentation head (a 1x1 convolution) after it"),
    _case("identity_tiny", necks=[{"name": "SelectIndices", "indices": [3, 7, 11]},
                                  {"name": "ReshapeTokensToImage", "remove_cls_token": False},
                                  {"name": "MaxpoolToPyramidal"}],
          decoder={"decoder": "IdentityDecoder", "decoder_out_index": -1}, head_channel_list=[64],
          compares="MaxpoolToPyramidal, IdentityDecoder of the most pooled map (3x3 at 224 px), head with a conv "
          "block, bilinear rescale by ~75x"),
    _case("unet_tiny_concat", modalities=("S2L2A", "S1RTC", "DEM"), backbone_merge_method="concat",
          decoder={"decoder": "UNetDecoder", "decoder_channels": [64, 32, 16, 8]}, classes=2,
          compares="concat merge of three inputs (576 channels per layer), the learned pyramid and UNet on them; "
          "missing_mod_token is loaded though never used (all inputs given)"),
)}


# -- shared tensors and what the goldens keep of an output --------------------------------------------------------------


def _lattice(size: int, step: int) -> list[int]:
    return sorted({*range(0, size, step), size - 1})


def summarize(output: torch.Tensor) -> dict[str, np.ndarray]:
    """What the goldens keep of an output ``(B, C, H, W)`` (or ``(B, H, W)``), to stay a few KB: every pixel on a
    lattice (every 4th row and column, and the last ones; every 2nd on small outputs), and every row's and column's
    mean over all pixels. Each is within the tolerance when the whole output is, so comparing them asks no more of
    xterramind than the output itself; together they see every pixel (the means) and most of them one by one."""
    out = output.detach().double()
    step = 4 if out.shape[-2] * out.shape[-1] > 128 * 128 else 2
    rows, cols = _lattice(out.shape[-2], step), _lattice(out.shape[-1], step)
    return {
        "shape": np.asarray(output.shape, dtype=np.int64),
        "lattice": out[..., rows, :][..., cols].float().numpy(),
        "row_mean": out.mean(-1).numpy(),
        "col_mean": out.mean(-2).numpy(),
    }


def aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """In a state dict, the names of shared (tied) tensors -> the first name, in the state dict's order, of the
    tensor each shares."""
    first, found = {}, {}
    for key, tensor in state.items():
        if tensor.numel() == 0 or tensor.dim() == 0:
            continue
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                    tuple(tensor.stride()))
        if identity in first:
            found[key] = first[identity]
        else:
            first[identity] = key
    return found
