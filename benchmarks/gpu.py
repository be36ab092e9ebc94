"""One command for a machine with a GPU: TerraMind-B in bf16 alone and end to end, LULC generation, decoding steps.

    python -m benchmarks.gpu [--device cuda] [--size 12288] [--batch 64 128 256] [--compile] [--json gpu.json]
    python -m benchmarks.gpu --small --device cpu --json small.json     # the CPU-sized run the tests make

Everything is measured in this one process, on random weights (none can be downloaded), and each section
catches its own failure, which the table then shows:

  environment  the device, torch and CUDA versions, the precision, the peak bf16 rate the fractions use
               (a table of known GPUs, keyed by torch's device name; --peak-tflops overrides it)
  matmul       one large matrix product in that precision: the ceiling this machine reaches, for context
  model alone  the encoder on S2L2A 224 px tiles already on the device, at each batch size: tiles/s, TFLOP/s
               and the fraction of the peak (FLOPs per tile from the model's configuration, checked once with
               torch's FlopCounterMode); at the end-to-end batch also with every batch copied from pinned host
               memory (int16, standardized on the device)
  end to end   ``cube.terramind.embed(model).terramind.to_zarr(...)`` from a 12-band uint16 zarr cube on disk
               (the bundled scene mirrored, ``benchmarks.engine.build_source``): tiles/s and the ratio to the
               model alone at the same batch size, the two measured alternately
  generation   ``cube.terramind.generate("LULC", model).terramind.to_zarr(...)`` from such a cube: km^2/s and
               tiles/s, and the ratio to the model's own ``generate`` on tiles already on the device
  decoding     one tile's share of one decoding step at that batch, in ms. TerraMind generates a target's
               tokens in ONE pass of its decoder (every cell at once, then one draw per cell): the token pass;
               LULC's tokens become class logits in one pass of its tokenizer's ViT decoder; an image target
               is decoded by a diffusion UNet run once per DDIM step (``timesteps``, 50 by default): one step
  compile      with --compile: the encoder's blocks under torch.compile against eager, model alone and end to
               end, and the compile time; a failure is one line, the rest stands
  terratorch   where terratorch imports: its ``tiled_inference`` on the same cube beside ``embed -> to_zarr``;
               else a line saying it is absent

--minutes bounds the run: a measurement that would end too close to the budget is skipped (the table says
so) and the section keeps what it has. --json gets the figures after every section, so a run that is cut
short still leaves them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' datasheets, by a part of the name
# torch.cuda.get_device_name() gives; the longest part found in the name wins ("H100 PCIe" before "H100").
PEAK_BF16_TFLOPS = {
    "B200": 2250.0, "GH200": 989.0, "H200 NVL": 835.0, "H200": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
    "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0,
    "A10G": 70.0, "RTX 4090": 165.0,
}
SECTIONS = ("environment", "matmul", "model_alone", "end_to_end", "generation", "decoding", "compile", "terratorch")
TILE = 224


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU, by the name torch gives it; None when it is not in the table.

    Example:
        >>> peak_tflops("NVIDIA H100 PCIe"), peak_tflops("NVIDIA H200"), peak_tflops("AMD EPYC 7B13")
        (756.0, 989.0, None)
    """
    known = [part for part in PEAK_BF16_TFLOPS if part.lower() in device_name.lower()]
    return PEAK_BF16_TFLOPS[max(known, key=len)] if known else None


def encoder_flops(config, channels: int = 12, tile: int = TILE) -> int:
    """FLOPs (2 per multiply-add) of one ``tile`` px tile through the encoder of ``config``: the patch embedding,
    each block's qkv, output and MLP products, and attention's two token-by-token products. Norms, softmax,
    activations and additions are left out (well under 1 %).

    Example:
        >>> from xterramind.models.registry import get_config
        >>> encoder_flops(get_config("terramind_micro"))
        135274496
    """
    tokens, dim = (tile // config.patch_size) ** 2, config.dim
    mlp = (3 if config.swiglu else 2) * dim * config.mlp_hidden  # SwiGLU has a third (gate) matrix
    block = 2 * tokens * (4 * dim * dim + mlp) + 4 * tokens * tokens * dim  # qkv 3d^2 + proj d^2; QK^T and AV
    return 2 * tokens * channels * config.patch_size**2 * dim + config.encoder_depth * block


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(call: Callable[[], object], items: int, device: torch.device, seconds: float, warmup: int = 2) -> float:
    """Items per second of ``call()``: ``warmup`` calls, one to size the run, then as many as fill about ``seconds``,
    the device synchronized before the clock starts and before it stops."""
    for _ in range(warmup):
        call()
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    repetitions = max(2, min(1000, int(seconds / max(time.perf_counter() - start, 1e-6))))
    start = time.perf_counter()
    for _ in range(repetitions):
        call()
    synchronize(device)
    return repetitions * items / (time.perf_counter() - start)


def figure(value) -> str:
    """A figure as the table prints it (three significant digits; None: not available)."""
    if value is None:
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class Report:
    """The table, printed row by row, and the same figures by section, written to ``json_path`` as they come."""

    def __init__(self, json_path: str | None, minutes: float):
        self.json_path = json_path
        self.end = time.perf_counter() + 60 * minutes
        self.reserve = min(20.0, 3 + 0.03 * 60 * minutes)  # kept for the cleanup and the last rows
        self.data: dict[str, dict] = {}

    def left(self) -> float:
        return self.end - self.reserve - time.perf_counter()

    def fits(self, section: str, what: str, seconds: float) -> bool:
        """Whether ``seconds`` more fit in the budget; if not, a row says ``what`` was skipped."""
        if seconds <= self.left():
            return True
        self.row(section, what, f"skipped (budget: about {seconds:.0f} s needed, {max(self.left(), 0):.0f} s left)")
        self.data.setdefault(section, {}).setdefault("skipped", []).append(what)
        return False

    def row(self, section: str, label: str, value, unit: str = "", key: str | None = None) -> None:
        print(f"{section:<12}{label:<56}{figure(value):>12} {unit}".rstrip(), flush=True)
        if key:
            self.data.setdefault(section, {})[key] = value

    def run(self, section: str, measure: Callable[[], None]) -> None:
        """Run one section; its failure becomes a row (and ``error`` in the JSON), and the next section runs."""
        try:
            measure()
        except Exception as error:  # one section's failure must not lose the others' figures
            message = f"{type(error).__name__}: {str(error).strip()}"
            print(f"{section:<12}FAILED {message.splitlines()[0][:300]}", flush=True)
            self.data.setdefault(section, {})["error"] = message[:2000]
        self.save()

    def save(self) -> None:
        if self.json_path:
            Path(self.json_path).write_text(json.dumps(self.data, indent=1, default=str))


class Bench:
    """One run's settings, models and cubes, shared by the sections in the order they run."""

    def __init__(self, args: argparse.Namespace, report: Report):
        from xterramind.models.registry import resolve_modality

        self.args, self.report = args, report
        self.device = torch.device(args.device)
        self.spec = resolve_modality("S2L2A")
        self.folder = Path(tempfile.mkdtemp(prefix="xterramind-gpu-", dir=args.workdir))
        self.model, self.flops = None, 0  # the first section loads the model, once it printed the versions
        self.peak = args.peak_tflops or (peak_tflops(torch.cuda.get_device_name(self.device))
                                         if self.device.type == "cuda" else None)
        self.warmup = 1 if args.small else 3  # on CUDA the first calls also pick kernels
        self.alone: dict[int, float] = {}  # model-alone tiles/s by batch size
        self.cubes: dict[int, Path] = {}
        self.generating = None

    @property
    def batch(self) -> int:
        """The end-to-end batch: the model alone's fastest (the first asked for, if it did not run)."""
        return max(self.alone, key=self.alone.get) if self.alone else self.args.batch[0]

    def tiles(self, batch: int) -> torch.Tensor:
        return torch.randn(batch, self.spec.channels, TILE, TILE, device=self.device)

    def rate(self, call: Callable[[], object], batch: int, warmup: int | None = None) -> float:
        return rate(call, batch, self.device, self.args.seconds, self.warmup if warmup is None else warmup)

    def encode(self, model, x: torch.Tensor) -> Callable[[], object]:
        return lambda: model.encode({"S2L2A": x}, layers=-1)

    def cube(self, size: int):
        """A ``size`` x ``size`` px 12-band uint16 zarr cube on disk, opened lazily; built once per size."""
        from benchmarks.engine import build_source, open_source

        if size not in self.cubes:
            start = time.perf_counter()
            self.cubes[size] = build_source(size, self.folder, list(self.spec.bands))
            self.report.row("cube", f"build {size} x {size} px, 12-band uint16 zarr", time.perf_counter() - start, "s")
        return open_source(self.cubes[size])

    def write(self, lazy, name: str) -> float:
        """Seconds to write a lazy result to a fresh zarr store."""
        out = self.folder / name
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        lazy.terramind.to_zarr(out, progress=False)
        synchronize(self.device)
        seconds = time.perf_counter() - start
        shutil.rmtree(out, ignore_errors=True)
        return seconds

    def alternate(self, section: str, alone: Callable[[], object], lazy: Callable[[], object], tiles: int,
                  warmup: int | None = None) -> tuple[float, float] | None:
        """The model alone (``alone()`` on a batch already on the device) and end to end (``lazy()`` written to
        zarr), measured in turn ``rounds`` times so that both see the same machine: the best tiles/s of each,
        or None when not even one round fitted in the budget."""
        batch, rates, e2e = self.batch, [], []
        took = 60.0 if self.device.type == "cuda" else 10.0  # a guess of one write, until one was timed
        for _ in range(self.args.rounds):
            if not self.report.fits(section, f"round {len(e2e) + 1}", took + 3 * self.args.seconds):
                break
            rates.append(self.rate(alone, batch, warmup))
            took = self.write(lazy(), f"{section}.zarr")
            e2e.append(tiles / took)
        self.free()
        return (max(rates), max(e2e)) if e2e else None

    # -- sections ---------------------------------------------------------------------------------------------

    def environment(self) -> None:
        import xterramind

        r, s = self.report, "environment"
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.machine()
        r.row(s, "device", f"{self.device} ({name})", key="device_name")
        r.row(s, "torch", torch.__version__, key="torch")
        r.row(s, "CUDA", torch.version.cuda or "none", key="cuda")
        r.row(s, "cores", os.cpu_count(), key="cores")
        r.row(s, "precision", self.args.precision, key="precision")
        r.row(s, "xterramind", xterramind.__version__, key="xterramind")
        r.row(s, "peak bf16 dense", self.peak, "TFLOP/s", key="peak_tflops")
        start = time.perf_counter()
        self.model = xterramind.load_model(self.args.model, weights="random", device=self.device,
                                           precision=self.args.precision)
        r.row(s, f"{self.model.name}: made (random weights)", time.perf_counter() - start, "s", key="model_load_s")
        r.data[s]["model"] = self.model.name
        self.flops = encoder_flops(self.model.config)

    def matmul(self) -> None:
        from xterramind.runtime import PRECISIONS

        n = 8192 if self.device.type == "cuda" else 512
        dtype = PRECISIONS[self.args.precision] or torch.float32
        a, b = (torch.randn(n, n, device=self.device, dtype=dtype) for _ in range(2))
        tflops = rate(lambda: a @ b, 1, self.device, self.args.seconds / 2) * 2 * n**3 / 1e12
        self.report.row("matmul", f"{n} x {n} x {n} {self.args.precision} product", tflops, "TFLOP/s", key="tflops")
        if self.peak:
            self.report.row("matmul", "fraction of the peak", tflops / self.peak, key="peak_fraction")

    def model_alone(self) -> None:
        from benchmarks.model import gflop_per_tile

        r, s = self.report, "model_alone"
        r.row(s, "GFLOP per tile (from the configuration)", self.flops / 1e9, key="gflop_per_tile")
        r.row(s, "GFLOP per tile (FlopCounterMode, once)", gflop_per_tile(self.model), key="gflop_counted")
        batches = {}
        for batch in self.args.batch:
            if not r.fits(s, f"batch {batch}", 3 * self.args.seconds):
                break
            try:
                speed = self.rate(self.encode(self.model, self.tiles(batch)), batch)
            except torch.cuda.OutOfMemoryError:
                r.row(s, f"batch {batch}", "out of memory")
                break
            finally:
                self.free()
            self.alone[batch] = speed
            tflops = speed * self.flops / 1e12
            batches[batch] = {"tiles_per_s": speed, "tflops": tflops, "peak_fraction": self.peak and tflops / self.peak}
            r.row(s, f"batch {batch}: tiles/s", speed, "tiles/s")
            r.row(s, f"batch {batch}: TFLOP/s (fraction of the peak)", tflops,
                  f"TFLOP/s ({figure(self.peak and tflops / self.peak)})")
        r.data[s]["batches"] = batches
        if not batches:
            return
        r.row(s, "best: tiles/s", self.alone[self.batch], f"tiles/s at batch {self.batch}", key="tiles_per_s")
        r.row(s, "best: fraction of the peak bf16 rate", batches[self.batch]["peak_fraction"], key="peak_fraction")
        self.pinned()

    def pinned(self) -> None:
        """The model with each batch coming from host memory as int16 pixels (pinned on CUDA), standardized there."""
        r, s, batch = self.report, "model_alone", self.batch
        if not r.fits(s, "from pinned host memory", 3 * self.args.seconds):
            return
        host = torch.randint(0, 10000, (batch, self.spec.channels, TILE, TILE), dtype=torch.int16)
        host = host.pin_memory() if self.device.type == "cuda" else host
        mean, std = (torch.tensor(v, device=self.device)[:, None, None] for v in (self.spec.mean, self.spec.std))

        def call():
            x = host.to(self.device, non_blocking=True).float()
            return self.model.encode({"S2L2A": (x - mean) / std}, layers=-1)

        speed = self.rate(call, batch)
        r.row(s, f"batch {batch}, copied from pinned host memory", speed, "tiles/s", key="pinned_tiles_per_s")

    def end_to_end(self) -> None:
        from xterramind.geo import grid_of
        from xterramind.grid import Tiling

        r, s, batch = self.report, "end_to_end", self.batch
        cube = self.cube(self.args.size)
        tiles = Tiling(grid_of(cube, "the cube")).tile_count
        r.row(s, f"cube {self.args.size} x {self.args.size} px", tiles, "tiles", key="tiles")
        x = self.tiles(batch)
        best = self.alternate(s, self.encode(self.model, x), lambda: cube.terramind.embed(self.model, batch_size=batch),
                              tiles)
        if best:
            alone, e2e = best
            r.row(s, f"embed -> to_zarr, batch {batch}", e2e, "tiles/s", key="tiles_per_s")
            r.row(s, f"model alone, batch {batch}, alternated", alone, "tiles/s", key="model_tiles_per_s")
            r.row(s, "ratio end to end / model alone", e2e / alone, key="ratio")
            r.data[s]["batch"] = batch

    def generation(self) -> None:
        from xterramind.geo import grid_of
        from xterramind.grid import Tiling

        r, s = self.report, "generation"
        model, batch = self.generator(), self.batch
        cube = self.cube(self.args.gen_size)
        tiles = Tiling(grid_of(cube, "the cube")).tile_count
        res_x, res_y = cube.rio.resolution()
        km2 = abs(res_x * res_y) * cube.sizes["x"] * cube.sizes["y"] / 1e6
        r.row(s, f"cube {self.args.gen_size} x {self.args.gen_size} px", km2, f"km^2, {tiles} tiles", key="km2")
        x, seeds = self.tiles(batch), list(range(batch))
        best = self.alternate(s, lambda: model.generate({"S2L2A": x}, ["LULC"], seeds=seeds),
                              lambda: cube.terramind.generate("LULC", model, batch_size=batch), tiles, warmup=1)
        if best:
            alone, e2e = best
            r.row(s, f"generate LULC -> to_zarr, batch {batch}", km2 * e2e / tiles, "km^2/s", key="km2_per_s")
            r.row(s, "    the same in tiles of the cube", e2e, "tiles/s", key="tiles_per_s")
            r.row(s, f"model.generate alone, batch {batch}, alternated", alone, "tiles/s", key="model_tiles_per_s")
            r.row(s, "ratio end to end / model alone", e2e / alone, key="ratio")
            r.data[s]["batch"] = batch

    def generator(self):
        """The generation model, its decoder and LULC tokenizer loaded (random weights are made on the host)."""
        import xterramind

        if self.generating is None:
            model = xterramind.load_model(self.args.gen_model, weights="random", device=self.device,
                                          precision=self.args.precision)
            start = time.perf_counter()
            model.generate({"S2L2A": self.tiles(1)}, ["LULC"], seeds=[0])
            self.report.row("generation", f"{model.name}: first call (decoder and tokenizer made)",
                            time.perf_counter() - start, "s")
            self.generating = model
        return self.generating

    def decoding(self) -> None:
        from xterramind.models.registry import resolve_modality

        r, s = self.report, "decoding"
        model, batch = self.generator(), self.batch
        x, seeds = self.tiles(batch), list(range(batch))
        steps = {
            "token_pass_ms": ("token pass (encoder + decoder, every cell, sampled)",
                              lambda: model.generate({"S2L2A": x}, ["LULC"], seeds=seeds, decode=False)),
        }
        lulc = model.generate({"S2L2A": x}, ["LULC"], seeds=seeds, decode=False)["LULC"]
        steps["lulc_decoder_ms"] = ("LULC tokens -> class logits (tokenizer's ViT)",
                                    lambda: model.detokenize("LULC", lulc))
        image = torch.randint(0, resolve_modality("tok_S1GRD").vocab_size, (batch, *lulc.shape[1:]))
        steps["diffusion_step_ms"] = ("one DDIM step of the S1GRD diffusion UNet",
                                      lambda: model.detokenize("S1GRD", image, seeds=seeds, timesteps=1))
        for key, (label, call) in steps.items():
            if not r.fits(s, label, 4 * self.args.seconds):
                break
            ms = 1000 / self.rate(call, batch, 1)
            r.row(s, f"{label}, batch {batch}", ms, "ms per tile", key=key)
        if "diffusion_step_ms" in r.data.get(s, {}):
            r.row(s, "    an image target at 50 steps (the default), projected", 50 * r.data[s]["diffusion_step_ms"],
                  "ms per tile", key="image_decode_50_steps_ms")
        r.data.setdefault(s, {})["batch"] = batch
        self.free()

    def compiled(self) -> None:
        """The encoder's blocks under torch.compile (a second model, so the eager one stays as it is)."""
        import xterramind
        from xterramind.geo import grid_of
        from xterramind.grid import Tiling

        r, s, batch = self.report, "compile", self.batch
        if not self.args.compile:
            r.row(s, "torch.compile", "not asked for (--compile)", key="not_asked")
            return
        if not r.fits(s, "torch.compile", 120 if self.device.type == "cuda" else 60):
            return
        model = xterramind.load_model(self.args.model, weights="random", seed=1, device=self.device,
                                      precision=self.args.precision)
        x = self.tiles(batch)
        eager = self.rate(self.encode(model, x), batch)
        for block in model.module.encoder:
            block.compile()
        start = time.perf_counter()
        model.encode({"S2L2A": x}, layers=-1)
        synchronize(self.device)
        r.row(s, f"compile time (first call, batch {batch})", time.perf_counter() - start, "s", key="compile_s")
        speed = self.rate(self.encode(model, x), batch)
        r.row(s, f"model alone eager, batch {batch}", eager, "tiles/s", key="eager_tiles_per_s")
        r.row(s, f"model alone compiled, batch {batch}", speed, "tiles/s", key="tiles_per_s")
        r.row(s, "speed-up compiled / eager", speed / eager, key="speedup")
        cube = self.cube(self.args.size)
        tiles = Tiling(grid_of(cube, "the cube")).tile_count
        # the first round may compile again, for the smaller batches at the cube's edges: the best round counts
        best = self.alternate(s, self.encode(model, x), lambda: cube.terramind.embed(model, batch_size=batch), tiles)
        if best:
            r.row(s, f"embed -> to_zarr compiled, batch {batch}", best[1], "tiles/s", key="e2e_tiles_per_s")
            r.row(s, "ratio end to end / model alone, compiled", best[1] / best[0], key="e2e_ratio")

    def terratorch(self) -> None:
        r, s = self.report, "terratorch"
        try:
            import terratorch  # noqa: F401
        except Exception as error:  # ImportError, or a broken install that fails on import
            r.row(s, "terratorch", f"absent ({type(error).__name__}: {error})"[:120], key="absent")
            return
        self.tiled_inference()

    def tiled_inference(self) -> None:
        """IBM's ``tiled_inference`` over the same cube as ``embed -> to_zarr`` (its output: the token grid
        upsampled to pixels, since it stitches pixel-resolution outputs only; held in RAM, so a smaller cube)."""
        from terratorch.registry import BACKBONE_REGISTRY
        from terratorch.tasks.tiled_inference import tiled_inference

        from xterramind.runtime import autocast

        r, s = self.report, "terratorch"
        batch, size = min(self.batch, 32), self.args.reference_size  # 32 upsampled 768-d tiles: 4.9 GB
        name = self.model.name if self.model.config.official else "terramind_v1_tiny"
        cube = self.cube(size)
        ours = self.write(cube.terramind.embed(self.model, batch_size=batch), "reference.zarr")
        vit = BACKBONE_REGISTRY.build(name, modalities=["S2L2A"], pretrained=False).eval().to(self.device)
        mean, std = (torch.tensor(v)[:, None, None] for v in (self.spec.mean, self.spec.std))
        start = time.perf_counter()
        standardized = ((torch.from_numpy(cube.values.astype("float32")) - mean) / std)[None]

        def forward(chips):
            with autocast(self.device, self.args.precision):
                tokens = vit({"S2L2A": chips.to(self.device)})[-1]
            grid = tokens.float().transpose(1, 2).reshape(len(chips), -1, TILE // 16, TILE // 16)
            return torch.nn.functional.interpolate(grid, scale_factor=16, mode="nearest").cpu()

        with torch.inference_mode():
            tiled_inference(forward, standardized, crop=TILE, stride=TILE - 32, batch_size=batch, verbose=False)
        theirs = time.perf_counter() - start
        r.row(s, f"{name}, {size} x {size} px, batch {batch}: xterramind", ours, "s", key="xterramind_s")
        r.row(s, "terratorch tiled_inference (in RAM)", theirs, "s", key="terratorch_s")
        r.row(s, "speed ratio xterramind / terratorch", theirs / ours, key="ratio")
        self.free()

    def free(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--small", action="store_true",
                        help="a CPU-sized run: micro models, a small cube, short timings (about a minute on 2 cores)")
    parser.add_argument("--model", help="encoder model (default terramind_v1_base; --small: terramind_micro)")
    parser.add_argument("--gen-model", help="generation model (default: --model's)")
    parser.add_argument("--size", type=int, help="side of the end-to-end cube in px (default 12288; --small 672)")
    parser.add_argument("--gen-size", type=int, help="side of the generation cube in px (default 6144; --small 448)")
    parser.add_argument("--reference-size", type=int, help="side of the terratorch cube in px (default 1920)")
    parser.add_argument("--batch", type=int, nargs="+", help="model-alone batch sizes; end to end uses the fastest "
                        "(default 64 128 256; --small 2 4)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of model alone and end to end")
    parser.add_argument("--seconds", type=float, help="length of one timing (default 3; --small 0.3)")
    parser.add_argument("--minutes", type=float, help="budget of the whole run (default 7; --small 1.5)")
    parser.add_argument("--compile", action="store_true", help="also measure the encoder under torch.compile")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak bf16 TFLOP/s, for unknown devices")
    parser.add_argument("--json", help="write the figures here as JSON")
    parser.add_argument("--workdir", help="folder for the cubes and outputs (default: the system's temporary one)")
    args = parser.parse_args(argv)
    small = args.small
    defaults = {"model": "terramind_micro" if small else "terramind_v1_base", "size": 672 if small else 12288,
                "reference_size": 448 if small else 1920, "batch": [2, 4] if small else [64, 128, 256],
                "seconds": 0.3 if small else 3.0, "minutes": 1.5 if small else 7.0}
    defaults |= {"gen_size": 448 if small else 6144}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.gen_model = args.gen_model or args.model
    if min(args.size, args.gen_size, args.reference_size) < TILE:
        parser.error(f"--size, --gen-size and --reference-size must be at least one tile, {TILE} px")
    try:
        kind = torch.device(args.device).type
    except RuntimeError:
        parser.error(f"--device {args.device}: not a device; use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device here; use --device cpu")
    if min(args.batch) < 1 or args.rounds < 1:
        parser.error("--batch and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    report = Report(args.json, args.minutes)
    print(f"benchmarks.gpu: {args.device}, {args.precision}, budget {args.minutes:g} min; random weights", flush=True)
    print(f"{'section':<12}{'figure':<56}{'value':>12} unit", flush=True)
    bench = None

    def start():
        nonlocal bench
        bench = Bench(args, report)
        bench.environment()

    report.run("environment", start)
    if bench is None or bench.model is None:  # nothing else can run
        report.save()
        if bench is not None:
            bench.close()
        return 1
    try:
        for section in SECTIONS[1:]:
            report.run(section, getattr(bench, "compiled" if section == "compile" else section))
    finally:
        bench.close()
        report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
