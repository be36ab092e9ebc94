"""``xterramind run`` configuration files: what to run, over which area, from which pixels, to where.

A YAML (or JSON) mapping; paths are relative to the file:

    area: [9.0, 45.0, 9.5, 45.5]        # west, south, east, north in degrees, or a GeoJSON file
    source:                             # one of these three:
      stac: catalog.json                #   a static catalogue, an item collection, or a STAC API URL
      collections: [sentinel-2-l2a]     #   (searching an API)
      modalities: [S2L2A]
      time: 2024-06-01/2024-08-31
      composite: median
    # source: {cube: scene.zarr}        #   an opened cube (zarr or GeoTIFF): the run uses its own grid
    # source: {synthetic: {modalities: [S2L2A], land: [9.0, 45.0, 9.2, 45.5]}}
    verb: embed                         # embed | generate | tokenize | detokenize | predict
    # task: {config: config.yaml, checkpoint: best.ckpt}   # predict: a model fine-tuned with TerraTorch
    options: {batch_size: 64}           # the verb's options, e.g. {targets: [LULC], seed: 0} to generate,
                                        # {dtype: int8} for a quarter of the size (embed), {probabilities: uint8}
    model: terramind_v1_base
    weights: auto                       # auto | random | a checkpoint file
    device: auto                        # auto | cuda | cuda:N | cpu (each worker's device)
    precision: auto                     # auto | fp32 | bf16 | fp16
    output: area.zarr
    cluster: tcp://scheduler:8786       # default: a cluster on this machine
    resolution: 10                      # metres per pixel (STAC and synthetic sources)
    region: 256                         # region (store chunk) side in tokens
    in_flight: 32                       # regions on the cluster at once
    gpu: auto                           # auto | true | false
    zarr_format: 2                      # 2 opens with every GDAL from 3.6 (QGIS); 3 needs GDAL 3.11
    overviews: false                    # true: coarser levels for viewers once every region is written
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .arguments import nearest, unknown
from .errors import ConfigError, ForeignStoreError, OptionError, StoreError, UnknownModelError
from .store import DEFAULT_ZARR_FORMAT, open_result

KEYS = {"area", "source", "verb", "options", "model", "weights", "device", "precision", "output", "cluster",
        "resolution", "region", "in_flight", "gpu", "zarr_format", "task", "overviews"}
TASK_KEYS = ("config", "checkpoint")  # task: of verb: predict, the files of a TerraTorch fine-tuning
SOURCE_KINDS = ("stac", "cube", "synthetic")
SOURCE_KEYS = {"stac": {"stac", "modalities", "collections", "time", "composite", "mask_clouds"}, "cube": {"cube"},
               "synthetic": {"synthetic"}}
SYNTHETIC_KEYS = {"modalities", "land", "seed"}
CHOICES = {"gpu": ("auto", True, False), "zarr_format": (2, 3), "overviews": (True, False)}  # YAML: auto, true, false
TEXTS = {"model": "a model name, e.g. model: terramind_v1_base", "weights": "auto, random or a checkpoint file",
         "device": "auto, cpu, cuda or cuda:N", "precision": "auto, fp32, bf16 or fp16",
         "output": "a path, e.g. output: area.zarr", "cluster": "a scheduler's address, e.g. cluster: tcp://scheduler:8786"}
NAMES = {"modalities": "S2L2A", "collections": "sentinel-2-l2a"}  # settings that hold a list of names

__all__ = ["RunConfig", "load_config"]


@dataclass
class RunConfig:
    """A checked run configuration: the file's settings (see the module docstring), paths resolved against
    ``folder``, and the objects a run needs made from them. Get one with ``load_config``.

    ``xterramind run`` makes the source, plan and model with the three methods below and hands them to
    ``xterramind.runner.run``; do the same to run a configuration from Python, e.g. on your own client.

    Example:
        >>> config = load_config("europe.yaml")
        >>> source = config.make_source()
        >>> report = runner.run(config.make_plan(source), source, config.verb, config.make_model(), config.output,
        ...                     **config.options)
    """

    area: object
    source: dict
    output: Path
    verb: str = "embed"
    options: dict = field(default_factory=dict)
    model: str = "terramind_v1_base"
    weights: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    cluster: str | None = None
    resolution: float = 10.0
    region: int = 256
    in_flight: int | None = None
    gpu: str | bool = "auto"
    zarr_format: int = DEFAULT_ZARR_FORMAT
    overviews: bool = False
    task: dict | None = None  # verb: predict: {config: ..., checkpoint: ...}
    folder: Path = Path(".")

    def make_source(self):
        """The source the ``source:`` setting names: a ``xterramind.sources.StacSource``, a
        ``xterramind.sources.CubeSource`` of the opened cube, or a ``xterramind.sources.SyntheticSource``.

        Example:
            >>> source = load_config("europe.yaml").make_source()
        """
        from . import sources

        kind = next(k for k in SOURCE_KINDS if k in self.source)
        if kind == "synthetic":
            spec = self.source["synthetic"] or {}
            land = spec.get("land")
            return sources.SyntheticSource(spec.get("modalities", ["S2L2A"]), seed=spec.get("seed", 0),
                                           land=str(self._path(land)) if isinstance(land, str) else land)
        if kind == "cube":
            return sources.CubeSource(open_cube(self._path(self.source["cube"])))
        where = self.source["stac"]
        where = where if str(where).startswith(("http://", "https://")) else str(self._path(where))
        extra = {k: self.source[k] for k in ("collections", "time", "composite", "mask_clouds") if k in self.source}
        return sources.StacSource(where, self.source.get("modalities", ["S2L2A"]), **extra)

    def make_plan(self, source):
        """The plan of ``area``: on the cube's own grid for a cube source (``xterramind.planner.plan_grid``),
        else one grid per UTM zone at ``resolution`` (``xterramind.planner.plan_area``). A fine-tuned model's
        tiles are its config's (``tiled_inference_parameters``), as ``predict`` takes them.

        Example:
            >>> plan = config.make_plan(config.make_source())
            >>> plan.regions
        """
        from . import planner, sources
        from .models.task_config import read_config

        tiling = read_config(self._path(self.task["config"])).tiling if self.task is not None else None
        tiles = dict(zip(("tile_size", "overlap"), tiling, strict=True)) if tiling else {}
        if isinstance(source, sources.CubeSource):
            return planner.plan_grid(source.grid, self.area, region=self.region, **tiles)
        return planner.plan_area(self.area, resolution=self.resolution, region=self.region, **tiles)

    def make_model(self, *, stand_in: bool = False):
        """The model of ``model``, ``weights``, ``device`` and ``precision``, loaded with
        ``xterramind.load_model`` (a checkpoint path is relative to the file); for ``verb: predict`` the fine-tuned
        model of ``task:``, loaded with ``xterramind.load_task``.

        Args:
            stand_in: the same model on seeded random weights, on the CPU: what a dry run that is given the
                speed needs (the model's tiles and output sizes), without the checkpoint.

        Raises:
            WeightsUnavailableError: the weights cannot be had.

        Example:
            >>> model = load_config("europe.yaml").make_model()
        """
        from .models import TaskModel, TaskRecipe, load_model, load_task

        if self.task is not None:
            config, checkpoint = (str(self._path(self.task[key])) for key in TASK_KEYS)
            if stand_in:  # the config's model, its weights not loaded: tiles and output sizes only
                return TaskModel(TaskRecipe(Path(config).read_text(), checkpoint, "cpu", "fp32"))
            return load_task(config, checkpoint, device=self.device, precision=self.precision)
        if stand_in:
            return load_model(self.model, weights="random", device="cpu", precision="fp32")
        weights = self.weights if self.weights in ("auto", "random") else str(self._path(self.weights))
        return load_model(self.model, weights=weights, device=self.device, precision=self.precision)

    def _path(self, value) -> Path:
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else self.folder / path


def load_config(path) -> RunConfig:
    """Read and check a run configuration file (YAML or JSON, see the module docstring).

    Unknown, missing or ill-typed settings fail here, before anything is loaded or planned; relative paths
    are taken relative to the file, so a configuration runs from any working directory.

    Raises:
        ConfigError: the file cannot be read, is not a mapping, has unknown, missing or ill-typed settings, or
            a ``source:`` that names not exactly one of ``stac``, ``cube``, ``synthetic``; each message names
            the setting and its fix in the file's words.

    Example:
        >>> config = load_config("europe.yaml")
        >>> config.verb, config.output
        ('embed', PosixPath('europe.zarr'))
    """
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read the run configuration {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of settings (area:, source:, output:, ...)")
    _check_known(path, raw, KEYS, "", "the settings are")
    missing = [key for key in ("area", "source", "output") if key not in raw]
    if missing:
        raise ConfigError(f"{path}: missing {missing}; a run needs area:, source: and output:")
    source = raw["source"]
    kinds = [k for k in SOURCE_KINDS if isinstance(source, dict) and k in source]
    if len(kinds) != 1:
        raise ConfigError(f"{path}: source: needs exactly one of {list(SOURCE_KINDS)}, e.g. source: {{stac: catalog.json}}")
    _check_source(path, source, kinds[0])
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: options: must be a mapping of the verb's options, e.g. {{batch_size: 64}}")
    _check_verb(path, raw.get("verb", "embed"), options)
    _check_task(path, raw.get("verb", "embed"), raw.get("task"))
    _check_settings(path, raw)
    folder = path.parent
    area = raw["area"]
    area = str(folder / area) if isinstance(area, str) and not Path(area).is_absolute() else area
    settings = {k: v for k, v in raw.items() if k not in ("area", "source", "output", "options")}
    return RunConfig(area=area, source=source, output=folder / str(raw["output"]), options=options, folder=folder,
                     **settings)


def _check_task(path: Path, verb, task) -> None:
    """``task:`` is there exactly for ``verb: predict``, naming both files of the fine-tuned model."""
    example = "task: {config: config.yaml, checkpoint: best.ckpt}"
    if verb != "predict":
        if task is not None:
            raise ConfigError(f"{path}: task: is for verb: predict (a fine-tuned model); verb: {verb} runs model:")
        return
    if not isinstance(task, dict):
        raise ConfigError(f"{path}: verb: predict needs the fine-tuned model's files: {example}")
    _check_known(path, task, set(TASK_KEYS), " in task:", "they are")
    for key in TASK_KEYS:
        if not isinstance(task.get(key), str):
            raise ConfigError(f"{path}: task: {key}: must be a file path, e.g. {example}, got {_said(task.get(key))}")
        file = Path(task[key]).expanduser()
        if not (file if file.is_absolute() else path.parent / file).is_file():
            raise ConfigError(f"{path}: task: {key}: no file at {task[key]} (relative paths are taken from the "
                              "run file's folder)")


def _check_known(path: Path, given: dict, known, where: str, listing: str) -> None:
    """Fail on a key of ``given`` not in ``known`` (settings ``where``), with the nearest known key for a misspelt one."""
    wrong = unknown(map(str, given), known)
    if wrong:
        guesses = [f"{guess}:" for guess in (nearest(name, sorted(known)) for name in wrong) if guess]
        hint = f" (did you mean {' or '.join(guesses)}?)" if guesses else ""
        raise ConfigError(f"{path}: unknown settings {wrong}{where}{hint}; {listing} {sorted(known)}")


def _check_verb(path: Path, verb, options: dict) -> None:
    """The verb and its options, checked as ``xterramind.runner`` checks them but said as settings of the file."""
    import yaml

    from . import runner

    if not isinstance(verb, str) or verb not in runner.VERBS:
        raise ConfigError(f"{path}: verb: must be one of {', '.join(runner.VERBS)}, got {_said(verb)}")
    planned, unknown, missing = runner.option_mistakes(verb, options)
    if planned:
        raise ConfigError(f"{path}: options: {planned} belong to the plan, not the verb: set the region side with "
                          "region: (tokens); tiles are the model's own")
    if unknown:
        raise ConfigError(f"{path}: options: unknown {unknown} for verb: {verb}; its options are "
                          f"{runner.verb_options(verb)[1]}")
    if missing:
        example = yaml.safe_dump({name: runner.EXAMPLES.get(name, "...") for name in missing},
                                 default_flow_style=True).strip()
        raise ConfigError(f"{path}: verb: {verb} needs options: {example} (or other values)")
    for key, choices in _option_choices().items():
        _check_choice(path, f"options: {key}:", options, key, choices)


def _option_choices() -> dict:
    """The verb options with a few values, as the file spells them (the verbs check them again, in Python's words)."""
    from .embed import DTYPES
    from .products import PROBABILITIES

    return {"dtype": DTYPES, "probabilities": (*PROBABILITIES, None, False)}


def _check_choice(path: Path, said: str, settings: dict, key: str, choices) -> None:
    """``settings[key]``, when set, is one of ``choices``, of the very type (``true`` is not ``1``)."""
    if key in settings and not any(settings[key] == value and type(settings[key]) is type(value) for value in choices):
        spelt = ", ".join(_said(value) if isinstance(value, bool) or value is None else str(value) for value in choices)
        raise ConfigError(f"{path}: {said} must be one of {spelt}, got {_said(settings[key])}")


def _check_settings(path: Path, raw: dict) -> None:
    """The value of each top-level setting, before anything is loaded: its kind, its choices, the model's name."""
    from . import runtime
    from .models import get_config

    for key, choices in CHOICES.items():
        _check_choice(path, f"{key}:", raw, key, choices)
    for key, what in TEXTS.items():
        if key in raw and not (isinstance(raw[key], str) or (key == "cluster" and raw[key] is None)):
            raise ConfigError(f"{path}: {key}: must be {what}, got {_said(raw[key])}")
    for key, check in {"device": runtime.device_named, "precision": runtime.precision_named}.items():
        try:
            check(raw.get(key, "auto"))
        except OptionError:  # said in the file's words
            raise ConfigError(f"{path}: {key}: must be {TEXTS[key]}, got {_said(raw[key])}") from None
    if raw.get("in_flight") is not None:  # null: the default
        _check_whole(path, "in_flight:", raw, "in_flight", 1)
    _check_whole(path, "region:", raw, "region", 1)
    resolution = raw.get("resolution", RunConfig.resolution)
    if isinstance(resolution, bool) or not isinstance(resolution, int | float) or not resolution > 0:
        raise ConfigError(f"{path}: resolution: must be a positive number of metres per pixel, e.g. resolution: 10, "
                          f"got {_said(resolution)}")
    _check_area(path, "area:", "area", raw["area"])
    try:
        get_config(raw.get("model", RunConfig.model))
    except UnknownModelError as error:
        raise ConfigError(f"{path}: model: {error}") from None


def _said(value) -> str:
    """A setting's value as the file would spell it: ``true``, ``null``, ``[1, 2]``; text quoted."""
    import yaml

    return repr(value) if isinstance(value, str) else yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]


def _check_whole(path: Path, said: str, settings: dict, key: str, minimum: int | None = None) -> None:
    """``settings[key]``, when set, is a whole number (not a bool, not ``2.0``) of at least ``minimum``."""
    value = settings.get(key, minimum or 0)
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        at_least = "" if minimum is None else f" of at least {minimum}"
        raise ConfigError(f"{path}: {said} must be a whole number{at_least}, got {_said(value)}")


def _check_area(path: Path, said: str, key: str, area) -> None:
    """An area is a file (a string), a GeoJSON mapping or four numbers; ``xterramind.planner`` checks the rest."""
    numbers = isinstance(area, list) and len(area) == 4 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                                for v in area)
    if not (isinstance(area, str | dict) or numbers):
        raise ConfigError(f"{path}: {said} must be [west, south, east, north] in degrees, a GeoJSON polygon or a "
                          f"GeoJSON file, e.g. {key}: [9.0, 45.0, 9.5, 45.5], got {_said(area)}")


def _check_source(path: Path, source: dict, kind: str) -> None:
    """Misspelt source settings, and values of the wrong kind, fail here rather than deep inside the source."""
    _check_known(path, source, SOURCE_KEYS[kind], f" in a {kind} source", "they are")
    spec = source[kind] if kind != "synthetic" else source[kind] or {}
    if kind == "synthetic" and (not isinstance(spec, dict) or set(spec) - SYNTHETIC_KEYS):
        raise ConfigError(f"{path}: source: {{synthetic: ...}} takes a mapping of {sorted(SYNTHETIC_KEYS)}")
    if kind in ("stac", "cube") and not isinstance(spec, str):
        raise ConfigError(f"{path}: source: {{{kind}: ...}} must be a path{' or URL' * (kind == 'stac')}, got {_said(spec)}")
    settings = spec if kind == "synthetic" else source
    where = "source: {synthetic: {%s: ...}}" if kind == "synthetic" else "source: {%s: ...}"
    for key, example in NAMES.items():
        names = settings.get(key, [example])
        if not (isinstance(names, list) and names and all(isinstance(name, str) for name in names)):
            raise ConfigError(f"{path}: {where % key} must be a list of names, e.g. {key}: [{example}], got {_said(names)}")
    if kind == "synthetic":
        _check_whole(path, where % "seed", spec, "seed")
        if "land" in spec:
            _check_area(path, where % "land", "land", spec["land"])
    if "mask_clouds" in source and not isinstance(source["mask_clouds"], bool):
        raise ConfigError(f"{path}: {where % 'mask_clouds'} must be true or false, got {_said(source['mask_clouds'])}")
    if source.get("composite") not in (None, "median"):
        raise ConfigError(f"{path}: {where % 'composite'} must be median (or left out), got {_said(source['composite'])}")


def open_cube(path: Path):
    """A cube file as xarray: a zarr store (as ``xterramind.open`` reads it) or a raster (GeoTIFF), lazily."""
    import rasterio
    import rioxarray
    import zarr

    if not path.exists():
        raise ConfigError(f"source: {{cube: ...}}: no cube at {path}")
    try:
        if path.is_dir():  # as xterramind.open: a store of xterramind's as the result written (tokens: a token grid)
            return _one_cube(open_result(path))
        cube = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 2048, "x": 2048})
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
            rasterio.errors.RasterioIOError, ForeignStoreError):
        raise ConfigError(f"source: {{cube: ...}}: {path} is neither a zarr store nor a raster file (GeoTIFF)") from None
    except StoreError as error:  # an area run of several zones: which one is not said
        raise ConfigError(f"source: {{cube: ...}}: {error}") from None
    names = cube.attrs.get("long_name")  # the bands' descriptions (B02, ...), where the raster has them
    if isinstance(names, (tuple, list)) and len(names) == cube.sizes["band"] and all(names):
        cube = cube.assign_coords(band=[str(name) for name in names])
    return cube


def _one_cube(opened):
    """A store of one ``(band, y, x)`` variable (``cube.to_dataset(name=...).to_zarr()``) as that cube; else as it
    is (a variable per modality)."""
    import xarray as xr

    if isinstance(opened, xr.Dataset) and len(opened.data_vars) == 1:
        (variable,) = opened.data_vars.values()
        if "band" in variable.dims:
            return variable
    return opened
