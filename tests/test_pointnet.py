"""PointNet: symmetric-function invariances, T-Nets, the regulariser, critical points, packing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visrep.errors import ConfigError, ShapeError
from visrep.models.pointcloud import (
    POINT_NETS,
    PointNet,
    TNet,
    as_point_batch,
    critical_point_indices,
    lexsort_points,
    orthogonality_loss,
)


def _net(name: str = "pointnet", k: int = 4, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    net = POINT_NETS.build({"class_path": name, "init_args": options}, 3, k)
    # train a few BN statistics so eval mode is not the identity-like fresh state
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(4, options.get("num_points", 32), 3))
    return net.eval()


@pytest.mark.parametrize("name", ["pointnet", "pointnet_seg"])
def test_permutation_invariance_is_exact(name: str) -> None:
    net = _net(name)
    x = torch.randn(3, 50, 3)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, out_p = net(x), net(x[:, perm])
        g, g_p = net.embed(x), net.embed(x[:, perm])
    assert torch.equal(g, g_p)  # the max pool is order-free: bitwise equal
    if name == "pointnet":
        assert torch.equal(out, out_p)
    else:  # per-point outputs permute with the points
        torch.testing.assert_close(out[:, perm], out_p, rtol=0, atol=1e-6)


def test_permutation_invariance_in_training_mode() -> None:
    # batch-norm statistics over all points do not depend on their order either
    net = _net("pointnet", dropout=0.0).train()
    x = torch.randn(2, 40, 3)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(2))
    # equal up to the rounding of the statistics' sums in another order
    torch.testing.assert_close(net(x), net(x[:, perm]), rtol=1e-3, atol=1e-4)


def test_packed_clouds_equal_separate_clouds() -> None:
    net = _net("pointnet")
    a, b = torch.randn(17, 3), torch.randn(30, 3)
    with torch.no_grad():
        packed = net([a, b])
        alone = torch.cat([net(a[None]), net(b[None])])
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    seg = _net("pointnet_seg")
    with torch.no_grad():
        out = seg([a, b])
        ref = torch.cat([seg(a[None])[0], seg(b[None])[0]])
    assert out.shape == (47, 4)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_max_pool_matches_brute_force_on_packed_and_stacked() -> None:
    g = torch.Generator().manual_seed(3)
    clouds = [torch.randint(0, 4, (n, 5), generator=g).float() for n in (6, 3, 9)]  # many ties
    pb = as_point_batch(clouds)
    values, arg = pb.max_pool()
    for i, c in enumerate(clouds):
        v = c.max(0).values
        assert torch.equal(values[i], v)
        # the first point attaining the maximum, as torch.max picks it
        first = torch.stack([torch.nonzero(c[:, j] == v[j])[0, 0] for j in range(5)])
        assert torch.equal(arg[i], first)
    same = as_point_batch([clouds[0], clouds[0]])
    assert same.counts is None and torch.equal(same.max_pool()[0][0], values[0])


def test_critical_points_determine_the_global_feature() -> None:
    # Sec. 4.3 of the paper: the critical point set alone gives the same global feature
    # (exact for the encoder without T-Nets, whose input is then the points themselves).
    torch.manual_seed(0)
    enc = PointNet(3, input_transform=False, feature_transform=False, width=64).eval()
    x = torch.randn(1, 200, 3)
    with torch.no_grad():
        f = enc(as_point_batch(x))
        crit = critical_point_indices(f.critical)[0]
        f_crit = enc(as_point_batch(x[:, crit]))
    assert 0 < len(crit) <= 64
    assert torch.equal(f.global_feature, f_crit.global_feature)
    # dropping the point that wins the largest channel changes the feature
    winner = int(f.critical[0, f.global_feature[0].argmax()])
    rest = torch.tensor([i for i in range(200) if i != winner])
    with torch.no_grad():
        assert not torch.equal(enc(as_point_batch(x[:, rest])).global_feature, f.global_feature)


def test_orthogonality_loss_analytic() -> None:
    q, _ = torch.linalg.qr(torch.randn(5, 64, 64, dtype=torch.float64))
    assert orthogonality_loss(q) < 1e-20
    a = torch.diag(torch.tensor([1.0, 2.0, 0.0]))[None]
    # I - A A^T = diag(0, -3, 1): squared Frobenius norm 10
    assert float(orthogonality_loss(a)) == 10.0
    torch.autograd.gradcheck(
        orthogonality_loss, (torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True),)
    )


def test_tnet_starts_as_the_identity() -> None:
    t = TNet(64).eval()
    out = t(as_point_batch(torch.randn(2, 10, 64)))
    assert torch.equal(out, torch.eye(64).expand(2, -1, -1))


def test_regulariser_only_with_a_feature_transform() -> None:
    x = torch.randn(2, 20, 3)
    net = _net("pointnet").train()
    torch.manual_seed(1)
    _, reg = net.forward_with_aux(x)
    torch.manual_seed(1)  # the same batch statistics: BN in train mode, dropout irrelevant
    a = net.encoder(as_point_batch(x)).feature_transform
    assert reg is not None and torch.allclose(reg, 0.001 * orthogonality_loss(a))
    _, none = _net("pointnet", feature_transform=False).forward_with_aux(x)
    assert none is None


def test_extra_point_features_pass_through_the_input_transform() -> None:
    torch.manual_seed(0)
    net = POINT_NETS.build({"class_path": "pointnet"}, 6, 3).eval()  # x, y, z + normals
    assert net(torch.randn(2, 16, 6)).shape == (2, 3)
    with pytest.raises(ShapeError, match="dimension 6"):
        net(torch.randn(2, 16, 3))


def test_lexsort_matches_numpy() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 3, (2, 30, 3), generator=g).float()
    out = lexsort_points(x)
    for i in range(2):
        order = np.lexsort(x[i].numpy()[:, ::-1].T)  # numpy: last key is primary
        assert torch.equal(out[i], x[i][torch.from_numpy(order)])


def test_sorted_mlp_is_invariant_only_when_sorting() -> None:
    x = torch.randn(2, 16, 3)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(5))
    net = _net("sorted_mlp", num_points=16)
    with torch.no_grad():
        assert torch.equal(net(x), net(x[:, perm]))
    raw = _net("sorted_mlp", num_points=16, sort=False)
    with torch.no_grad():
        assert not torch.allclose(raw(x), raw(x[:, perm]))
    with pytest.raises(ShapeError, match="num_points=16"):
        net(torch.randn(2, 10, 3))


def test_bad_options_and_inputs() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        POINT_NETS.build({"class_path": "pointnet", "init_args": {"dropout": 1.5}}, 3, 2)
    with pytest.raises(ConfigError, match="point_dim >= 3"):
        PointNet(2)
    with pytest.raises(ShapeError, match="one dimension D"):
        as_point_batch([torch.zeros(4, 3), torch.zeros(4, 4)])
    with pytest.raises(ShapeError, match=r"\(B, N, D\)"):
        as_point_batch(torch.zeros(4, 3))


def _linear_widths(module: torch.nn.Module) -> list[tuple[int, int]]:
    return [
        (m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)
    ]


def test_layer_widths_are_the_papers() -> None:
    """Fig. 2 of Qi et al. 2017: mlp (64, 64), feature T-Net, mlp (64, 128, 1024), max pool,
    fc (512, 256, k); T-Nets: mlp (64, 128, 1024), fc (512, 256), k x k; segmentation:
    concat 64 + 1024, mlp (512, 256, 128), mlp (128, m)."""
    net = POINT_NETS.build({"class_path": "pointnet"}, 3, 10)
    enc = net.encoder
    tnet = [(3, 64), (64, 128), (128, 1024), (1024, 512), (512, 256)]
    assert _linear_widths(enc.input_tnet) == [*tnet, (256, 9)]
    assert _linear_widths(enc.mlp1) == [(3, 64), (64, 64)]
    assert _linear_widths(enc.feature_tnet) == [(64, 64), *tnet[1:], (256, 64 * 64)]
    assert _linear_widths(enc.mlp2) == [(64, 128), (128, 1024)]
    assert _linear_widths(net.head) == [(1024, 512), (512, 256), (256, 10)]
    seg = POINT_NETS.build({"class_path": "pointnet_seg"}, 3, 4)
    assert _linear_widths(seg.mlp) == [(1088, 512), (512, 256), (256, 128), (128, 128)]
    assert _linear_widths(seg.out) == [(128, 4)]
    # the paper's Table 6: 3.5M parameters for the ModelNet40 classifier
    n40 = sum(p.numel() for p in POINT_NETS.build({"class_path": "pointnet"}, 3, 40).parameters())
    assert round(n40 / 1e5) == 35
