"""Loading checkpoints in the official layout: files, the Hugging Face cache, and every way it can fail."""

import hashlib
import io
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import xterramind
from xterramind import runtime
from xterramind.errors import CheckpointError, WeightsUnavailableError
from xterramind.models import TerraMind, get_config
from xterramind.models.weights import init_seeded_

REPO = "ibm-esa-geospatial/TerraMind-1.0-tiny"
FILE = "TerraMind_v1_tiny.pt"


@pytest.fixture(autouse=True)
def fresh_model_cache(monkeypatch):
    """Each test resolves its weights anew ("auto" means different files in different tests)."""
    monkeypatch.setattr(runtime, "_models", {})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model in the official layout, saved as .pt (as IBM ships it) and as .safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("checkpoints")
    model = init_seeded_(TerraMind.empty(get_config("tiny")), 123).eval()
    state = model.state_dict()
    torch.save(state, folder / FILE)
    save_file({k: v.clone().contiguous() for k, v in state.items()}, folder / "tiny.safetensors")
    return folder, model


def _inputs():
    generator = torch.Generator().manual_seed(1)
    return {"S2L2A": torch.randn(2, 12, 64, 64, generator=generator), "tok_LULC": torch.randint(0, 4375, (2, 4, 4), generator=generator)}


def _assert_reproduces(loaded, model):
    with torch.no_grad():
        assert torch.equal(loaded.encode(_inputs(), layers=-1), model.encode(_inputs(), layers=-1))
        context = loaded.with_decoder().encode_context(_inputs())
        expected = model.decode_grid(model.encode_context(_inputs()), "tok_S1GRD", (4, 4))
        assert torch.equal(loaded.with_decoder().decode_grid(context, "tok_S1GRD", (4, 4)), expected)


@pytest.mark.parametrize("filename", [FILE, "tiny.safetensors"])
def test_official_layout_checkpoint_reproduces_the_saved_model_exactly(saved, filename):
    folder, model = saved
    loaded = xterramind.load_model("terramind_v1_tiny", weights=folder / filename, device="cpu", precision="fp32")
    _assert_reproduces(loaded, model)
    assert loaded.weights_id == hashlib.sha256((folder / filename).read_bytes()).hexdigest()
    assert not loaded.is_random and str(folder / filename) in repr(loaded)


def test_encoder_only_use_ignores_the_decoder_keys(saved):
    folder, _ = saved
    loaded = xterramind.load_model("tiny", weights=folder / FILE, device="cpu", precision="fp32")
    assert not loaded.module.has_decoder
    assert not any(k.startswith("decoder") for k in loaded.module.state_dict())


@pytest.mark.parametrize("filename", [FILE, "tiny.safetensors"])
def test_a_truncated_file_is_reported_as_corrupt(saved, tmp_path, filename):
    source = saved[0] / filename
    broken = tmp_path / filename
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        xterramind.load_model("tiny", weights=broken, device="cpu")


def test_a_checkpoint_of_another_variant_is_recognised(saved):
    with pytest.raises(CheckpointError, match=r"looks like a terramind_v1_tiny checkpoint") as error:
        xterramind.load_model("terramind_v1_small", weights=saved[0] / FILE, device="cpu")
    assert "wrong shape" in str(error.value)


def test_missing_and_unexpected_keys_are_listed(saved, tmp_path):
    state = torch.load(saved[0] / FILE, weights_only=True)
    del state["encoder.3.mlp.fc1.weight"]
    state["encoder.3.mlp.fc9.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=r"1 missing:\n    encoder.3.mlp.fc1.weight") as error:
        xterramind.load_model("tiny", weights=tmp_path / "edited.pt", device="cpu")
    assert "1 unexpected:\n    encoder.3.mlp.fc9.weight" in str(error.value)


class _Trap:
    """Unpickling this calls Path.touch(marker): the code a malicious checkpoint would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _assert_safe_refusal(error: CheckpointError, path: Path) -> None:
    """The message names the file and never passes on torch's advice to load it with weights_only=False."""
    message = str(error)
    assert str(path) in message and "will not load" in message.replace("will not be loaded", "will not load")
    assert "weights_only=False" not in message.replace(" ", "") and "weights_only` set to `False" not in message


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_pickle_that_carries_code_is_refused_without_running_it(tmp_path, zip_format):
    marker = tmp_path / "code-ran"
    for name, payload in (("code", _Trap(marker)), ("objects", np.ones(3))):  # code, or arbitrary Python objects
        path = tmp_path / f"{name}.pt"
        torch.save({"encoder_norm.weight": torch.ones(192), "payload": payload}, path,
                   _use_new_zipfile_serialization=zip_format)
        with pytest.raises(CheckpointError, match="not a plain checkpoint: it asks to run code") as error:
            xterramind.load_model("tiny", weights=path, device="cpu")
        _assert_safe_refusal(error.value, path)
    assert not marker.exists()


def test_files_that_cannot_be_decoded_are_checkpoint_errors_that_run_nothing(saved, tmp_path):
    marker = tmp_path / "code-ran"
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": torch.ones(1000)}, legacy, _use_new_zipfile_serialization=False)
    evil = tmp_path / "evil-legacy.pt"
    torch.save({"payload": _Trap(marker), "x": torch.ones(1000)}, evil, _use_new_zipfile_serialization=False)
    safetensors = (saved[0] / "tiny.safetensors").read_bytes()
    header = int.from_bytes(safetensors[:8], "little")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writing:
        writing.writestr("notes/readme.txt", "a zip file, but not torch.save's")
    cases = {
        "empty.pt": b"",
        "garbage.pt": bytes(range(256)) * 8,
        "text.pt": b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 12\n",  # an LFS pointer
        "python-pickle.pt": pickle.dumps({"encoder_norm.weight": [1.0, 2.0]}),
        "truncated-legacy.pt": legacy.read_bytes()[:200],
        "truncated-evil-legacy.pt": evil.read_bytes()[:-40],
        "empty.safetensors": b"",
        "garbage.safetensors": (10**9).to_bytes(8, "little") + b"{" + b"x" * 100,
        "bad-header.safetensors": safetensors[:8] + b"{" + b" " * (header - 1) + safetensors[8 + header:],
        "short-data.safetensors": safetensors[: 8 + header + 10],
        "archive.pt": archive.getvalue(),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as error:
            xterramind.load_model("tiny", weights=path, device="cpu")
        _assert_safe_refusal(error.value, path)
    assert not marker.exists()


def test_the_format_is_read_from_the_file_not_its_name(saved, tmp_path):
    folder, model = saved
    shutil.copy(folder / "tiny.safetensors", tmp_path / "tiny.pt")
    shutil.copy(folder / FILE, tmp_path / "tiny.safetensors")
    for path in (tmp_path / "tiny.pt", tmp_path / "tiny.safetensors"):
        _assert_reproduces(xterramind.load_model("tiny", weights=path, device="cpu", precision="fp32"), model)


def test_files_that_are_not_state_dicts_or_do_not_exist(tmp_path):
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        xterramind.load_model("tiny", weights=tmp_path / "list.pt", device="cpu")
    with pytest.raises(WeightsUnavailableError, match="not found"):
        xterramind.load_model("tiny", weights=tmp_path / "nowhere.pt", device="cpu")


def test_weights_dir_variable_is_searched_first(saved, monkeypatch):
    monkeypatch.setenv("XTERRAMIND_WEIGHTS_DIR", str(saved[0]))
    loaded = xterramind.load_model("tiny", device="cpu", precision="fp32")
    _assert_reproduces(loaded, saved[1])


def _hub_run(cache: Path, code: str, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", XTERRAMIND_WEIGHTS_DIR="")
    root = Path(__file__).parents[1]
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=root, capture_output=True,
                          text=True, timeout=300)


def test_official_weights_load_from_the_hugging_face_cache(saved, tmp_path):
    folder, model = saved
    # the cache layout huggingface_hub writes: blobs named by sha256, snapshots linking to them
    digest = hashlib.sha256((folder / FILE).read_bytes()).hexdigest()
    repo = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    shutil.copy(folder / FILE, repo / "blobs" / digest)
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "snapshots" / revision / FILE).symlink_to(Path("..", "..", "blobs", digest))
    code = (
        "import sys, torch, xterramind\n"
        "from tests.test_weights import _inputs\n"
        "m = xterramind.load_model('terramind_v1_tiny', device='cpu', precision='fp32')\n"
        "torch.save({'weights_id': m.weights_id, 'out': m.encode(_inputs(), layers=-1)}, sys.argv[1])\n"
    )
    result = _hub_run(tmp_path / "hub", code, tmp_path / "out.pt")
    assert result.returncode == 0, result.stderr
    other = torch.load(tmp_path / "out.pt", weights_only=True)
    assert other["weights_id"] == digest
    with torch.no_grad():
        # another process may use other threads, so another summation order: float32 tolerance, element by element
        torch.testing.assert_close(other["out"], model.encode(_inputs(), layers=-1))


def test_offline_without_the_file_names_the_file_and_the_fix(tmp_path):
    code = "import xterramind\nxterramind.load_model('terramind_v1_tiny')\n"
    result = _hub_run(tmp_path / "empty-hub", code)
    assert result.returncode != 0
    message = result.stderr
    assert "WeightsUnavailableError" in message
    for needed in (FILE, REPO, "hf download", "XTERRAMIND_WEIGHTS_DIR", "weights='random'"):
        assert needed in message


def test_the_demo_falls_back_to_random_weights_when_the_lulc_tokenizer_is_missing(saved, monkeypatch, capsys):
    from xterramind import cli

    monkeypatch.setenv("XTERRAMIND_WEIGHTS_DIR", str(saved[0]))  # the model's file is there, its tokenizer not
    model = cli._official_or_random("terramind_v1_tiny", download=False)
    warning = capsys.readouterr().err
    assert model.is_random and "RUNNING ON RANDOM WEIGHTS" in warning and "the LULC tokenizer" in warning


def test_offline_the_hub_is_tried_once_and_the_message_is_whole(offline):
    with pytest.raises(WeightsUnavailableError) as error:
        xterramind.load_model("terramind_v1_tiny", device="cpu")
    # one probe, not huggingface_hub's six tries with 23 s of back-off (its defaults, whatever they become)
    assert 1 <= len(offline) <= 2, offline
    first, *fixes = str(error.value).splitlines()
    # the first line stands alone: notebooks and the command line may print only it
    assert FILE in first and REPO in first and "could not be downloaded" in first and first.endswith(".")
    for needed in ("hf download", "XTERRAMIND_WEIGHTS_DIR", f"weights='/path/to/{FILE}'", "weights='random'"):
        assert any(needed in line for line in fixes), needed


def test_a_hub_that_does_not_answer_costs_only_the_probe(monkeypatch):
    from xterramind.models.weights import hub_unreachable

    released = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: released.wait() and [])  # a hanging lookup
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    try:
        assert "did not answer within 0.2 s" in hub_unreachable(seconds=0.2)
    finally:
        released.set()


def test_a_misspelt_weights_policy_is_named(tmp_path):
    for given in ("Random", "official", str(tmp_path / "nowhere.pt")):
        with pytest.raises(WeightsUnavailableError, match="file not found") as error:
            xterramind.load_model("tiny", weights=given, device="cpu")
        assert f"weights={given!r}" in str(error.value) and "'random'" in str(error.value)
