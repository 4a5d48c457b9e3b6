"""Sliding-window inference: exact against the whole-image call where it must be, against a
tile-by-tile reference otherwise, and its weights and errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.inference import sliding_window_logits, tile_starts, tile_weights


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _reference(model, x: Tensor, window, stride, blend) -> Tensor:
    """Tile by tile with slices (independent of the indexed version): sum w * f(tile), sum w."""
    b, _, h, w = x.shape
    th, tw = min(window[0], h), min(window[1], w)
    wt = tile_weights((th, tw), blend, torch.float64)
    num = den = None
    for y in tile_starts(h, th, stride[0]).tolist():
        for x0 in tile_starts(w, tw, stride[1]).tolist():
            out = model(x[:, :, y : y + th, x0 : x0 + tw]).double()
            if num is None:
                num = torch.zeros(b, out.shape[1], h, w, dtype=torch.float64)
                den = torch.zeros(h, w, dtype=torch.float64)
            num[:, :, y : y + th, x0 : x0 + tw] += wt * out
            den[y : y + th, x0 : x0 + tw] += wt
    return num / den


@pytest.mark.parametrize(
    ("size", "window", "kw"),
    [
        ((37, 23), (8, 6), {"overlap": 0.5}),
        ((37, 23), (8, 6), {"stride": (3, 5), "blend": "gaussian"}),
        ((9, 31), (16, 7), {"overlap": 0.0}),  # window taller than the image
        ((5, 5), 2, {"stride": 1, "blend": "gaussian"}),
    ],
)
def test_pixelwise_model_gives_the_whole_image_result(size, window, kw):
    conv = nn.Conv2d(3, 4, 1).double()
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        out = sliding_window_logits(conv, x, window, **kw)
        assert out.shape == (2, 4, *size) and out.dtype == torch.float64
        torch.testing.assert_close(out, conv(x), rtol=0, atol=1e-12)


def test_window_covering_the_image_is_the_whole_image_call():
    calls = []

    def model(t: Tensor) -> Tensor:
        calls.append(tuple(t.shape))
        return t[:, :2] * 3.0

    x = torch.rand(2, 3, 11, 13)
    assert torch.equal(sliding_window_logits(model, x, (11, 13)), x[:, :2] * 3.0)
    assert torch.equal(sliding_window_logits(model, x, (64, 64), overlap=0.9), x[:, :2] * 3.0)
    assert calls == [(2, 3, 11, 13), (2, 3, 11, 13)]


@pytest.mark.parametrize("blend", ["uniform", "gaussian"])
@pytest.mark.parametrize("batch_size", [None, 1, 5])
def test_context_model_matches_the_tile_by_tile_reference(blend, batch_size):
    # a 3x3 conv with zero padding sees the tile border: tiles differ from the whole image,
    # so this checks the positions and the weights of every tile
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.rand(2, 2, 19, 14, dtype=torch.float64)
    with torch.no_grad():
        out = sliding_window_logits(conv, x, (7, 6), stride=(4, 5), blend=blend,
                                    batch_size=batch_size)  # fmt: skip
        ref = _reference(conv, x, (7, 6), (4, 5), blend)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        assert not torch.allclose(out, conv(x), atol=1e-3)


def test_tiles_are_batched_and_cover_every_pixel():
    seen = []

    def model(t: Tensor) -> Tensor:
        seen.append(t.shape[0])
        return torch.ones(t.shape[0], 1, *t.shape[2:])

    x = torch.rand(3, 1, 10, 10)
    out = sliding_window_logits(model, x, (4, 4), stride=(3, 3))  # 3 x 3 tiles per image
    assert seen == [3] * 9  # batches of len(x) tiles
    assert torch.equal(out, torch.ones(3, 1, 10, 10))


def test_tile_starts_cover_the_side_and_end_at_the_border():
    for size in range(1, 30):
        for tile in range(1, 12):
            for stride in range(1, tile + 1):
                s = tile_starts(size, tile, stride)
                t = min(tile, size)
                assert s[0] == 0 and s[-1] == size - t
                assert (s.diff() >= 1).all() and (s.diff() <= stride).all()
                covered = torch.zeros(size, dtype=torch.bool)
                for a in s.tolist():
                    covered[a : a + t] = True
                assert covered.all()


def test_uniform_blend_is_the_mean_over_covering_tiles():
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    starts = tile_starts(8, 4, 2).tolist()
    assert starts == [0, 2, 4]

    # each tile outputs its own index k = 3 i + j (tile at rows 2i.., cols 2j..)
    def ids(t: Tensor) -> Tensor:
        return torch.arange(len(t), dtype=t.dtype).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)

    out = sliding_window_logits(ids, x, 4, stride=2, batch_size=9)[0, 0]
    # pixel (0, 0) is in tile 0 only, (3, 3) in tiles 0, 1, 3, 4, (0, 3) in tiles 0, 1
    assert out[0, 0] == 0 and out[3, 3] == (0 + 1 + 3 + 4) / 4 and out[7, 7] == 8
    assert out[0, 3] == (0 + 1) / 2


def test_gaussian_weights():
    g = tile_weights((9, 6), "gaussian", torch.float64)
    assert g.shape == (9, 6) and (g > 0).all()
    assert torch.equal(g, g.flip(0)) and torch.equal(g, g.flip(1))
    assert g[4].max() == g.max() and torch.isclose(
        g[4, 2], torch.exp(torch.tensor(-0.5 * (0.5 / 0.75) ** 2, dtype=torch.float64))
    )
    assert torch.equal(tile_weights((3, 2)), torch.ones(3, 2))


def test_bad_input_raises():
    conv = nn.Conv2d(1, 1, 1)
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ConfigError, match="window"):
        sliding_window_logits(conv, x, 0)
    with pytest.raises(ConfigError, match="window"):
        sliding_window_logits(conv, x, (4, 4, 4))
    with pytest.raises(ConfigError, match="overlap"):
        sliding_window_logits(conv, x, 4, overlap=1.0)
    with pytest.raises(ConfigError, match="not both"):
        sliding_window_logits(conv, x, 4, stride=2, overlap=0.5)
    with pytest.raises(ConfigError, match="blend"):
        sliding_window_logits(conv, x, 4, blend="cosine")
    with pytest.raises(ConfigError, match="stride"):
        sliding_window_logits(conv, x, 4, stride=(2, 5))  # gaps between tiles
    with pytest.raises(ConfigError, match="batch_size"):
        sliding_window_logits(conv, x, 4, batch_size=0)
    with pytest.raises(ShapeError, match="B, C, H, W"):
        sliding_window_logits(conv, x[0], 4)
    with pytest.raises(ShapeError, match="expected"):
        sliding_window_logits(lambda t: t[:, :, :2], x, 4)
