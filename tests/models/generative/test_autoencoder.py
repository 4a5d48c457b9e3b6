"""The autoencoder model (seed 001, eq. 1-2): codes, reconstructions in [0, 1], normalisation
inside, any backbone as the encoder."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import ConfigError, ShapeError
from visrep.models import Autoencoder, create_backbone


def _ae(**kw) -> Autoencoder:
    enc = create_backbone("small_cnn", in_chans=1, num_classes=0, channels=(4, 8))
    return Autoencoder(enc, [0.3], [0.2], 1, (8, 8), **kw)


def test_codes_and_reconstructions():
    torch.manual_seed(0)
    ae = _ae(code_size=5)
    x = torch.rand(3, 1, 8, 8)
    code = ae.encode(x)
    assert code.shape == (3, 5) and torch.equal(ae.embed(x), code)
    x_hat = ae(x)
    assert x_hat.shape == x.shape and bool(((x_hat > 0) & (x_hat < 1)).all())
    assert torch.equal(x_hat, ae.decode(code))
    # the code reads the flattened (C, h, w) map: 8 channels of 2x2
    assert ae.to_code.in_features == 8 * 2 * 2


def test_normalisation_is_inside_the_model():
    """Inputs are pixels: the encoder sees (x - mean) / std."""
    ae = _ae(code_size=2).eval()
    x = torch.rand(2, 1, 8, 8)
    seen = {}
    ae.encoder.features.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    ae.encode(x)
    assert torch.allclose(seen["x"], (x - 0.3) / 0.2)


def test_pooled_codes_and_mlp_encoders():
    ae = _ae(code_size=2, pool=True)
    assert ae.to_code.in_features == 8 and ae(torch.rand(2, 1, 8, 8)).shape == (2, 1, 8, 8)
    enc = create_backbone("mlp", in_chans=3, num_classes=0, img_size=(6, 5), width=12)
    for decoder in ("mlp", "transposed", "upsample"):
        ae = Autoencoder(enc, [0.5] * 3, [0.2] * 3, 3, (6, 5), code_size=4, decoder=decoder)
        assert ae(torch.rand(2, 3, 6, 5)).shape == (2, 3, 6, 5), decoder


def test_every_parameter_learns():
    ae = _ae(code_size=3)
    x = torch.rand(4, 1, 8, 8)
    (ae(x) - x).square().sum().backward()
    assert all(p.grad is not None for p in ae.parameters())


def test_bad_inputs():
    with pytest.raises(ConfigError, match="code"):
        _ae(code_size=0)
    ae = _ae(code_size=3)
    with pytest.raises(ShapeError, match=r"\(B, 1, 8, 8\)"):
        ae(torch.rand(2, 1, 9, 8))
    with pytest.raises(ShapeError, match=r"\(B, 3\)"):
        ae.decode(torch.rand(2, 4))
