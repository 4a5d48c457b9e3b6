"""DETR (Carion et al. 2020): shapes, boxes in input pixels, padding invariance, training, options."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.detection import DETECTORS
from visrep.models.detection.detr import (
    DecoderLayer,
    EncoderLayer,
    PositionEmbeddingSine,
    detr,
    sine_position_encoding,
)

TINY = {"hidden_dim": 32, "num_heads": 4, "num_encoder_layers": 2, "num_decoder_layers": 2,
        "dim_feedforward": 64, "num_queries": 8, "min_size": None}  # fmt: skip


def tiny(**kw) -> detr:
    torch.manual_seed(0)
    opts = {"backbone": partial(small_cnn, channels=(8, 16, 16)), **TINY, **kw}
    return detr(3, 3, **opts)


def test_sine_position_encoding_formula_and_padding():
    mask = torch.zeros(1, 3, 4, dtype=torch.bool)
    pos = sine_position_encoding(mask, num_pos_feats=6, temperature=100.0)
    assert pos.shape == (1, 12, 3, 4)
    for c in range(6):
        dim_t = 100.0 ** (2 * (c // 2) / 6)
        f = math.sin if c % 2 == 0 else math.cos
        y = 2 / (3 + 1e-6) * 2 * math.pi  # row 1 of 3
        x = 4 / (4 + 1e-6) * 2 * math.pi  # column 3 of 4
        assert float(pos[0, c, 1, 3]) == pytest.approx(f(y / dim_t), abs=1e-5)
        assert float(pos[0, 6 + c, 1, 3]) == pytest.approx(f(x / dim_t), abs=1e-5)
    padded = torch.ones(1, 5, 7, dtype=torch.bool)
    padded[:, :3, :4] = False  # the same image with padding below and right
    torch.testing.assert_close(
        sine_position_encoding(padded, 6, 100.0)[..., :3, :4], pos, rtol=0, atol=1e-6
    )
    torch.testing.assert_close(PositionEmbeddingSine(6, 100.0)(mask), pos)
    with pytest.raises(ConfigError, match="num_pos_feats"):
        sine_position_encoding(mask, num_pos_feats=5)


def test_layers_without_positions_equal_torch_post_norm_layers():
    torch.manual_seed(0)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 4:] = True
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    enc = EncoderLayer(16, 4, 32, 0.0).eval()
    sd = {k.replace("linear", "ffn.linear"): v for k, v in ref.state_dict().items()}
    enc.load_state_dict(sd)
    torch.testing.assert_close(
        enc(mem, torch.zeros_like(mem), mask), ref(mem, src_key_padding_mask=mask)
    )
    ref_d = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    dec = DecoderLayer(16, 4, 32, 0.0).eval()
    sd = {
        k.replace("linear", "ffn.linear").replace("multihead_attn", "cross_attn"): v
        for k, v in ref_d.state_dict().items()
    }
    dec.load_state_dict(sd)
    torch.testing.assert_close(
        dec(x, mem, torch.zeros_like(mem), torch.zeros_like(x), mask),
        ref_d(x, mem, memory_key_padding_mask=mask),
    )


def test_positions_enter_queries_and_keys_of_every_attention():
    # The paper's layers written out (Fig. 10): pos / query_pos on queries and keys, never values.
    torch.manual_seed(1)
    x, qpos = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    mem, pos = torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 5:] = True
    enc, dec = EncoderLayer(16, 4, 32, 0.0).eval(), DecoderLayer(16, 4, 32, 0.0).eval()
    s = mem + pos
    a = enc.self_attn(s, s, mem, key_padding_mask=mask)[0]
    y = enc.norm1(mem + a)
    torch.testing.assert_close(enc(mem, pos, mask), enc.norm2(y + enc.ffn(y)))
    q = x + qpos
    y = dec.norm1(x + dec.self_attn(q, q, x)[0])
    y = dec.norm2(y + dec.cross_attn(y + qpos, mem + pos, mem, key_padding_mask=mask)[0])
    torch.testing.assert_close(dec(x, mem, pos, qpos, mask), dec.norm3(y + dec.ffn(y)))


def test_detections_shapes_and_range():
    m = tiny(min_size=40, max_size=64).eval()
    images = [torch.randn(3, 48, 64), torch.randn(3, 30, 20)]
    with torch.no_grad():
        out = m(images)
    assert len(out) == 2
    for d, im in zip(out, images, strict=True):
        assert set(d) == {"boxes", "scores", "labels"}
        assert (
            d["boxes"].shape == (8, 4) and d["scores"].shape == (8,) and d["labels"].shape == (8,)
        )
        assert d["labels"].dtype == torch.long and int(d["labels"].min()) >= 0
        assert int(d["labels"].max()) < 3 and float(d["scores"].max()) <= 1
        h, w = im.shape[1:]
        b = d["boxes"]
        assert bool((b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all())
        assert (
            float(b.min()) >= 0
            and float(b[:, [0, 2]].max()) <= w
            and float(b[:, [1, 3]].max()) <= h
        )


def _fixed_boxes(m: detr, cxcywh: list[float]) -> None:
    last = m.bbox_embed[-1]
    nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.copy_(torch.logit(torch.tensor(cxcywh)))


def test_boxes_are_in_the_input_images_pixels_through_the_resize():
    m = tiny(min_size=32, max_size=40).eval()  # both images are resized
    _fixed_boxes(m, [0.4, 0.6, 0.2, 0.4])  # every query predicts this relative box
    images = [torch.randn(3, 48, 64), torch.randn(3, 100, 50)]
    with torch.no_grad():
        out = m(images)
    for d, (h, w) in zip(out, [(48, 64), (100, 50)], strict=True):
        expected = torch.tensor([0.3 * w, 0.4 * h, 0.5 * w, 0.8 * h]).expand(8, 4)
        torch.testing.assert_close(d["boxes"], expected)
    # the same boxes as targets (pixels) give zero box losses at every decoder layer
    targets = [{"boxes": out[i]["boxes"][:2], "labels": torch.tensor([0, 2])} for i in range(2)]
    losses = m.train()(images, targets)
    for k, v in losses.items():
        if "bbox" in k or "giou" in k:
            assert abs(float(v.detach())) < 1e-5, k


def test_padding_does_not_change_the_transformer_and_heads():
    m = tiny().eval()
    torch.manual_seed(1)
    feats = torch.randn(1, 16, 3, 4)
    alone = m.forward_transformer(feats, torch.zeros(1, 3, 4, dtype=torch.bool))
    padded = torch.randn(1, 16, 5, 6) * 10  # garbage in the padding
    padded[..., :3, :4] = feats
    mask = torch.ones(1, 5, 6, dtype=torch.bool)
    mask[:, :3, :4] = False
    batched = m.forward_transformer(padded, mask)
    for a, b in zip(alone, batched, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_the_detections_with_a_per_position_backbone():
    # 1x1 convs and 2x2 pooling only: the CNN is per position too, so the whole detector's
    # output for an image does not depend on the other images of its batch.
    m = tiny(backbone=partial(small_cnn, channels=(8, 16), kernel_size=1)).eval()
    torch.manual_seed(2)
    a, b = torch.randn(3, 16, 24), torch.randn(3, 36, 12)
    with torch.no_grad():
        alone = m([a])[0]
        batched = m([a, b])[0]
        x, mask = m.batch_images([a, b])
    assert x.shape == (2, 3, 36, 24) and not bool(mask[0, :16, :24].any())
    assert bool(mask[0, 16:].all() and mask[1, :, 12:].all())
    for k in alone:
        torch.testing.assert_close(alone[k], batched[k], rtol=1e-5, atol=1e-4)


def _scene(seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    image = 0.1 * torch.randn(3, 48, 48, generator=g)
    boxes, labels = [], []
    for c, (y, x, s) in enumerate([(4, 6, 14), (26, 22, 16), (8, 30, 12)]):
        image[c, y : y + s, x : x + s] += 2.0  # one colour per class
        boxes.append([x, y, x + s, y + s])
        labels.append(c)
    return image, {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(labels),
    }


def test_training_step_losses_and_overfitting_two_images():
    m = tiny(dropout=0.0, num_queries=6).train()
    images, targets = zip(*(_scene(s) for s in (0, 1)), strict=True)
    losses = m(list(images), list(targets))
    names = {f"loss_{t}{s}" for t in ("ce", "bbox", "giou") for s in ("", "_0")}
    assert set(losses) == names  # the auxiliary loss of decoder layer 0
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert set(tiny(aux_loss=False)(list(images), list(targets))) == {
        "loss_ce", "loss_bbox", "loss_giou"
    }  # fmt: skip
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        terms = m(list(images), list(targets))
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in terms.items()})
    first, last = history[0], history[-1]
    assert sum(last.values()) < 0.4 * sum(first.values()), history
    for k in ("loss_ce", "loss_bbox", "loss_giou"):  # each term falls, not just the class one
        assert last[k] < 0.7 * first[k], (k, first[k], last[k])
    for name, p in m.named_parameters():
        assert p.grad is not None, name


def test_multi_scale_sizes_in_training_and_the_last_in_evaluation():
    m = tiny(min_size=(16, 24, 32), max_size=1000)
    im = torch.randn(3, 40, 80)
    m.eval()
    assert m.batch_images([im])[0].shape[-2:] == (32, 64)
    m.train()
    torch.manual_seed(0)
    seen = {tuple(m.batch_images([im])[0].shape[-2:]) for _ in range(30)}
    assert seen == {(16, 32), (24, 48), (32, 64)}


def test_score_thresh_and_registry_build():
    m = DETECTORS.build(
        {"class_path": "detr", "init_args": {"backbone": {"class_path": "small_cnn",
         "init_args": {"channels": [8, 16]}}, **TINY, "score_thresh": 0.9}}, 3, 2
    ).eval()  # fmt: skip
    assert isinstance(m, detr) and m.num_classes == 2 and m.stride == 4
    with torch.no_grad():
        out = m([torch.randn(3, 32, 32)])
    assert len(out[0]["scores"]) == 0 or float(out[0]["scores"].min()) >= 0.9


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"num_heads": 3}, "num_heads"),
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"num_queries": 0}, "num_queries"),
        ({"num_decoder_layers": 0}, "num_decoder_layers"),
        ({"num_encoder_layers": -1}, "num_encoder_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"min_size": ()}, "min_size"),
        ({"min_size": (32, -1)}, r"min_size\[1\]"),
        ({"min_size": "big"}, r"min_size\[0\]"),
        ({"max_size": 0}, "max_size"),
        ({"score_thresh": 1.5}, "score_thresh"),
        ({"eos_coef": 0.0}, "eos_coef"),
        ({"cost_giou": -1.0}, "cost_giou"),
        ({"bbox_weight": -1.0}, "bbox_weight"),
    ],
)
def test_bad_options(opts, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**opts)


def test_bad_inputs():
    m = tiny(num_queries=2)
    with pytest.raises(ShapeError, match=r"image 1 must be \(3, H, W\)"):
        m([torch.randn(3, 8, 8), torch.randn(1, 8, 8)])
    with pytest.raises(ShapeError, match="no images"):
        m([])
    good = {"boxes": torch.tensor([[1.0, 1.0, 4.0, 4.0]]), "labels": torch.tensor([0])}
    with pytest.raises(DataError, match=r"labels must be in 0\.\.2"):
        m([torch.randn(3, 8, 8)], [{**good, "labels": torch.tensor([3])}])
    with pytest.raises(DataError, match="3 objects, more than num_queries=2"):
        m(
            [torch.randn(3, 8, 8)],
            [{"boxes": good["boxes"].repeat(3, 1), "labels": torch.zeros(3).long()}],
        )
    with pytest.raises(ShapeError, match="target 0 needs boxes"):
        m([torch.randn(3, 8, 8)], [{"boxes": torch.zeros(1, 3), "labels": good["labels"]}])
    with pytest.raises(ShapeError, match="1 images but 2 targets"):
        m([torch.randn(3, 8, 8)], [good, good])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_and_detections_on_cuda():
    m = tiny(num_queries=6).cuda()
    images, targets = zip(*(_scene(s) for s in (0, 1)), strict=True)
    images = [im.cuda() for im in images]
    losses = m(images, list(targets))  # targets may stay on the CPU
    sum(losses.values()).backward()
    cuda_targets = [{k: v.cuda() for k, v in t.items()} for t in targets]
    assert set(m(images, cuda_targets)) == set(losses)
    out = m.eval()(images)
    assert out[0]["boxes"].device.type == "cuda" and out[0]["boxes"].shape == (6, 4)


def test_hidden_dim_must_split_into_sine_pairs():
    with pytest.raises(ConfigError, match="multiple of 4"):
        detr(3, 2, backbone=None, hidden_dim=6, num_heads=2)
