"""A TerraTorch fine-tuning config (the LightningCLI YAML of ``terratorch fit -c config.yaml``, or the one it saves
beside its checkpoints) read into what xterramind needs, without terratorch: the model (``TaskSpec``), the inputs
with the statistics they were standardized with in training and their band order, the class names, and the
tiling of ``tiled_inference_parameters``.

Only data is read (``yaml.safe_load``); no class named in the config is imported. What xterramind does not
implement is refused here, naming what is supported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from ..errors import ConfigError
from .finetuned import MERGES, TaskSpec
from .registry import MODALITIES, MODELS, ModalitySpec, resolve_modality
from .sampling import Sampling

TASKS = {"SemanticSegmentationTask": "segmentation", "PixelwiseRegressionTask": "regression"}
FACTORY = "EncoderDecoderFactory"
VARIANTS = ("tiny", "small", "base", "large")
BACKBONES = tuple(f"terramind_v1_{v}{tim}" for v in VARIANTS for tim in ("", "_tim"))
TEST_BACKBONES = tuple(name for name, config in MODELS.items() if not config.official)  # micro: accepted, not offered

# TerraTorch's band names for TerraMind's pre-training bands (its ``PRETRAINED_BANDS``), in xterramind's order
TERRATORCH_BANDS = {
    "S2L2A": ("COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
              "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2"),
    "S2L1C": ("COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
              "NIR_NARROW", "WATER_VAPOR", "CIRRUS", "SWIR_1", "SWIR_2"),
    "RGB": ("RED", "GREEN", "BLUE"),
    "S1GRD": ("VV", "VH"),
    "S1RTC": ("VV", "VH"),
    "DEM": ("DEM",),
}

# model_args that change nothing at inference (training, loading of pre-trained weights, or no-ops)
IGNORED_ARGS = {"backbone_pretrained", "backbone_ckpt_path", "backbone_img_size", "backbone_drop_path_rate",
                "backbone_drop_rate", "backbone_attn_drop_rate", "backbone_modality_drop_rate", "padding",
                "backbone_padding", "backbone_patch_size"}
TIM_ARGS = {"tim_modalities", "tim_chained_generations", "tim_decoding_steps", "tim_temps", "tim_top_p", "tim_top_k"}


@dataclass(frozen=True)
class TaskConfig:
    """A fine-tuning config, read.

    Attributes:
        spec: the model.
        inputs: per input modality, its spec as the fine-tuned model takes it: the bands (xterramind names, in the
            model's order) and the mean and standard deviation each was standardized with in training, in the
            data's own units (the data module's ``constant_scale`` folded in).
        class_names: the classes' names where the config gives them (``class_names``), else ``None``.
        tiling: ``(tile_size, overlap)`` from ``tiled_inference_parameters`` where they fit the token lattice, else None.
        text: the config as read (YAML): what a recipe carries to rebuild the model elsewhere.
    """

    spec: TaskSpec
    inputs: tuple[ModalitySpec, ...]
    class_names: tuple[str, ...] | None
    tiling: tuple[int, int] | None
    text: str


def read_config(config: str | os.PathLike | Mapping) -> TaskConfig:
    """Read a TerraTorch fine-tuning config: a file, YAML text, or the mapping it holds.

    Raises:
        ConfigError: not a TerraTorch config of a supported task, backbone, neck, decoder or head; no
            standardization statistics for an input.

    Example:
        >>> task = read_config("sen1floods11_terramind_tiny.yaml")
        >>> task.spec.kind, [spec.name for spec in task.inputs]
        ('segmentation', ['S2L1C', 'S1GRD'])
    """
    text, data = _load(config)
    model = _section(data, "model")
    arguments = model.get("init_args", model) if isinstance(model.get("init_args", model), Mapping) else {}
    kind = _kind(model)
    if arguments.get("model_factory", FACTORY) != FACTORY:
        raise ConfigError(f"model_factory {arguments['model_factory']!r} is not supported; xterramind runs "
                          f"{FACTORY} models (TerraMind backbone, necks, decoder, head)")
    args = dict(_mapping(arguments.get("model_args"), "model.init_args.model_args"))
    spec, bands = _spec(kind, args)
    inputs = _inputs(spec, bands, _mapping(_section(data, "data").get("init_args", {}), "data.init_args"))
    names = arguments.get("class_names")
    return TaskConfig(spec, inputs, tuple(str(n) for n in names) if names else None,
                      _tiling(arguments.get("tiled_inference_parameters")), text)


def _load(config) -> tuple[str, dict]:
    if isinstance(config, Mapping):
        return yaml.safe_dump(dict(config), sort_keys=False), dict(config)
    if isinstance(config, (str, os.PathLike)) and "\n" not in str(config):
        path = Path(config).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (pass the YAML of `terratorch fit -c`, or the "
                              "config.yaml it saved beside the checkpoints)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a config: it is not text (pass the YAML of `terratorch fit -c`; the "
                              "checkpoint comes second)") from None
    elif isinstance(config, str):
        text = config
    else:
        raise ConfigError(f"config must be a file path, YAML text or a mapping, got {type(config).__name__}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"the config is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise ConfigError("the config is not a TerraTorch fine-tuning config: expected a mapping with model: and data:")
    return text, dict(data)


def _section(data: Mapping, name: str) -> Mapping:
    section = data.get(name)
    if not isinstance(section, Mapping):
        raise ConfigError(f"the config has no {name}: section; a TerraTorch fine-tuning config has model: "
                          "(the task, its model_args) and data: (the data module, with means and stds)")
    return section


def _mapping(value, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _kind(model: Mapping) -> str:
    task = str(model.get("class_path", "")).rsplit(".", 1)[-1]
    if task not in TASKS:
        raise ConfigError(f"model.class_path {model.get('class_path')!r} is not a supported task; supported: "
                          f"{sorted(TASKS)} (terratorch.tasks.<name>)")
    return TASKS[task]


def _spec(kind: str, args: dict) -> tuple[TaskSpec, dict]:
    backbone = str(args.pop("backbone", ""))
    if backbone not in BACKBONES and backbone.removesuffix("_tim") not in TEST_BACKBONES:
        raise ConfigError(f"backbone {backbone!r} is not TerraMind; xterramind runs fine-tuned TerraMind models: "
                          f"{list(BACKBONES)}")
    tim = backbone.endswith("_tim")
    modalities = args.pop("backbone_modalities", None)
    if not modalities:
        raise ConfigError("model_args has no backbone_modalities: name the inputs, e.g. [S2L2A] or [S2L1C, S1GRD]")
    names = [_modality(name) for name in modalities]
    bands = {_modality(name): list(value) for name, value in (args.pop("backbone_bands", None) or {}).items()}
    if tim and bands:
        raise ConfigError("backbone_bands cannot be set with a TiM backbone (TerraTorch refuses it too)")
    merge = args.pop("backbone_merge_method", "mean")
    if merge not in MERGES:
        raise ConfigError(f"backbone_merge_method {merge!r} is not supported for a pixel-wise model; supported: {MERGES}")
    tim_options = {k.removeprefix("backbone_"): args.pop(k) for k in list(args) if k.removeprefix("backbone_") in TIM_ARGS}
    if tim_options and not tim:
        raise ConfigError(f"{sorted(tim_options)} are TiM options but the backbone {backbone} has no TiM; use "
                          f"{backbone}_tim")
    if int(tim_options.get("tim_decoding_steps", 1)) != 1:
        raise ConfigError("tim_decoding_steps other than 1 is not supported (TerraMind's TiM decodes in one step)")
    thoughts = tuple(_tim_modality(name) for name in tim_options.get("tim_modalities", ["LULC"])) if tim else ()
    outputs = args.pop("num_classes", None) if kind == "segmentation" else args.pop("num_outputs", 1)
    args.pop("num_classes" if kind == "regression" else "num_outputs", None)
    if kind == "segmentation" and not isinstance(outputs, int):
        raise ConfigError("model_args has no num_classes: a segmentation model needs its number of classes")
    for name in ("aux_decoders", "peft_config", "image_size_out"):
        if args.get(name):
            raise ConfigError(f"model_args {name} is not supported by xterramind's predict")
    decoder = args.pop("decoder", "FCNDecoder")
    decoder_args = {k.removeprefix("decoder_"): args.pop(k) for k in list(args) if k.startswith("decoder_")}
    head_args = {k.removeprefix("head_"): args.pop(k) for k in list(args) if k.startswith("head_")}
    necks = tuple(args.pop("necks", None) or ())
    rescale = bool(args.pop("rescale", True))
    unknown = sorted(k for k in args if k not in IGNORED_ARGS)
    if unknown:
        raise ConfigError(f"model_args {unknown} are not supported by xterramind's predict")
    inputs = tuple((name, len(bands[name]) if name in bands else None) for name in names)
    sampling = Sampling(int(tim_options.get("tim_top_k", 0)), float(tim_options.get("tim_top_p", 0.8)),
                        float(tim_options.get("tim_temps", 1.0)))
    spec = TaskSpec(kind, backbone.removesuffix("_tim"), inputs, int(outputs), str(decoder), necks, decoder_args,
                    head_args, merge, rescale, thoughts, sampling, bool(tim_options.get("tim_chained_generations", True)))
    return spec, bands


def _modality(name) -> str:
    """A TerraTorch modality name (``S2L2A``, ``S1GRD``, ``untok_sen2l2a@224``, ...) as xterramind's."""
    try:
        spec = resolve_modality(str(name))
    except KeyError:
        spec = None
    if spec is None or spec.kind != "image":
        raise ConfigError(f"backbone modality {name!r} is not supported; a fine-tuned model's inputs are pixel "
                          f"modalities: {list(TERRATORCH_BANDS)}")
    return spec.name


def _tim_modality(name) -> str:
    """A TiM modality (``LULC``, ``S1GRD``, ``NDVI``, ...) as the name of its token grid, without ``tok_``."""
    for candidate in (f"tok_{name}", str(name)):
        try:
            spec = resolve_modality(candidate)
        except KeyError:
            continue
        if spec.kind == "tokens":
            return spec.name.removeprefix("tok_")
    grids = [spec.name.removeprefix("tok_") for spec in MODALITIES.values() if spec.kind == "tokens"]
    raise ConfigError(f"tim_modalities {name!r} is not supported; supported: {grids}")


def _inputs(spec: TaskSpec, bands: dict, data: Mapping) -> tuple[ModalitySpec, ...]:
    """Each input's spec as the fine-tuned model takes it: its bands and the data module's statistics."""
    inputs = []
    means, stds = data.get("means"), data.get("stds")
    for index, (name, _) in enumerate(spec.inputs):
        base = resolve_modality(name)
        chosen = bands.get(name)
        band_names = _bands(name, chosen) if chosen else base.bands
        mean, std = (_statistic(values, name, index, len(spec.inputs), what) for values, what in
                     ((means, "means"), (stds, "stds")))
        for values, what in ((mean, "means"), (std, "stds")):
            if len(values) != len(band_names):
                raise ConfigError(f"the data module's {what} for {name} hold {len(values)} values, but the model "
                                  f"takes {len(band_names)} bands {list(band_names)}")
        if any(value <= 0 for value in std):
            raise ConfigError(f"the data module's stds for {name} must be positive, got {list(std)}")
        scale = _scale(data.get("constant_scale", 1.0), name)  # the data module feeds (x * scale - mean) / std
        inputs.append(replace(base, bands=tuple(band_names), mean=tuple(m / scale for m in mean),
                              std=tuple(s / scale for s in std)))
    return tuple(inputs)


def _bands(name: str, chosen: list) -> tuple[str, ...]:
    """``backbone_bands`` of a modality (TerraTorch's names, or xterramind's) as xterramind's band names."""
    ours, theirs = resolve_modality(name).bands, TERRATORCH_BANDS[name]
    found = []
    for band in chosen:
        if str(band) in ours:
            found.append(str(band))
        elif str(band).upper() in theirs:
            found.append(ours[theirs.index(str(band).upper())])
        else:
            raise ConfigError(f"backbone_bands for {name}: {band!r} is not one of TerraMind's {name} bands "
                              f"{list(theirs)} (TerraTorch's names; new bands are not supported)")
    return tuple(found)


def _statistic(values, name: str, index: int, count: int, what: str) -> list[float]:
    """One input's ``means`` or ``stds``: a mapping by modality (multimodal data modules), or a list for the
    only input (single-modality ones)."""
    if isinstance(values, Mapping):
        found = next((v for k, v in values.items() if _same(k, name)), None)
    elif isinstance(values, (list, tuple)) and count == 1:
        found = values
    else:
        found = None
    if found is None:
        raise ConfigError(f"the config's data module gives no {what} for {name}: a fine-tuned model is standardized "
                          f"with its dataset's statistics; add data.init_args.{what}" +
                          (f".{name}" if count > 1 else ""))
    try:
        return [float(v) for v in found]
    except (TypeError, ValueError):
        raise ConfigError(f"the data module's {what} for {name} must be numbers, got {found!r}") from None


def _scale(value, name: str) -> float:
    """The data module's ``constant_scale`` for one input (one number, or a mapping by modality)."""
    if isinstance(value, Mapping):
        value = next((v for k, v in value.items() if _same(k, name)), 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"the data module's constant_scale for {name} must be a positive number, got {value!r}")
    return float(value)


def _same(key, name: str) -> bool:
    try:
        return resolve_modality(str(key)).name == name
    except KeyError:
        return False


def _tiling(parameters) -> tuple[int, int] | None:
    """``(tile_size, overlap)`` from TerraTorch's ``tiled_inference_parameters`` (crop and stride), where they lie
    on the 16 px token lattice with an even number of overlapping tokens; else None (the defaults)."""
    if not isinstance(parameters, Mapping):
        return None
    crop = parameters.get("crop", parameters.get("h_crop"))
    stride = parameters.get("stride", parameters.get("h_stride"))
    if not isinstance(crop, int) or not isinstance(stride, int):
        return None
    overlap = crop - stride
    return (crop, overlap) if crop % 16 == 0 and overlap % 32 == 0 and 0 <= overlap < crop else None
