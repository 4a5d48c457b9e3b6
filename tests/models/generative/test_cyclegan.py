"""CycleGAN's networks (Zhu et al. 2017, appendix 7.2): the ResNet generator keeps the image
size, the PatchGAN discriminator sees 70x70 patches (Isola et al. 2017), both match the
authors' parameter counts, and the image pool follows its sequential rule exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visrep.errors import CheckpointError, ConfigError, ShapeError
from visrep.models.generative import ImagePool, PatchDiscriminator, ResnetBlock, ResnetGenerator


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_the_authors_networks():
    """pytorch-CycleGAN-and-pix2pix prints 11.378 M (resnet_9blocks), 7.837 M (resnet_6blocks)
    and 2.765 M (basic 70x70 PatchGAN) parameters for RGB at widths 64."""
    with torch.device("meta"):
        assert _count(ResnetGenerator(3, 3, n_blocks=9)) == 11_378_179
        assert _count(ResnetGenerator(3, 3, n_blocks=6)) == 7_837_699
        assert _count(PatchDiscriminator(3)) == 2_764_737


@pytest.mark.parametrize(("size", "n_down"), [((16, 16), 2), ((12, 20), 2), ((6, 10), 1)])
def test_resnet_generator_keeps_the_spatial_size(size, n_down):
    torch.manual_seed(0)
    g = ResnetGenerator(3, 1, width=4, n_blocks=2, n_down=n_down)
    x = torch.randn(2, 3, *size)
    y = g(x)
    assert y.shape == (2, 1, *size) and y.abs().max() <= 1
    y.sum().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_resnet_generator_layout_of_appendix_7_2():
    """c7s1-w, d2w, d4w, R4w x n, u2w, uw, c7s1-out with reflection padding."""
    g = ResnetGenerator(3, 2, width=8, n_blocks=3)
    convs = [m for m in g.net if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert [(type(c).__name__, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        ("Conv2d", 8, 7, 1),
        ("Conv2d", 16, 3, 2),
        ("Conv2d", 32, 3, 2),
        ("ConvTranspose2d", 16, 3, 2),
        ("ConvTranspose2d", 8, 3, 2),
        ("Conv2d", 2, 7, 1),
    ]
    assert sum(isinstance(m, ResnetBlock) for m in g.net) == 3
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in g.modules()) == 5 + 3 * 2
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in g.modules()) == 2 + 3 * 2
    assert isinstance(g.net[-1], nn.Tanh)


def test_a_residual_block_adds_its_input():
    block = ResnetBlock(4)
    for conv in (block.block[1], block.block[5]):
        nn.init.zeros_(conv.weight), nn.init.zeros_(conv.bias)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(block(x), x)


def test_resnet_generator_bad_inputs():
    g = ResnetGenerator(3, 3, width=2, n_blocks=1)
    with pytest.raises(ShapeError, match=r"multiples of 4 \(2\*\*n_down\) and >= 8"):
        g(torch.randn(1, 3, 18, 16))
    with pytest.raises(ShapeError, match=r"\(B, 3, H, W\)"):
        g(torch.randn(1, 1, 16, 16))
    with pytest.raises(ConfigError, match=r"^n_blocks must be an integer >= 0"):
        ResnetGenerator(3, 3, n_blocks=-1)
    with pytest.raises(ConfigError, match=r"^norm must be one of instance, batch"):
        ResnetGenerator(3, 3, norm="layer")


@pytest.mark.parametrize(("n_layers", "rf"), [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field_by_the_gradient_support_of_one_output(n_layers, rf):
    """The gradient of one output unit with respect to the input is non-zero exactly on a
    rf x rf square (no normalisation: instance norm would couple every pixel)."""
    assert PatchDiscriminator(1, width=2, n_layers=n_layers).receptive_field == rf
    torch.manual_seed(0)
    d = PatchDiscriminator(1, width=2, n_layers=n_layers, norm="none").double()
    x = torch.randn(1, 1, 160, 160, dtype=torch.float64, requires_grad=True)
    out = d(x)
    h, w = out.shape[2:]
    assert (h, w) == d.output_size(160, 160)
    out[0, 0, h // 2, w // 2].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
    cols = x.grad[0, 0].abs().sum(0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == rf and cols.max() - cols.min() + 1 == rf
    assert len(rows) == rf and len(cols) == rf  # a contiguous square
    assert rows.min() > 0 and rows.max() < 159  # inside the image, not cut by the border


def test_patchgan_output_map_and_norms():
    d = PatchDiscriminator(3, width=4)  # instance norm, as CycleGAN
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d.modules()) == 3
    assert [m.out_channels for m in d.net if isinstance(m, nn.Conv2d)] == [4, 8, 16, 32, 1]
    x = torch.randn(2, 3, 64, 48)
    assert d(x).shape == (2, 1, *d.output_size(64, 48)) == (2, 1, 6, 4)  # H / 8 - 2
    assert PatchDiscriminator(3, width=64, n_layers=5).net[-1].in_channels == 512  # capped at 8w
    with pytest.raises(ShapeError, match="score map"):
        d(torch.randn(2, 3, 16, 16))
    with pytest.raises(ConfigError, match=r"^norm must be one of"):
        PatchDiscriminator(3, norm="group")


# -- the image pool -----------------------------------------------------------------------------
def _reference_pool(size, batches, seed):
    """The sequential rule of the CycleGAN code, one image at a time (test-only loop), with the
    same draws as ImagePool.query: per batch, uniforms then slots for the images past the fill."""
    g = torch.Generator().manual_seed(seed)
    pool, outs = [], []
    for batch in batches:
        n_fill = min(size - len(pool), len(batch))
        m = len(batch) - n_fill
        u = torch.rand(m, generator=g) if m else torch.empty(0)
        slots = torch.randint(size, (m,), generator=g) if m else torch.empty(0, dtype=torch.long)
        out, j = [], 0
        for image in batch:
            if len(pool) < size:
                pool.append(image.clone())
                out.append(image.clone())
            else:
                if u[j] > 0.5:
                    out.append(pool[slots[j]].clone())
                    pool[slots[j]] = image.clone()
                else:
                    out.append(image.clone())
                j += 1
        outs.append(torch.stack(out))
    return outs, torch.stack(pool)


def _batches(n, b):
    """Image i is the constant i: a returned image names where it came from."""
    ids = torch.arange(n * b, dtype=torch.float32)
    return list(ids.view(n, b, 1, 1, 1).expand(n, b, 1, 2, 2).clone())


def test_image_pool_equals_the_sequential_rule():
    batches = _batches(12, 7)  # 7 images per batch, a pool of 5: repeated slots in a batch
    ref, ref_pool = _reference_pool(5, batches, seed=3)
    pool, g = ImagePool(5), torch.Generator().manual_seed(3)
    for batch, r in zip(batches, ref, strict=True):
        assert torch.equal(pool.query(batch, g), r)
    assert torch.equal(pool.images, ref_pool)


def test_image_pool_fills_then_swaps_half_with_stored_images():
    pool, g = ImagePool(10), torch.Generator().manual_seed(0)
    batches = _batches(200, 4)
    seen: set[int] = set()
    from_pool = 0
    for i, batch in enumerate(batches):
        stored = {int(v) for v in pool.images[: len(pool), 0, 0, 0]} if len(pool) else set()
        out = pool.query(batch, g)
        ids = [int(v) for v in out[:, 0, 0, 0]]
        assert torch.equal(out, out[:, :1, :1, :1].expand_as(out))  # whole images, unmixed
        own = [int(v) for v in batch[:, 0, 0, 0]]
        new = set(own)
        for k, v in enumerate(ids):
            # its own new image, one stored before this batch, or one an earlier image of this
            # batch stored (a slot drawn twice in one batch)
            assert v == own[k] or v in stored or v in own[:k]
            from_pool += v != own[k]
        if i < 3:  # the first 10 images fill the pool and come back unchanged
            assert ids[: 10 - 4 * i] == sorted(new)[: 10 - 4 * i]
            assert len(pool) == min(10, 4 * (i + 1))
        seen |= new
    assert len(pool) == 10
    assert {int(v) for v in pool.images[:, 0, 0, 0]} <= seen
    share = from_pool / (4 * 200 - 10)
    assert 0.45 < share < 0.55  # p = 1/2


def test_image_pool_is_deterministic_given_a_generator_and_keeps_its_state():
    batches = _batches(6, 3)
    a, b = ImagePool(4), ImagePool(4)
    ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for batch in batches[:3]:
        assert torch.equal(a.query(batch, ga), b.query(batch, gb))
    c = ImagePool(4)
    c.load_state_dict(a.state_dict())
    gc = torch.Generator().manual_seed(0)
    gc.set_state(ga.get_state())
    for batch in batches[3:]:
        assert torch.equal(a.query(batch, ga), c.query(batch, gc))
    assert len(c) == 4 and torch.equal(a.images, c.images)


def test_image_pool_edges_and_errors():
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    assert ImagePool(0).query(x) is not x and torch.equal(ImagePool(0).query(x), x.detach())
    assert not ImagePool(5).query(x).requires_grad
    pool = ImagePool(5)
    pool.query(x)
    with pytest.raises(ShapeError, match="differ from the pooled"):
        pool.query(torch.randn(3, 2, 8, 8))
    with pytest.raises(ConfigError, match=r"^pool_size must be an integer >= 0"):
        ImagePool(-1)
    with pytest.raises(CheckpointError, match="size 3"):
        ImagePool(4).load_state_dict(ImagePool(3).state_dict())
    empty = ImagePool(4)
    empty.load_state_dict(ImagePool(4).state_dict())
    assert len(empty) == 0 and empty.images is None
