"""model_stats: parity with fvcore on the registered backbones, analytic counts, receptive fields.

fvcore (test-only reference) traces the model with ``torch.jit`` and counts per aten op. Its
conventions differ from ours in documented ways, each checked separately below:

* fvcore's "flop" is one multiply-add, i.e. our MAC, for conv/linear/matmul/bmm/einsum.
* eval-mode ``batch_norm``: fvcore counts 2 per element (scale and shift as two ops); we count
  1 MAC per element = 2 FLOPs, so fvcore's number equals our FLOPs, not our MACs.
* ``layer_norm``: fvcore's rough 5 per element equals our FLOPs (3 statistics + 2 affine).
* ``adaptive_avg_pool2d``: fvcore counts one per input element, as our FLOPs.
* fvcore does not count max-pooling, activations, residual additions or
  ``scaled_dot_product_attention``; timm's attention is switched to its explicit ``q @ k^T``
  path (``fused_attn = False``) so fvcore sees the same products we count.
"""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch
from torch import nn

from visrep.analysis.arithmetic import receptive_field
from visrep.analysis.model_stats import GLOBAL, ModelStats, model_stats
from visrep.errors import ShapeError
from visrep.models import create_backbone

MATMUL_OPS = {"conv", "linear", "matmul", "bmm", "einsum", "addmm", "mm"}


def _by_type(stats: ModelStats, kind: str, attr: str) -> int:
    return sum(getattr(r, attr) for r in stats.rows if kind in r.type)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "resnext50_32x4d", "vit_small"])
def test_parity_with_fvcore(name: str) -> None:
    fvcore_nn = pytest.importorskip("fvcore.nn")
    torch.manual_seed(0)
    model = create_backbone(name, in_chans=3, num_classes=10, img_size=32).eval()
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    x = torch.randn(2, 3, 32, 32)
    stats = model_stats(model, x)

    flops = fvcore_nn.FlopCountAnalysis(model, x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    ops = flops.by_operator()
    norm_macs = _by_type(stats, "Norm", "macs")
    assert stats.total_macs - norm_macs == sum(v for k, v in ops.items() if k in MATMUL_OPS)
    assert _by_type(stats, "BatchNorm", "flops") == ops.get("batch_norm", 0)
    assert _by_type(stats, "LayerNorm", "flops") == ops.get("layer_norm", 0)
    assert _by_type(stats, "AdaptiveAvgPool", "flops") == ops.get("adaptive_avg_pool2d", 0)
    by_module = flops.by_module()
    for row in stats.rows:  # every conv / linear layer, one by one
        if row.type in {"Conv2d", "Linear"}:
            assert row.macs == by_module[row.name], row.name

    params = fvcore_nn.parameter_count(model)
    assert stats.total_params == params[""] == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in stats.rows) == stats.total_params
    for row in stats.rows:
        if row.type in {"Conv2d", "Linear", "BatchNorm2d", "LayerNorm"}:
            assert row.params == params[row.name], row.name


def test_fused_and_explicit_attention_count_the_same() -> None:
    torch.manual_seed(0)
    model = create_backbone("vit_small", img_size=16, depth=2).eval()
    fused = model_stats(model, (1, 3, 16, 16))
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    explicit = model_stats(model, (1, 3, 16, 16))
    assert fused.total_macs == explicit.total_macs
    n, dim = 1 + 8 * 8, 192  # tokens, attention width
    attn = [r for r in explicit.rows if r.type == "Attention"]
    assert [r.macs for r in attn] == [2 * n * n * dim] * 2  # q k^T and a v
    assert all(r.rf_size == GLOBAL for r in attn)
    patch = next(r for r in explicit.rows if r.name == "patch_embed.proj")
    assert patch.rf_size == (2, 2) and patch.rf_jump == (2, 2)


def test_conv3d_transposed_grouped_against_fvcore() -> None:
    fvcore_nn = pytest.importorskip("fvcore.nn")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(2, 4, (3, 3, 3), padding=1),
        nn.Conv3d(4, 8, (1, 3, 3), stride=(1, 2, 2), groups=2),
        nn.ConvTranspose3d(8, 6, (1, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1), groups=2),
    ).eval()
    x = torch.randn(2, 2, 4, 9, 9)
    stats = model_stats(model, x)
    ref = fvcore_nn.FlopCountAnalysis(model, x)
    assert [r.macs for r in stats.rows] == [ref.by_module()[str(i)] for i in range(3)]
    assert stats.rows[2].output_shape == tuple(model(x).shape)
    assert stats.rows[0].macs == 2 * 4 * 4 * 9 * 9 * 2 * 27


def test_multihead_attention_and_rnns_analytic() -> None:
    e, heads, length, batch = 16, 4, 10, 3
    mha = nn.MultiheadAttention(e, heads, batch_first=True)
    row = model_stats(mha, (torch.randn(batch, length, e),) * 3).rows[0]
    proj = 4 * batch * length * e * e  # q, k, v in-projections and the out-projection
    assert row.macs == proj + 2 * batch * length * length * e
    assert row.params == sum(p.numel() for p in mha.parameters())
    assert row.rf_size == GLOBAL

    hidden, feat = 8, 5
    for cls, gates in ((nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)):
        rnn = cls(feat, hidden, num_layers=2, bidirectional=True)
        row = model_stats(rnn, (length, batch, feat)).rows[0]
        layer0 = gates * hidden * (feat + hidden)
        layer1 = gates * hidden * (2 * hidden + hidden)
        assert row.macs == length * batch * 2 * (layer0 + layer1), cls
        assert row.flops == 2 * row.macs


def _stack(specs: list[tuple[int, int, int, int]]) -> nn.Sequential:
    return nn.Sequential(*[nn.Conv2d(2, 2, k, s, p, d) for k, s, p, d in specs])


def test_receptive_field_of_strided_dilated_stacks() -> None:
    specs = [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 4, 2), (3, 1, 4, 4), (1, 1, 0, 1)]
    stats = model_stats(_stack(specs), (1, 2, 64, 48))
    expected = receptive_field(specs)
    for row, rf in zip(stats.rows, expected, strict=True):
        assert row.rf_size == (rf.size, rf.size)
        assert row.rf_jump == (rf.jump, rf.jump)
        assert row.rf_start == (rf.start, rf.start)
    # seed 002's closed form with effective kernels d(k - 1) + 1: 1 + 2 + 2 + 4*2 + 8*2 + 8*4
    assert stats.rows[-1].rf_size == (61, 61)


def test_receptive_field_residual_pooling_and_linear() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(4, 4, 3, 2, 1)
            self.conv2 = nn.Conv2d(4, 4, 3, 1, 1)
            self.down = nn.Conv2d(4, 4, 1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv2(self.conv1(x)) + self.down(x))

    net = nn.Sequential(Block(), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    rows = {r.name: r for r in model_stats(net, (1, 4, 16, 16)).rows}
    assert rows["0.down"].rf_size == (1, 1) and rows["0.down"].rf_jump == (2, 2)
    assert rows["0.conv2"].rf_size == (7, 7)
    assert rows["1"].rf_size == (7, 7)  # after the sum: the union, i.e. the main path's
    assert rows["2"].rf_size == rows["4"].rf_size == GLOBAL
    flat = model_stats(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3)), (1, 1, 8, 8)
    )
    assert [r.rf_size for r in flat.rows] == [(3, 3), (3, 3), GLOBAL]


def test_small_cnn_receptive_field_is_analytic() -> None:
    model = create_backbone("small_cnn", img_size=32)
    rows = [r for r in model_stats(model, (1, 3, 32, 32)).rows if r.type in {"Conv2d", "MaxPool2d"}]
    specs = [(3, 1, 1), (3, 1, 1), (2, 2, 0)] * 3
    assert [r.rf_size[0] for r in rows] == [rf.size for rf in receptive_field(specs)]
    assert rows[-1].rf_size == (36, 36) and rows[-1].rf_jump == (8, 8)


def test_counts_memory_params_and_modes() -> None:
    lin = nn.Linear(6, 6)
    tied = nn.Sequential(lin, nn.ReLU(inplace=True), lin, nn.BatchNorm1d(6))
    tied.train()
    before = tied[3].running_mean.clone()
    stats = model_stats(tied, (4, 6))
    assert stats.total_params == 42 + 12 and sum(r.params for r in stats.rows) == 54
    assert [r.name for r in stats.rows][:3] == ["0", "1", "0 (call 2)"]
    assert stats.rows[1].activation_bytes == 0  # in place
    assert stats.rows[0].activation_bytes == 4 * 6 * 4
    assert stats.rows[3].macs == 24 and stats.rows[3].flops == 48  # eval BN: 1 MAC / element
    assert tied.training and all(m.training for m in tied)  # modes restored
    assert torch.equal(tied[3].running_mean, before)  # eval mode: statistics untouched


def test_renderers() -> None:
    stats = model_stats(create_backbone("lenet", in_chans=1, img_size=28), (2, 1, 28, 28))
    rows = list(csv.DictReader(io.StringIO(stats.to_csv())))
    assert len(rows) == len(stats.rows) and rows[0]["output_shape"] == "2x6x28x28"
    assert rows[0]["rf_size"] == "5x5" and int(rows[0]["macs"]) == stats.rows[0].macs
    data = json.loads(stats.to_json())
    assert data["totals"]["total_macs"] == stats.total_macs
    assert data["rows"][-1]["rf_size"] == GLOBAL and data["rows"][0]["rf_jump"] == [1, 1]
    md = stats.to_markdown().splitlines()
    assert len(md) == len(stats.rows) + 3 and md[0].startswith("| layer | type")
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    stats.print(console)
    text = console.file.getvalue()
    assert "features.0" in text and "total" in text
    assert math.isclose(stats.total_flops, sum(r.flops for r in stats.rows))


def test_bad_inputs() -> None:
    with pytest.raises(ShapeError, match="inputs must be"):
        model_stats(nn.Linear(2, 2), "1x2")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="inputs must be"):
        model_stats(nn.Linear(2, 2), [])
    with pytest.raises(ShapeError, match=r"shape \(1, 3\)"):
        model_stats(nn.Linear(2, 2), (1, 3))
    mha = nn.MultiheadAttention(4, 2)  # a ruled root: its out_proj is not a separate row
    stats = model_stats(mha, (torch.randn(3, 1, 4),) * 3)
    assert [r.name for r in stats.rows] == ["(root)"] and stats.total_params == 80
