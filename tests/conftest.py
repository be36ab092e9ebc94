import copy
import logging
import os
import socket

import dask
import distributed  # noqa: F401  (registers its configuration defaults now, not inside the first test using it)
import numpy as np
import pytest
import torch
import torch._dynamo  # (its first import sets $TORCHINDUCTOR_CACHE_DIR: once, here, not in a test)

import xterramind


def _process_state() -> dict:
    """What one test could change for the next: every such change must be undone by the test or fixture that made it."""
    loggers = {name: logging.getLogger(name) for name in ("", "xterramind")}
    return {
        "os.environ": _environ(),
        "cwd": os.getcwd(),
        "torch threads": torch.get_num_threads(),
        "torch float32 matmul precision": torch.get_float32_matmul_precision(),
        "torch default dtype": torch.get_default_dtype(),
        "torch grad enabled": torch.is_grad_enabled(),
        "dask config": copy.deepcopy(dask.config.config),
        # pytest's own capture handlers come and go with each test phase
        "logging": {name: (logger.level, [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")])
                    for name, logger in loggers.items()},
    }


def _environ() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # pytest's own, set per phase


def _restore_environ(environ: dict) -> None:
    for key in set(_environ()) - set(environ):
        del os.environ[key]
    os.environ.update(environ)


def _restore(state: dict) -> None:
    _restore_environ(state["os.environ"])
    os.chdir(state["cwd"])
    torch.set_num_threads(state["torch threads"])
    torch.set_float32_matmul_precision(state["torch float32 matmul precision"])
    torch.set_default_dtype(state["torch default dtype"])
    torch.set_grad_enabled(state["torch grad enabled"])
    dask.config.config.clear()
    dask.config.config.update(state["dask config"])
    for name, (level, handlers) in state["logging"].items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for handler in [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]:
            if handler not in handlers:
                logger.removeHandler(handler)


# distributed's Scheduler, without bokeh, appends a route to this list of the global dask configuration (an upstream
# side effect that changes no result): put back after each test without blaming it
UPSTREAM_LEFTOVERS = ("distributed.scheduler.http.routes",)


def _leaves_no_trace(request):
    """Put the process back as it was and fail, naming the test (or module) that changed it: a leftover (dask's
    OMP_NUM_THREADS=1 in os.environ, say) makes later tests pass or fail by the order they run in."""
    before = _process_state()
    yield
    dask.config.set({key: copy.deepcopy(dask.config.get(key, None, config=before["dask config"]))
                     for key in UPSTREAM_LEFTOVERS})
    after = _process_state()
    if after != before:
        _restore(before)
        changed = "; ".join(_differences(before, after))
        pytest.fail(f"{request.node.nodeid} left the process changed (now undone): {changed}", pytrace=False)


def _differences(before, after, name: str = ""):
    """``name[key][...]: old -> new`` for each leaf that differs (environment variables, dask configuration keys)."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            if before.get(key) != after.get(key):
                yield from _differences(before.get(key), after.get(key), f"{name}[{key!r}]" if name else key)
    else:
        yield f"{name}: {before!r} -> {after!r}"[:300]


# at every scope, so that a module or session fixture that leaks is caught as well as a test
leaves_no_trace = pytest.fixture(_leaves_no_trace, autouse=True, name="leaves_no_trace")
module_leaves_no_trace = pytest.fixture(_leaves_no_trace, autouse=True, scope="module", name="module_leaves_no_trace")
session_leaves_no_trace = pytest.fixture(_leaves_no_trace, autouse=True, scope="session", name="run_leaves_no_trace")


@pytest.fixture(scope="module")
def distributed_leftovers_undone():
    """For fixtures that start distributed's Nannies and Scheduler directly. To spawn each worker a Nanny writes dask's
    pre-spawn variables (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, PYTHONHASHSEED, ...) into this process's
    os.environ, and a Scheduler without bokeh appends a route to the dask configuration; both stay. This takes them
    back when the module is done (``runner.local_cluster`` leaves neither)."""
    environ, config = _environ(), copy.deepcopy(dask.config.config)
    yield
    _restore_environ(environ)
    dask.config.config.clear()
    dask.config.config.update(config)


@pytest.fixture(scope="module")
def inprocess_client():
    """A real distributed cluster in this process (one worker of two threads) and its client, for area runs; closed
    after the module. A scheduler without bokeh appends to dask's list of HTTP routes: it appends to a copy."""
    import dask
    from distributed import Client, LocalCluster

    routes = "distributed.scheduler.http.routes"
    with dask.config.set({routes: list(dask.config.get(routes))}), \
            LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (every name lookup and connection refused, and counted) and an empty Hugging Face cache, whatever
    this machine has; HF_HUB_OFFLINE unset, so that code must find out by itself. Yields the attempts made."""
    import huggingface_hub.constants

    attempts = []

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def refuse_connect(sock, address):
        attempts.append(address)
        raise ConnectionRefusedError(f"no network in this test ({address})")

    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("XTERRAMIND_WEIGHTS_DIR", raising=False)
    return attempts


@pytest.fixture(scope="session")
def micro():
    """The micro GELU model on seeded random weights: fast, with the official layout."""
    return xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def cube():
    """The bundled real Sentinel-2 scene, lazy."""
    return xterramind.open_sample()


@pytest.fixture(scope="session")
def lulc(cube, micro):
    """Land cover generated from the real scene by the micro model, seed 7, in memory."""
    return cube.terramind.generate("LULC", micro, seed=7).compute()


@pytest.fixture(scope="session")
def sample_embeddings():
    """Embeddings of the real scene by the tiny model on random weights, in memory, in 12-token chunks (30 x 30
    tokens): what the retrieval tests export, search and map."""
    model = xterramind.load_model("terramind_v1_tiny", weights="random", device="cpu", precision="fp32")
    return xterramind.open_sample().terramind.embed(model).compute().chunk({"y": 12, "x": 12})


@pytest.fixture(scope="session")
def cell_export(sample_embeddings, tmp_path_factory):
    """``sample_embeddings`` exported in 32-px cells (15 x 15 of them, exact index), opened."""
    from xterramind import retrieval

    path = tmp_path_factory.mktemp("export") / "cells"
    sample_embeddings.terramind.export(path, cell=32)
    return retrieval.open(path)


@pytest.fixture
def s2_tile():
    """A standardized S2L2A batch, (2, 12, 64, 64), from realistic reflectances."""
    generator = torch.Generator().manual_seed(0)
    reflectance = 300.0 + 4000.0 * torch.rand(2, 12, 64, 64, generator=generator)
    return xterramind.load_model("terramind_micro", weights="random", device="cpu").normalize("S2L2A", reflectance)


def real_s2_pixels(size: int = 224) -> np.ndarray:
    """A (12, size, size) float32 crop of the bundled real Sentinel-2 scene, S2L2A band order."""
    import rasterio

    from xterramind.data import SAMPLE_STACK

    with rasterio.open(SAMPLE_STACK) as source:
        return source.read(window=((0, size), (0, size))).astype(np.float32)
