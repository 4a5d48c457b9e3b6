import torch
import torch.nn.functional as F

from visrep.data import AugmentConfig, augment_batch, color_jitter, random_crop, random_hflip


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.rand(16, 3, 7, 9)
    out = random_crop(x, 2, _gen())
    xp = F.pad(x, (2, 2, 2, 2))
    for b in range(16):  # every output is exactly one window of the padded input
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[b], xp[b, :, dy : dy + 7, dx : dx + 9])
        ]
        assert hits
    assert not torch.equal(out, x)  # some image moved


def test_flip_and_determinism():
    x = torch.rand(64, 1, 4, 4)
    a = random_hflip(x, 0.5, _gen(1))
    b = random_hflip(x, 0.5, _gen(1))
    assert torch.equal(a, b)
    flipped = (a != x).flatten(1).any(1)
    assert 10 < flipped.sum() < 54
    assert torch.equal(a[flipped], x[flipped].flip(-1))


def test_color_jitter_brightness_is_a_scale():
    x = torch.full((4, 3, 2, 2), 0.25)
    out = color_jitter(x, brightness=0.5, generator=_gen())
    f = out[:, 0, 0, 0] / 0.25
    assert ((f >= 0.5) & (f <= 1.5)).all()
    assert torch.allclose(out, x * f.view(4, 1, 1, 1))


def test_color_jitter_keeps_range_and_grey_for_grey_images():
    x = torch.rand(8, 3, 5, 5)
    out = color_jitter(x, 0.8, 0.8, 0.8, _gen())
    assert out.min() >= 0 and out.max() <= 1
    g = torch.rand(8, 1, 5, 5)
    assert color_jitter(g, saturation=0.9, generator=_gen()).equal(g)


def test_augment_batch_off_is_identity():
    x = torch.rand(2, 1, 3, 3)
    assert not AugmentConfig().enabled
    assert augment_batch(x, AugmentConfig()).equal(x)
