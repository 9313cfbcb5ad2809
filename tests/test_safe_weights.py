"""TorchScript archives and pickles are read without running any code they hold."""

import subprocess
import sys
import zipfile

import pytest
import torch

from annotation_files import tiny_msrvtt_run
from cmadapter import CheckpointError, build_model, load_backbone
from cmadapter.backbone import build_clip
from cmadapter.cli import main
from cmadapter.safe_weights import read_torchscript_weights
from helpers import TINY, random_video

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")


class SetstateWritesAFile(torch.nn.Module):
    """A module whose TorchScript ``__setstate__`` writes a file: what ``torch.jit.load`` would run."""

    def __init__(self, target: str):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))
        self.target = target

    @torch.jit.export
    def __getstate__(self):
        return (self.weight, self.training, self.target)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool, str]):
        torch.save(state[0], state[2])
        self.weight = state[0]
        self.training = state[1]
        self.target = state[2]

    def forward(self, x):
        return x * self.weight


def save_tiny_clip(path, *, how: str, half: bool = False):
    torch.manual_seed(0)
    model = build_clip(TINY).eval()
    if half:
        model = model.half()
    if how == "trace":  # OpenAI's archives are traced
        dtype = torch.float16 if half else torch.float32
        scripted = torch.jit.trace_module(model, {"encode_image": (torch.randn(1, 3, 32, 32, dtype=dtype),)})
    else:
        scripted = torch.jit.script(model)
    torch.jit.save(scripted, str(path))
    return path


@pytest.fixture
def harmful_archive(tmp_path):
    """(archive named like an official checkpoint, the file its code would write)."""
    target = tmp_path / "written-by-the-archive"
    path = tmp_path / "pytorch_model.bin.4"
    torch.jit.save(torch.jit.script(SetstateWritesAFile(str(target))), str(path))
    return path, target


@pytest.mark.parametrize(("how", "half"), [("trace", False), ("trace", True), ("script", False)])
def test_state_dict_is_torch_jit_loads_bit_for_bit(tmp_path, how, half):
    path = save_tiny_clip(tmp_path / "clip.pt", how=how, half=half)
    expected = torch.jit.load(str(path), map_location="cpu").state_dict()
    ours = read_torchscript_weights(path)
    assert list(ours) == list(expected)
    for key, tensor in expected.items():
        assert ours[key].dtype == tensor.dtype and ours[key].shape == tensor.shape, key
        assert torch.equal(ours[key], tensor), key


def test_backbone_from_an_archive_gives_the_features_it_gave_before(tmp_path):
    path = save_tiny_clip(tmp_path / "ViT-tiny.pt", how="trace", half=True)
    # Before: the backbone was built from torch.jit.load's state dict.
    torch.save(torch.jit.load(str(path), map_location="cpu").state_dict(), tmp_path / "before.pt")
    before = build_model(pretrained=tmp_path / "before.pt", method=None)
    now = build_model(pretrained=path, method=None)
    video = random_video()
    mask = torch.ones(video.shape[:2], dtype=torch.bool)
    tokens = now.tokenize(["a red square", "a blue ring"])
    with torch.no_grad():
        assert torch.equal(now.encode_video(video, mask), before.encode_video(video, mask))
        assert torch.equal(now.encode_text(tokens), before.encode_text(tokens))


@pytest.mark.slow
def test_the_harmful_archive_does_write_its_file_under_torch_jit_load(harmful_archive):
    path, target = harmful_archive  # so the tests below can fail
    code = f"import torch; torch.jit.load({str(path)!r})"
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True, capture_output=True)
    assert target.exists()


def test_build_model_refuses_the_harmful_archive_and_runs_nothing(harmful_archive):
    path, target = harmful_archive
    with pytest.raises(CheckpointError, match="defines __setstate__") as caught:
        build_model(pretrained=path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    assert not target.exists()


@pytest.mark.parametrize("command", ["info", "train", "eval"])
def test_cli_refuses_the_harmful_archive_in_one_line(harmful_archive, tmp_path, capsys, command):
    path, target = harmful_archive
    if command == "info":
        args = ["info", "--pretrained", str(path)]
    else:
        config, _ = tiny_msrvtt_run(tmp_path / "run", path)
        args = [command, "--config", str(config), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "defines __setstate__" in err
    assert not target.exists()


def test_a_foreign_global_in_the_archive_is_refused(tmp_path, harmful_archive):
    source, target = harmful_archive
    path = tmp_path / "system.pt"
    payload = b"cposix\nsystem\n(V" + f"touch {target}".encode() + b"\ntR."
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for name in old.namelist():
            new.writestr(name, payload if name.endswith("/data.pkl") else old.read(name))
    with pytest.raises(CheckpointError, match=r"posix\.system"):
        load_backbone(pretrained=path)
    assert not target.exists()


def test_a_truncated_storage_record_is_an_error(tmp_path):
    source = save_tiny_clip(tmp_path / "clip.pt", how="trace")
    path = tmp_path / "cut.pt"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            new.writestr(name, data[: len(data) // 2] if name.endswith("/data/0") else data)
    with pytest.raises(CheckpointError, match="data/0 holds .* bytes, expected"):
        load_backbone(pretrained=path)


def test_a_pickle_with_objects_is_refused_in_one_clean_line(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_backbone(pretrained=path)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and "weights_only=False" not in message
    assert str(path) in message and "torch.nn.modules.linear.Linear" in message
