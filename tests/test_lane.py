"""The device lane: kernels on one thread per device, the caller preparing batches ahead of them."""

import threading
from types import SimpleNamespace

import pytest
import torch

from xterramind.lane import AHEAD, AHEAD_TILES, lane, run_ahead

CPU = SimpleNamespace(device=torch.device("cpu"))


def test_kernels_run_in_order_on_the_devices_thread_not_the_callers():
    threads = []

    def kernel(inputs, batch):
        threads.append(threading.current_thread())
        return inputs * 10

    out = list(run_ahead(CPU, kernel, [([b], b + 1) for b in range(7)]))
    assert out == [([b], (b + 1) * 10) for b in range(7)]
    assert set(threads) == {threads[0]}
    assert threads[0] is not threading.current_thread() and threads[0].name.startswith("xterramind-cpu")
    assert lane(CPU) is lane(SimpleNamespace(device=torch.device("cpu")))  # one lane per device, whatever the model


@pytest.mark.parametrize("tiles", [8, 64])
def test_the_caller_has_prepared_the_next_batches_when_a_result_comes_back(tiles):
    prepared = []

    def batches():
        for b in range(40):
            prepared.append(b)
            yield [b] * tiles, b

    seen = [len(prepared) for _ in run_ahead(CPU, lambda inputs, batch: inputs, batches())]
    ahead = max(AHEAD, -(-(AHEAD_TILES + 1) // tiles) - 1)  # batches queued behind the one returned
    assert ahead >= AHEAD and ahead * tiles >= AHEAD_TILES
    assert seen == [min(40, i + 1 + ahead) for i in range(40)]


def test_two_regions_at_once_never_share_the_device():
    active, most, lock = [0], [0], threading.Lock()

    def kernel(inputs, batch):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        threading.Event().wait(0.002)  # "computing" without the GIL
        with lock:
            active[0] -= 1
        return inputs

    results = {}

    def region(name):
        results[name] = [out for _, out in run_ahead(CPU, kernel, [([b], (name, b)) for b in range(10)])]

    workers = [threading.Thread(target=region, args=(name,)) for name in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert most[0] == 1
    assert results == {name: [(name, b) for b in range(10)] for name in "ab"}


def test_a_failing_kernel_raises_in_the_region_that_gave_the_batch():
    def kernel(inputs, batch):
        if batch == [3]:
            raise ValueError("batch 3 failed")
        return inputs

    got = []
    with pytest.raises(ValueError, match="batch 3 failed"):
        for batch, _ in run_ahead(CPU, kernel, [([b], b) for b in range(8)]):
            got.append(batch)
    assert got == [[0], [1], [2]]
