"""Process-side choices (``xterramind.runtime``): the device, the precision, autocast, thread settings and the
process's shared objects."""

import ctypes
import importlib
import re
import threading
import time
import types

import dask.system
import pytest
import torch

from xterramind import runtime
from xterramind.errors import InputError, OptionError


@pytest.mark.parametrize(("spelt", "device"), [("cpu", torch.device("cpu")), ("cuda:1", torch.device("cuda", 1)),
                                               (torch.device("cpu"), torch.device("cpu")), ("auto", None)])
def test_a_device_is_named_whatever_this_machine_has(spelt, device):
    assert runtime.device_named(spelt) == device


@pytest.mark.parametrize("spelt", ["gpu", "cuda:x", 3.5, None, ["cpu"]])
def test_an_unknown_device_is_an_option_error_with_the_choices(spelt):
    with pytest.raises(OptionError, match=r"unknown device .*; use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        runtime.choose_device(spelt)


def test_auto_picks_a_gpu_when_there_is_one_and_cuda_without_one_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.choose_device("auto") == torch.device("cpu") == runtime.choose_device("cpu")
    with pytest.raises(OptionError, match="this machine has no CUDA GPU; use device='cpu' or 'auto'"):
        runtime.choose_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.choose_device("auto") == torch.device("cuda") and runtime.choose_device("cuda:0").index == 0


@pytest.mark.parametrize(("spelt", "short"), [("fp32", "fp32"), ("float32", "fp32"), ("bfloat16", "bf16"),
                                              ("bf16", "bf16"), ("float16", "fp16"), ("auto", "auto")])
def test_precisions_have_one_short_name(spelt, short):
    assert runtime.precision_named(spelt) == short


@pytest.mark.parametrize("spelt", ["int4", "FP32", 32, None, ["fp32"]])
def test_an_unknown_precision_is_an_option_error(spelt):
    with pytest.raises(OptionError, match=r"unknown precision .*; use 'auto', 'fp32', 'bf16' or 'fp16'"):
        runtime.choose_precision(spelt, torch.device("cpu"))


def test_auto_precision_and_fp16_follow_the_device(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.choose_precision("auto", cpu) == "fp32" and runtime.choose_precision("bfloat16", cpu) == "bf16"
    with pytest.raises(InputError, match="fp16 runs on CUDA GPUs only"):
        runtime.choose_precision("float16", cpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert runtime.choose_precision("auto", cuda) == "bf16" and runtime.choose_precision("fp16", cuda) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert runtime.choose_precision("auto", cuda) == "fp32"


def test_autocast_computes_in_the_precision_asked():
    layer = torch.nn.Linear(4, 4)
    with runtime.autocast(torch.device("cpu"), "bf16"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    with runtime.autocast(torch.device("cpu"), "fp32"):
        assert layer(torch.ones(1, 4)).dtype == torch.float32
    assert layer.weight.dtype == torch.float32


def test_the_thread_setting_is_applied_from_the_environment_outside_a_worker_too(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("XTERRAMIND_TORCH_THREADS", "1")
    try:
        runtime.use_worker_settings()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.delenv("XTERRAMIND_TORCH_THREADS")
    runtime.use_worker_settings()
    assert torch.get_num_threads() == before


def test_a_shared_object_is_built_once_however_many_threads_race_for_it(monkeypatch):
    monkeypatch.setattr(runtime, "_models", {})  # the process's own shared models stay as they were
    built = []

    def build():
        built.append(1)
        time.sleep(0.05)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(runtime.shared("key", build))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and len(got) == 8 and all(item is got[0] for item in got)
    assert runtime.shared("other", object) is not got[0] and len(built) == 1


@pytest.mark.parametrize("spelt", ["abc", "0", "-2", "2.5", "four"])
def test_a_torch_threads_setting_that_is_no_count_is_an_option_error_naming_the_variable(monkeypatch, spelt):
    monkeypatch.setenv("XTERRAMIND_TORCH_THREADS", spelt)
    with pytest.raises(OptionError, match=rf"XTERRAMIND_TORCH_THREADS='{re.escape(spelt)}': give a positive whole "
                                          r"number of torch threads, e\.g\. XTERRAMIND_TORCH_THREADS=4, or unset it"):
        runtime.use_worker_settings()


class FakeWorker:
    """What ``use_worker_settings`` reads of ``distributed.get_worker()``: the nanny's address and the thread count."""

    def __init__(self, nanny, nthreads):
        self.nanny, self.state = nanny, types.SimpleNamespace(nthreads=nthreads)


@pytest.fixture
def fake_worker(monkeypatch):
    """This thread as a task of a fake Dask worker: a fresh record, no ``MALLOC_TRIM_THRESHOLD_`` (so glibc is left
    alone), torch's thread count put back afterwards. Returns a function that makes the fake worker."""
    import distributed

    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "worker_settings", {})
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("XTERRAMIND_TORCH_THREADS", raising=False)

    def make(nanny, nthreads):
        monkeypatch.setattr(distributed, "get_worker", lambda: FakeWorker(nanny, nthreads))

    yield make
    torch.set_num_threads(before)


@pytest.mark.parametrize(("nthreads", "override", "expected"),
                         [(1, None, 1), (64, None, dask.system.CPU_COUNT), (1, "3", 3), (64, "2", 2)])
def test_a_nanny_worker_gets_torch_on_its_threads_or_the_setting_once(fake_worker, monkeypatch, nthreads, override,
                                                                       expected):
    if override:
        monkeypatch.setenv("XTERRAMIND_TORCH_THREADS", override)
    fake_worker("tcp://127.0.0.1:1234", nthreads)
    torch.set_num_threads(5)
    runtime.use_worker_settings()
    assert torch.get_num_threads() == expected
    assert runtime.worker_settings == {"torch threads": expected, "malloc": {}, "set up": 1}
    fake_worker("tcp://127.0.0.1:1234", 7)  # set up once per process: later calls keep the first decision
    torch.set_num_threads(5)  # (as a thread that set its own count before)
    runtime.use_worker_settings()
    assert torch.get_num_threads() == expected and runtime.worker_settings["set up"] == 1


def test_no_worker_or_one_without_a_nanny_is_left_alone(fake_worker):
    threads = torch.get_num_threads()
    runtime.use_worker_settings()  # not in a task
    fake_worker(None, 1)  # a worker thread of an in-process cluster: this process is the driver
    runtime.use_worker_settings()
    assert torch.get_num_threads() == threads and runtime.worker_settings == {}


def _second_megabyte_mmapped() -> int:
    """1 if glibc serves a second 1 MiB buffer by a fresh mmap (its thresholds frozen at 128 kiB, as distributed's
    MALLOC_TRIM_THRESHOLD_ leaves them), 0 if from the heap (adapted after the first, or set)."""
    fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
    info = type("Mallinfo2", (ctypes.Structure,), {"_fields_": [(name, ctypes.c_size_t) for name in fields]})
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = info, ctypes.c_void_p, [ctypes.c_void_p]
    libc.free(libc.malloc(2**20))
    before = libc.mallinfo2().hblks
    buffer = libc.malloc(2**20)
    mmapped = libc.mallinfo2().hblks - before
    libc.free(buffer)
    return mmapped


def _encode_here(model) -> int:
    """A model call in a task: the torch threads of the task's thread."""
    model.encode({"S2L2A": torch.zeros(1, 12, 64, 64)}, layers=-1)
    return torch.get_num_threads()


def _settings() -> dict:
    return dict(runtime.worker_settings)


@pytest.fixture(scope="module")
def cluster(distributed_leftovers_undone):
    """Two worker processes of 2 threads under distributed's default nanny; the second told 3 torch threads."""
    from distributed import Client, Nanny, Scheduler, SpecCluster

    workers = {"plain": {"cls": Nanny, "options": {"nthreads": 2}},
               "told": {"cls": Nanny, "options": {"nthreads": 2, "env": {"XTERRAMIND_TORCH_THREADS": "3"}}}}
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}) as spec, \
            Client(spec) as client:
        client.wait_for_workers(2)
        client.run(importlib.import_module, "xterramind")  # what a first task would wait for: not the tests' time
        yield client


def _addresses(client) -> dict[str, str]:
    return {info["name"]: address for address, info in client.scheduler_info()["workers"].items()}


def test_a_model_task_gives_its_worker_process_the_torch_threads_and_malloc_thresholds_once(cluster, micro):
    plain, told = (_addresses(cluster)[name] for name in ("plain", "told"))
    frozen = cluster.run(_second_megabyte_mmapped)
    assert frozen == {plain: 1, told: 1}  # what the nanny's environment does, before any model task
    threads = cluster.gather([cluster.submit(_encode_here, micro, pure=False, workers=[address])
                              for address in (plain, told, plain, told)])
    expected = {plain: min(2, dask.system.CPU_COUNT), told: 3}
    assert threads == [expected[plain], expected[told]] * 2
    assert cluster.run(_settings) == {address: {"torch threads": count, "malloc": runtime.MALLOC_THRESHOLDS, "set up": 1}
                                      for address, count in expected.items()}
    assert cluster.run(_second_megabyte_mmapped) == {plain: 0, told: 0}
    assert runtime.worker_settings == {}  # the driver: untouched


def _forget_set_up() -> None:
    runtime.worker_settings.clear()


@pytest.mark.parametrize("way", ["compute", "to_zarr"])
def test_a_result_computed_or_written_on_the_cluster_sets_up_its_workers(cluster, micro, cube, tmp_path, way):
    """Region tasks run the model on the process's device lane, a thread that is no task: the task sets up first."""
    told = _addresses(cluster)["told"]
    cluster.run(_forget_set_up)
    result = cube.terramind.embed(micro, chunks=15)  # 4 regions
    if way == "compute":
        result.compute(workers=[told])
    else:
        result.terramind.to_zarr(tmp_path / "out.zarr", progress=False)
    records = {address: record for address, record in cluster.run(_settings).items() if record}
    expected = {told: 3, _addresses(cluster)["plain"]: min(2, dask.system.CPU_COUNT)}
    assert {address: record["torch threads"] for address, record in records.items()} == {
        address: expected[address] for address in (records if way == "to_zarr" else [told])}
    assert records and runtime.worker_settings == {}


def test_a_worker_thread_of_an_in_process_cluster_leaves_the_driver_alone(micro):
    from distributed import Client, LocalCluster

    threads = torch.get_num_threads()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as local, \
            Client(local) as client:
        assert client.submit(_encode_here, micro, pure=False).result() == threads
    assert torch.get_num_threads() == threads and runtime.worker_settings == {}


def test_a_worker_that_chose_its_own_mmap_threshold_keeps_it(fake_worker, monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")  # glibc read it at start: not ours to change
    fake_worker("tcp://127.0.0.1:1234", 1)
    runtime.use_worker_settings()
    assert runtime.worker_settings == {"torch threads": 1, "malloc": {}, "set up": 1}
