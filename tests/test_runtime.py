"""Process-side choices (``xterramind.runtime``): the device, the precision, autocast, thread settings and the
process's shared objects."""

import threading
import time

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


def test_the_thread_setting_is_applied_from_the_environment(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("XTERRAMIND_TORCH_THREADS", "1")
    try:
        runtime.use_thread_setting()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.delenv("XTERRAMIND_TORCH_THREADS")
    runtime.use_thread_setting()
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
