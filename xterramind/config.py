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
    verb: embed                         # embed | generate | tokenize
    options: {batch_size: 64}           # the verb's options, e.g. {targets: [LULC], seed: 0} to generate
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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, UnknownModelError
from .store import DEFAULT_ZARR_FORMAT

KEYS = {"area", "source", "verb", "options", "model", "weights", "device", "precision", "output", "cluster",
        "resolution", "region", "in_flight", "gpu", "zarr_format"}
SOURCE_KINDS = ("stac", "cube", "synthetic")
SOURCE_KEYS = {"stac": {"stac", "modalities", "collections", "time", "composite", "mask_clouds"}, "cube": {"cube"},
               "synthetic": {"synthetic"}}
SYNTHETIC_KEYS = {"modalities", "land", "seed"}
CHOICES = {"gpu": ("auto", True, False), "zarr_format": (2, 3)}  # YAML spellings: auto, true, false; 2, 3

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
            return sources.CubeSource(_open_cube(self._path(self.source["cube"])))
        where = self.source["stac"]
        where = where if str(where).startswith(("http://", "https://")) else str(self._path(where))
        extra = {k: self.source[k] for k in ("collections", "time", "composite", "mask_clouds") if k in self.source}
        return sources.StacSource(where, self.source.get("modalities", ["S2L2A"]), **extra)

    def make_plan(self, source):
        """The plan of ``area``: on the cube's own grid for a cube source (``xterramind.planner.plan_grid``),
        else one grid per UTM zone at ``resolution`` (``xterramind.planner.plan_area``).

        Example:
            >>> plan = config.make_plan(config.make_source())
            >>> plan.regions
        """
        from . import planner, sources

        if isinstance(source, sources.CubeSource):
            from .modalities import grid_of, resolve

            first = resolve(source.cube)[0]
            return planner.plan_grid(grid_of(first.data, first.spec.name), self.area, region=self.region)
        return planner.plan_area(self.area, resolution=self.resolution, region=self.region)

    def make_model(self, *, stand_in: bool = False):
        """The model of ``model``, ``weights``, ``device`` and ``precision``, loaded with
        ``xterramind.load_model`` (a checkpoint path is relative to the file).

        Args:
            stand_in: the same model on seeded random weights, on the CPU: what a dry run that is given the
                speed needs (the model's tiles and output sizes), without the checkpoint.

        Raises:
            WeightsUnavailableError: the weights cannot be had.

        Example:
            >>> model = load_config("europe.yaml").make_model()
        """
        from . import load_model

        if stand_in:
            return load_model(self.model, weights="random", device="cpu", precision="fp32")
        weights = self.weights if self.weights in ("auto", "random") else str(self._path(self.weights))
        return load_model(self.model, weights=weights, device=self.device, precision=self.precision)

    def _path(self, value) -> Path:
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else self.folder / path


def load_config(path) -> RunConfig:
    """Read and check a run configuration file (YAML or JSON, see the module docstring).

    Unknown or missing settings fail here, before anything is loaded or planned; relative paths are
    taken relative to the file, so a configuration runs from any working directory.

    Raises:
        InputError: the file cannot be read, is not a mapping, has unknown or missing settings, or a
            ``source:`` that names not exactly one of ``stac``, ``cube``, ``synthetic``.

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
        raise InputError(f"cannot read the run configuration {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path} must hold a mapping of settings (area:, source:, output:, ...)")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise InputError(f"{path}: unknown settings {unknown}; the settings are {sorted(KEYS)}")
    missing = [key for key in ("area", "source", "output") if key not in raw]
    if missing:
        raise InputError(f"{path}: missing {missing}; a run needs area:, source: and output:")
    source = raw["source"]
    kinds = [k for k in SOURCE_KINDS if isinstance(source, dict) and k in source]
    if len(kinds) != 1:
        raise InputError(f"{path}: source: needs exactly one of {list(SOURCE_KINDS)}, e.g. source: {{stac: catalog.json}}")
    _check_source(path, source, kinds[0])
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise InputError(f"{path}: options: must be a mapping of the verb's options, e.g. {{batch_size: 64}}")
    _check_verb(path, raw.get("verb", "embed"), options)
    _check_settings(path, raw)
    folder = path.parent
    area = raw["area"]
    area = str(folder / area) if isinstance(area, str) and not Path(area).is_absolute() else area
    settings = {k: v for k, v in raw.items() if k not in ("area", "source", "output", "options")}
    return RunConfig(area=area, source=source, output=folder / str(raw["output"]), options=options, folder=folder,
                     **settings)


def _check_verb(path: Path, verb, options: dict) -> None:
    """The verb and its options, checked as ``xterramind.runner`` checks them but said as settings of the file."""
    import yaml

    from . import runner

    if verb not in runner.VERBS:
        raise InputError(f"{path}: verb: must be one of {', '.join(runner.VERBS)}, got {verb!r}")
    planned, unknown, missing = runner.option_mistakes(verb, options)
    if planned:
        raise InputError(f"{path}: options: {planned} belong to the plan, not the verb: set the region side with "
                         "region: (tokens); tiles are the model's own")
    if unknown:
        raise InputError(f"{path}: options: unknown {unknown} for verb: {verb}; its options are "
                         f"{runner.verb_options(verb)[1]}")
    if missing:
        example = yaml.safe_dump({name: runner.EXAMPLES[name] for name in missing}, default_flow_style=True).strip()
        raise InputError(f"{path}: verb: {verb} needs options: {example} (or other values)")


def _check_settings(path: Path, raw: dict) -> None:
    """Settings with a fixed set of values, a model name and the regions in flight, before anything is loaded."""
    from .models import get_config

    for key, choices in CHOICES.items():
        if key in raw and not any(raw[key] == value and type(raw[key]) is type(value) for value in choices):
            spelt = ", ".join(str(value).lower() for value in choices)
            raise InputError(f"{path}: {key}: must be one of {spelt}, got {raw[key]!r}")
    in_flight = raw.get("in_flight")
    if in_flight is not None and (isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1):
        raise InputError(f"{path}: in_flight: must be a whole number of regions, at least 1, got {in_flight!r}")
    try:
        get_config(str(raw.get("model", RunConfig.model)))
    except UnknownModelError as error:
        raise UnknownModelError(f"{path}: model: {error}") from None


def _check_source(path: Path, source: dict, kind: str) -> None:
    """Misspelt source settings fail here rather than being ignored."""
    unknown = sorted(set(source) - SOURCE_KEYS[kind])
    if unknown:
        raise InputError(f"{path}: unknown settings {unknown} in a {kind} source; they are {sorted(SOURCE_KEYS[kind])}")
    spec = source[kind] or {}
    if kind == "synthetic" and (not isinstance(spec, dict) or set(spec) - SYNTHETIC_KEYS):
        raise InputError(f"{path}: source: {{synthetic: ...}} takes a mapping of {sorted(SYNTHETIC_KEYS)}")


def _open_cube(path: Path):
    import rasterio
    import rioxarray
    import xarray as xr
    import zarr

    if not path.exists():
        raise InputError(f"source: {{cube: ...}}: no cube at {path}")
    try:
        if path.is_dir():
            return xr.open_zarr(path, decode_coords="all")
        return rioxarray.open_rasterio(path, chunks={"band": -1, "y": 2048, "x": 2048})
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
            rasterio.errors.RasterioIOError):
        raise InputError(f"source: {{cube: ...}}: {path} is neither a zarr store nor a raster file (GeoTIFF)") from None
