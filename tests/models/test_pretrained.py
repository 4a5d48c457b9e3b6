"""pretrained_path: plain state dicts, visrep checkpoints and run directories, read safely."""

import logging

import pytest
import timm
import torch

from visrep.errors import CheckpointError
from visrep.models import create_backbone, list_backbones, load_pretrained

OPTS: dict[str, dict] = {"timm": {"model_name": "test_efficientnet"}}


def _make(name: str, num_classes: int, **kw):
    torch.manual_seed(num_classes)  # different initial weights for source and destination
    return create_backbone(
        name, in_chans=1, num_classes=num_classes, img_size=8, **OPTS.get(name, {}), **kw
    )


def _fake_run_checkpoint(model: torch.nn.Module) -> dict:
    # What a visrep task's Lightning checkpoint holds: the backbone lives at net.backbone.
    state = {"net.backbone." + k: v for k, v in model.state_dict().items()}
    state["net.normalize.mean"] = torch.zeros(1)
    return {"state_dict": state, "epoch": 3}


@pytest.mark.parametrize("name", list_backbones())
def test_visrep_checkpoint_loads_into_a_fresh_backbone(name, tmp_path):
    src = _make(name, num_classes=5)
    torch.save(_fake_run_checkpoint(src), tmp_path / "best.ckpt")
    dst = _make(name, num_classes=3, pretrained_path=str(tmp_path / "best.ckpt"))
    a, b = src.state_dict(), dst.state_dict()
    differ = [k for k in a if a[k].shape != b[k].shape]
    assert differ and len(differ) <= 2  # the classifier's weight and bias only
    assert all(torch.equal(a[k], b[k]) for k in a if k not in differ)


def test_pretrained_path_loads_matching_tensors(tmp_path):
    src = create_backbone("small_cnn", in_chans=1, num_classes=5)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = create_backbone("small_cnn", in_chans=1, num_classes=3)

    load_pretrained(dst, tmp_path / "w.pt")
    assert torch.equal(dst.features[0].weight, src.features[0].weight)
    assert dst.head.fc.out_features == 3  # mismatched classifier skipped


def test_run_directory_prefers_best_then_last(tmp_path, caplog):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    last, best = _make("small_cnn", 5), _make("small_cnn", 6)
    torch.save(_fake_run_checkpoint(last), run / "checkpoints" / "last.ckpt")
    m = _make("small_cnn", 3, pretrained_path=str(run))
    assert torch.equal(m.features[0].weight, last.features[0].weight)
    torch.save(_fake_run_checkpoint(best), run / "checkpoints" / "best.ckpt")
    with caplog.at_level(logging.WARNING):
        m = _make("small_cnn", 3, pretrained_path=str(run))
    assert torch.equal(m.features[0].weight, best.features[0].weight)
    assert "head.fc.weight" in caplog.text  # skipped tensors are logged


def test_timm_backbone_takes_plain_timm_weights(tmp_path):
    ref = timm.create_model("test_efficientnet", pretrained=False, in_chans=1, num_classes=5)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    m = _make("timm", 3, pretrained_path=str(tmp_path / "timm.pth"))
    assert torch.equal(m.model.conv_stem.weight, ref.conv_stem.weight)


def test_bad_files_raise_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        _make("mlp", 3, pretrained_path=str(tmp_path / "missing.pt"))
    with pytest.raises(CheckpointError, match=r"without checkpoints/best\.ckpt"):
        _make("mlp", 3, pretrained_path=str(tmp_path))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        _make("mlp", 3, pretrained_path=str(tmp_path / "junk.pt"))
    torch.save({"state_dict": {"x": 1}}, tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        _make("mlp", 3, pretrained_path=str(tmp_path / "nothing.pt"))
    torch.save(_make("small_cnn", 3).state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(CheckpointError, match="match only 1 of"):
        _make("mlp", 3, pretrained_path=str(tmp_path / "cnn.pt"))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.ckpt")  # not a Lightning checkpoint
    with pytest.raises(CheckpointError, match="no state_dict"):
        _make("mlp", 3, pretrained_path=str(tmp_path / "plain.ckpt"))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    torch.save({"state_dict": {"w": _Evil()}}, tmp_path / "evil.ckpt")
    torch.save({"w": _Evil()}, tmp_path / "evil.pt")
    for f in ("evil.ckpt", "evil.pt"):
        with pytest.raises(CheckpointError):
            _make("mlp", 3, pretrained_path=str(tmp_path / f))
    assert "pwned" not in capsys.readouterr().out
