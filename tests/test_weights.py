"""Loading checkpoints in the official layout: files, the Hugging Face cache, and every way it can fail."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_a_pickle_that_carries_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"encoder_norm.weight": torch.ones(192), "payload": _Trap(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="asks to run code"):
        xterramind.load_model("tiny", weights=tmp_path / "evil.pt", device="cpu")
    assert not marker.exists()


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


def _hub_run(cache: Path, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", XTERRAMIND_WEIGHTS_DIR="")
    root = Path(__file__).parents[1]
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=300)


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
        "import json, torch, xterramind\n"
        "from tests.test_weights import _inputs\n"
        "m = xterramind.load_model('terramind_v1_tiny', device='cpu', precision='fp32')\n"
        "print(json.dumps([m.weights_id, m.encode(_inputs(), layers=-1).double().sum().item()]))\n"
    )
    result = _hub_run(tmp_path / "hub", code)
    assert result.returncode == 0, result.stderr
    weights_id, total = json.loads(result.stdout.strip().splitlines()[-1])
    assert weights_id == digest
    with torch.no_grad():
        assert total == pytest.approx(model.encode(_inputs(), layers=-1).double().sum().item(), rel=1e-9)


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
