"""``xterramind.buffers``: memory reused between regions, never while any array or tensor still views it, and
nothing held once the work is done."""

import gc
import threading

import numpy as np
import pytest
import torch
import xarray as xr

from xterramind import buffers, pipeline


def address(array) -> int:
    return array.__array_interface__["data"][0]


@pytest.fixture
def pool():
    """A pool in use for the test, empty again after it."""
    with buffers.reused():
        yield
    assert buffers.free_bytes() == 0


def test_outside_a_reuse_scope_arrays_are_plain_and_nothing_is_kept():
    before = buffers.counts()
    array = buffers.empty((3, 4), np.float32)
    zeros = buffers.zeros((5,), np.int16)
    assert array.shape == (3, 4) and array.dtype == np.float32 and array.flags.owndata
    assert zeros.tolist() == [0] * 5 and zeros.dtype == np.int16
    del array, zeros
    gc.collect()
    assert buffers.free_bytes() == 0 and buffers.counts() == before


def test_memory_comes_back_only_after_its_last_numpy_or_torch_view_is_gone(pool):
    loan = buffers.empty((4, 6), np.float32)
    where = address(loan)
    row = loan[1:3]  # a NumPy view
    tensor = torch.from_numpy(loan[2:])[1]  # a torch view of a view
    del loan, row
    gc.collect()
    assert buffers.free_bytes() == 0  # the tensor still uses it
    other = buffers.empty((2, 12), np.float32)  # the same size: new memory, not the block the tensor holds
    assert address(other) != where
    tensor += 1  # still writable, still its own
    del tensor
    gc.collect()
    assert buffers.free_bytes() == 96
    again = buffers.empty((24,), np.int32)  # any shape and dtype of that size takes it
    assert address(again) == where and buffers.free_bytes() == 0
    assert again.flags.c_contiguous and again.flags.writeable


def test_reused_memory_asked_for_as_zeros_is_zeroed(pool):
    dirty = buffers.empty((8, 8), np.float64)
    dirty.fill(7.5)
    where = address(dirty)
    del dirty
    gc.collect()
    clean = buffers.zeros((64,), np.float64)
    assert address(clean) == where and not clean.any()


def test_the_pool_keeps_at_most_its_limit_the_least_recently_given_back_first(pool, monkeypatch):
    monkeypatch.setattr(buffers, "POOL_BYTES", 1000)
    first, second, third = (buffers.empty((100,), np.float32) for _ in range(3))  # 400 bytes each
    oldest = address(first)
    del first, second, third  # given back in this order
    gc.collect()
    assert buffers.free_bytes() == 800  # the third would pass the limit: the first given back went
    kept = [buffers.empty((100,), np.float32) for _ in range(2)]
    assert oldest not in [address(loan) for loan in kept]
    big = buffers.empty((2000,), np.uint8)  # larger than the whole pool: never kept
    del big
    gc.collect()
    assert buffers.free_bytes() == 0


def test_nested_scopes_share_the_pool_and_the_last_to_end_empties_it():
    with buffers.reused():
        with buffers.reused():
            del_me = buffers.empty((10,), np.float32)
            del del_me
            gc.collect()
        assert buffers.free_bytes() == 40  # the outer scope still runs
    assert buffers.free_bytes() == 0
    buffers.start()
    buffers.stop()
    buffers.stop()  # one stop too many is harmless
    assert buffers.free_bytes() == 0 and buffers.empty((2,), np.float32).flags.owndata


def test_loans_made_and_returned_from_many_threads_never_overlap(pool):
    live, lock, errors = {}, threading.Lock(), []

    def borrow(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            loan = buffers.empty((int(rng.integers(1, 4)) * 256,), np.float32)
            start = address(loan)
            with lock:
                if any(start < end and other < start + loan.nbytes for other, end in live.values()):
                    errors.append(start)
                live[id(loan)] = (start, start + loan.nbytes)
            loan.fill(seed)
            if not (loan == seed).all():
                errors.append(seed)
            with lock:
                del live[id(loan)]
            del loan

    threads = [threading.Thread(target=borrow, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and buffers.counts()["loans"] > 0


def test_a_write_reuses_its_regions_memory_and_its_store_equals_compute(cube, micro, tmp_path):
    # 64 px tiles in regions of 4 tokens: 8 x 8 regions, most of them alike (the edges' windows are cut)
    result = cube.terramind.generate("LULC", micro, seed=3, tile_size=64, chunks=4)
    before = buffers.counts()
    pipeline.write(result, tmp_path / "lulc.zarr", progress_bar=False)
    after = buffers.counts()
    loans, fresh = after["loans"] - before["loans"], after["fresh"] - before["fresh"]
    assert loans >= 64 * 4  # each region: its window, its sums and weights, its batches
    assert fresh <= loans / 4  # most regions took memory an earlier one gave back
    assert buffers.free_bytes() == 0  # given back to the system when the write ended
    with xr.open_zarr(tmp_path / "lulc.zarr") as stored:
        computed = result.compute()
        for name in ("LULC", "LULC_probability"):
            np.testing.assert_array_equal(stored[name].values, computed[name].values)
