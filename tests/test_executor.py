"""``xterramind.executor``: jobs of stages run here or on a Dask cluster, in order, a bounded number at a time, with
retries, failures kept or raised, and Ctrl-C said as how far it got. Stages count their calls in module-level
counters, so that the same functions count on an in-process cluster's worker threads too."""

import functools
import io
import re
import sys
import threading
from collections import Counter

import dask
import numpy as np
import pytest

from xterramind import executor
from xterramind.errors import Interrupted
from xterramind.executor import Compute, Done, Job, Stage

CALLS = Counter()  # stage name -> calls
LOCK = threading.Lock()
IN_FLIGHT = {"now": 0, "most": 0}


@pytest.fixture(autouse=True)
def counters():
    CALLS.clear()
    IN_FLIGHT.update(now=0, most=0)
    yield CALLS


def _count(name: str) -> int:
    with LOCK:
        CALLS[name] += 1
        return CALLS[name]


def square(i):
    _count("square")
    return i * i


def add(values, extra=0):
    _count("add")
    return sum(values) + extra


def tenfold(value):
    _count("tenfold")
    return value * 10


def fail_first(value, times: int, name: str = "flaky"):
    if _count(name) <= times:
        raise ValueError(f"{name} failed")
    return value


def fail_at(value, index: int, failing: int):
    _count("ran")
    if index == failing:
        raise ValueError(f"region {index} failed")
    return value


def held(value, barrier=None):
    """A stage that counts how many run at once; with a barrier, waits until that many run together."""
    with LOCK:
        IN_FLIGHT["now"] += 1
        IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    try:
        if barrier is not None:
            barrier.wait(timeout=10)  # a broken barrier: fewer ran at once than it waits for
        return value
    finally:
        with LOCK:
            IN_FLIGHT["now"] -= 1


def _three_stage_jobs(count: int, resources=None) -> list[Job]:
    """Compute (two collections) -> Stage (their sum + i) -> Stage (x 10): 10 * (i * i + i + 1 + i)."""
    return [Job((Compute((dask.delayed(square)(i), dask.delayed(square)(1))),
                 Stage(functools.partial(add, extra=i), resources), Stage(tenfold)), f"job{i}") for i in range(count)]


def _expected(i: int) -> int:
    return 10 * (i * i + 1 + i)


# -- here ------------------------------------------------------------------------------------------------------------


def test_results_come_back_in_order_and_the_bar_counts_every_job(monkeypatch):
    monkeypatch.setenv("XTERRAMIND_PROGRESS", "1")
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    second_done, finished = threading.Event(), []

    def first_waits_for_the_second(i):
        if i == 0:
            assert second_done.wait(10)
        return i

    def on_done(index, done):
        finished.append(index)
        if index == 1:
            second_done.set()

    jobs = [Job((Stage(functools.partial(first_waits_for_the_second, i)),)) for i in range(7)]
    done = executor.execute(jobs, "squares", width=2, on_done=on_done)
    assert [d.value for d in done] == list(range(7)) and finished.index(1) < finished.index(0)
    assert "squares" in captured.getvalue() and "7/7" in captured.getvalue()


def test_each_stage_gets_the_value_of_the_one_before():
    done = executor.execute(_three_stage_jobs(4), "stages", progress_bar=False)
    assert all(isinstance(d, Done) for d in done) and [d.value for d in done] == [_expected(i) for i in range(4)]
    assert all(len(d.seconds) == 2 and d.workers == ("local", "local") for d in done)  # the two function stages
    assert CALLS == {"square": 8, "add": 4, "tenfold": 4}
    (only,) = executor.execute([Job((Compute((dask.delayed(square)(3), dask.delayed(square)(4))),))], "c", False)
    assert only == Done((9, 16), (), ())  # a Compute alone: the tuple of its values
    (first,) = executor.execute([Job((Stage(functools.partial(square, 5)), Stage(tenfold)))], "s", False)
    assert first.value == 250 and len(first.seconds) == 2  # a first stage is called with nothing


def test_a_compute_stage_computes_its_collections_together():
    shared = dask.delayed(lambda: _count("shared") and {"a": 1, "b": 2}, pure=True)()
    parts = (dask.delayed(lambda d: d["a"])(shared), dask.delayed(lambda d: d["b"])(shared))
    (done,) = executor.execute([Job((Compute(parts), Stage(add)))], "sum", progress_bar=False)
    assert done.value == 3 and CALLS["shared"] == 1  # what the parts share ran once


def test_at_most_width_jobs_are_in_flight():
    started = []

    def on_done(index, done):
        assert len(started) - (on_done.finished) <= 3  # jobs started and not yet seen done
        on_done.finished += 1

    on_done.finished = 0
    barrier = threading.Barrier(3)
    jobs = [Job((Stage(functools.partial(started.append, i)), Stage(functools.partial(held, barrier=barrier))))
            for i in range(12)]
    executor.execute(jobs, "bounded", progress_bar=False, width=3)
    assert IN_FLIGHT["most"] == 3 and sorted(started) == list(range(12))


def test_the_default_width_is_the_local_threads(monkeypatch):
    with dask.config.set(num_workers=5):
        assert executor.local_threads() == 5
    monkeypatch.setattr(executor.os, "cpu_count", lambda: 1)
    assert executor.local_threads() == 2  # one region on the device lane while the core reads the next
    monkeypatch.setattr(executor.os, "cpu_count", lambda: 16)
    assert executor.local_threads() == 16  # a GPU machine's every core
    monkeypatch.setattr(executor, "local_threads", lambda: 1)
    executor.execute([Job((Stage(functools.partial(held, i)),)) for i in range(4)], "one", progress_bar=False)
    assert IN_FLIGHT["most"] == 1


def _failing_jobs(count: int, failing: int, name: str = "region") -> list[Job]:
    return [Job((Stage(functools.partial(square, i)), Stage(functools.partial(fail_at, index=i, failing=failing))),
                f"{name}{i}") for i in range(count)]


def test_a_failing_job_raises_unless_keep_going_returns_its_error_while_the_others_finish():
    with pytest.raises(ValueError, match="region 2 failed"):
        executor.execute(_failing_jobs(6, 2), "failing", progress_bar=False, width=2)
    CALLS.clear()
    seen = []
    done = executor.execute(_failing_jobs(6, 2), "failing", progress_bar=False, width=2, keep_going=True,
                        on_done=lambda index, outcome: seen.append((index, type(outcome).__name__)))
    assert isinstance(done[2], ValueError) and str(done[2]) == "region 2 failed"
    assert [d.value for i, d in enumerate(done) if i != 2] == [0, 1, 9, 16, 25]
    assert CALLS["ran"] == 6 and sorted(seen) == [(i, "ValueError" if i == 2 else "Done") for i in range(6)]


def test_retries_run_a_failing_stage_again_and_only_that_stage():
    job = Job((Stage(functools.partial(square, 3)), Stage(functools.partial(fail_first, times=2))))
    (done,) = executor.execute([job], "flaky", progress_bar=False, retries=2)
    assert done.value == 9 and CALLS["flaky"] == 3 and CALLS["square"] == 1
    CALLS.clear()
    with pytest.raises(ValueError, match="flaky failed"):
        executor.execute([job], "flaky", progress_bar=False, retries=1)
    assert CALLS["flaky"] == 2
    CALLS.clear()
    computed = Job((Compute((dask.delayed(fail_first)(4, times=1, name="computed"),)), Stage(add)))
    (done,) = executor.execute([computed], "flaky compute", progress_bar=False, retries=1)
    assert done.value == 4 and CALLS["computed"] == 2


def ctrl_c_at(value, index: int, at: int, started: list):
    started.append(index)
    if index == at:
        raise KeyboardInterrupt  # as if Ctrl-C reached the process while this job ran
    return value


@pytest.mark.parametrize("resume, ending", [("run the same call again to resume", "; run the same call again to resume"),
                                            (None, "")])
def test_ctrl_c_says_how_many_regions_were_done_and_how_to_resume(resume, ending):
    started, recorded = [], []
    jobs = [Job((Stage(functools.partial(ctrl_c_at, i, index=i, at=3, started=started)),)) for i in range(10)]
    with pytest.raises(Interrupted) as raised:
        executor.execute(jobs, "writing out.zarr", progress_bar=False, width=2, resume=resume,
                     on_done=lambda index, done: recorded.append(index))
    message = str(raised.value)
    found = re.fullmatch(r"writing out\.zarr: interrupted after (\d+) of 10 regions(.*)", message)
    assert found and found.group(2) == ending, message
    assert int(found.group(1)) == len(recorded) and 3 not in recorded
    assert len(started) == len(recorded) + 1 < 10  # nothing new after Ctrl-C; the jobs in flight finished
    assert isinstance(raised.value, KeyboardInterrupt)


# -- on a cluster -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """An in-process cluster: one worker of two threads that offers one GPU; its client is nobody's default."""
    from distributed import Client, LocalCluster

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0",
                      resources={"GPU": 1}) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def client(cluster):
    """The cluster's client, current in this test (as ``with Client(...)`` makes it)."""
    with cluster.as_current():
        yield cluster


def test_the_same_jobs_on_a_cluster_give_the_same_results_on_its_workers(client):
    (address,) = client.scheduler_info()["workers"]
    there = executor.execute(_three_stage_jobs(5, resources={"GPU": 1}), "there", progress_bar=False, client=client)
    assert [d.value for d in there] == [_expected(i) for i in range(5)]  # as here (test_each_stage_gets_...)
    assert all(d.workers == (address, address) and len(d.seconds) == 2 for d in there)  # it ran on the GPU worker
    (first,) = executor.execute([Job((Stage(functools.partial(square, 5)), Stage(tenfold)))], "s", False, client=client)
    assert first.value == 250 and first.workers == (address, address)
    (default,) = executor.execute([Job((Stage(functools.partial(square, 2)),))], "default", False)
    assert default.value == 4 and default.workers == (address,)  # the current client is used without being passed


def test_a_compute_only_job_gives_the_same_value_on_a_cluster(client):
    jobs = [Job((Compute((dask.delayed(square)(3), dask.delayed(square)(4))),))]
    assert executor.execute(jobs, "there", False, client=client) == [Done((9, 16), (), ())]  # as here


def test_a_cluster_holds_width_jobs_retries_stages_and_keeps_going_past_failures(client):
    done = executor.execute([Job((Stage(functools.partial(held, i)),), f"held{i}") for i in range(6)], "one", False,
                            client=client, width=1)
    assert [d.value for d in done] == list(range(6)) and IN_FLIGHT["most"] == 1  # two worker threads, one job at a time
    job = Job((Stage(functools.partial(square, 3)), Stage(functools.partial(fail_first, times=1))))
    (done,) = executor.execute([job], "flaky", False, client=client, retries=1)
    assert done.value == 9 and CALLS["flaky"] == 2 and CALLS["square"] == 1
    CALLS.clear()
    done = executor.execute(_failing_jobs(4, 1), "failing", False, client=client, keep_going=True)
    assert isinstance(done[1], ValueError) and [d.value for i, d in enumerate(done) if i != 1] == [0, 4, 9]
    assert CALLS["ran"] == 4


def test_a_client_passed_in_need_not_be_the_current_one(cluster):
    (done,) = executor.execute([Job((Stage(functools.partial(square, 6)),))], "passed", False, client=cluster)
    assert done.value == 36 and done.workers == tuple(cluster.scheduler_info()["workers"])


def test_jobs_that_share_a_name_each_run_on_a_cluster(client):
    """A job's name only makes its tasks readable: jobs of one name are still different jobs."""
    jobs = [Job((Stage(functools.partial(square, i)),)) for i in range(4)]  # all named "job"
    assert [d.value for d in executor.execute(jobs, "same names", False, client=client)] == [0, 1, 4, 9]
    assert CALLS["square"] == 4


def test_a_failing_compute_stage_is_retried_on_a_cluster_as_here(client):
    job = Job((Compute((dask.delayed(fail_first, pure=False)(4, times=1, name="computed"),)), Stage(add)), "flaky")
    (done,) = executor.execute([job], "flaky compute", False, client=client, retries=1)
    assert done.value == 4 and CALLS["computed"] == 2


def test_jobs_whose_windows_share_chunks_hand_the_scheduler_only_their_own_tasks(client):
    """Overlapping windows of one array share its chunks' keys, and each job's graph, optimised on its own, may
    define a shared key differently; a scheduler given two definitions of a key can lose it and its workers (CI
    once hung with every worker gone). Each Compute stage is one task of the job's, computing its culled graph."""
    import dask.array as da
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Keys(SchedulerPlugin):
        def __init__(self):
            self.seen = set()

        def transition(self, key, start, finish, *args, **kwargs):
            self.seen.add(key)

    keys = Keys()
    client.register_plugin(keys, name="keys")
    try:
        cube = da.arange(64, chunks=8).reshape(8, 8).rechunk(2) * 2
        windows = [cube[i:i + 4, i:i + 4] for i in range(0, 5, 2)]  # neighbours overlap by half a window
        jobs = [Job((Compute((w,)), Stage(np.sum))) for w in windows]
        done = executor.execute(jobs, "windows", False, client=client)
        seen = client.run_on_scheduler(lambda dask_scheduler: sorted(map(str, dask_scheduler.plugins["keys"].seen)))
    finally:
        client.unregister_scheduler_plugin("keys")
    assert [d.value for d in done] == [int(w.sum().compute()) for w in windows]
    assert seen and all(key.startswith("xterramind-") for key in seen), seen


def test_a_compute_of_arrays_stores_each_chunk_in_place_without_concatenating(monkeypatch):
    import dask.array as da

    cube = da.from_array(np.arange(6 * 40 * 40, dtype="uint16").reshape(6, 40, 40), chunks=(6, 16, 16))
    window = cube[:, 5:37, 3:29]  # 3 x 2 chunk pieces
    expected = window.compute()
    values, counted = Compute((window, dask.delayed(len)([1, 2])))()  # a delayed among them: dask.compute
    assert counted == 2 and np.array_equal(values, expected)

    concatenated, concatenate = [], da.core.concatenate3

    def counting(arrays):
        result = concatenate(arrays)
        concatenated.append(np.asarray(result).nbytes)
        return result

    monkeypatch.setattr(da.core, "concatenate3", counting)
    (values,) = Compute((window,))()
    assert isinstance(values, np.ndarray) and values.dtype == np.uint16
    np.testing.assert_array_equal(values, expected)
    assert sum(concatenated) < expected.nbytes / 10  # only the store's little receipts, not the pixels
