"""Interpretation: Grad-CAM parity with pytorch-grad-cam, analytic occlusion / saliency / IG on a
linear model, neighbours, PCA / t-SNE and the plot helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from visrep.analysis import interpret as I
from visrep.errors import ConfigError, ShapeError
from visrep.models import ImageClassifier, create_backbone, list_backbones


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread for torch and OpenMP: on a shared 2-core machine sklearn's t-SNE with spinning
    OpenMP threads is ~100x slower (measured 38 s vs 0.4 s for 80 points)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def _net(name: str, size: int = 16, **opts) -> ImageClassifier:
    torch.manual_seed(0)
    bb = create_backbone(name, in_chans=3, num_classes=5, img_size=(size, size), **opts)
    return ImageClassifier(bb, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]).eval()


class Linear(nn.Module):
    """``logits = W vec(x) + b``: every attribution has a closed form."""

    def __init__(self, c: int, h: int, w: int, classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(classes, c, h, w, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(classes, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.flatten(1).T + self.bias


def _images(b: int, c: int, h: int, w: int, seed: int = 1) -> Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


# -- Grad-CAM ---------------------------------------------------------------------------------------
def _reference_cam(net: nn.Module, layer: nn.Module, x: Tensor, t: Tensor, reshape=None) -> Tensor:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=net, target_layers=[layer], reshape_transform=reshape)
    out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
    cam.activations_and_grads.release()
    return torch.from_numpy(out)


def _as_reference(cam: Tensor) -> Tensor:
    """pytorch-grad-cam's normalisation: min-max (eps 1e-7) per layer, then again after averaging
    the layers; the eps makes the second pass matter for small maps."""
    return I.normalize_maps(I.normalize_maps(cam))


@pytest.mark.parametrize("layer", [None, "features.10", "backbone.features.3"])
def test_gradcam_matches_pytorch_grad_cam_on_a_cnn(layer):
    net = _net("small_cnn", channels=(8, 16))
    x = _images(4, 3, 16, 16)
    t = torch.tensor([0, 1, 2, 3])
    ours = I.gradcam(net, x, t, layer=layer)
    module = net.backbone.features if layer is None else I.resolve_layer(net, layer)
    ref = _reference_cam(net, module, x, t)
    assert ours.shape == ref.shape == (4, 16, 16)
    assert (ours.flatten(1).amax(1) > 0).all()  # non-trivial maps
    torch.testing.assert_close(_as_reference(ours), ref, atol=1e-5, rtol=1e-5)


def test_gradcam_matches_pytorch_grad_cam_on_vit_tokens():
    net = _net("vit_small", depth=2, embed_dim=32, num_heads=2, patch_size=4)
    x = _images(3, 3, 16, 16)
    t = torch.tensor([4, 0, 2])
    assert I.default_gradcam_layer(net) == "backbone.blocks.1.norm1"

    def reshape(a: Tensor) -> Tensor:  # class token off, 4x4 patch grid, channels first
        return a[:, 1:].reshape(a.shape[0], 4, 4, a.shape[2]).permute(0, 3, 1, 2)

    ours = I.gradcam(net, x, t)
    ref = _reference_cam(net, net.backbone.blocks[1].norm1, x, t, reshape)
    assert (ours.flatten(1).amax(1) > 0).all()
    torch.testing.assert_close(_as_reference(ours), ref, atol=1e-5, rtol=1e-5)
    assert I.gradcam(net, x, t, upsample=False).shape == (3, 4, 4)


def test_gradcam_defaults_to_the_predicted_class_and_checks_its_inputs():
    net = _net("small_cnn", channels=(8, 16))
    x = _images(3, 3, 16, 16)
    pred = net(x).argmax(-1)
    torch.testing.assert_close(I.gradcam(net, x), I.gradcam(net, x, pred))
    torch.testing.assert_close(I.gradcam(net, x)[1:2], I.gradcam(net, x[1:2]))  # batch = per image
    with pytest.raises(ShapeError, match=r"\(3, 256\)"):
        I.gradcam(_net("mlp"), x)
    with pytest.raises(ConfigError, match="did you mean"):
        I.gradcam(net, x, layer="features.100")
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        I.gradcam(net, x[0])


@pytest.mark.parametrize("name", list_backbones())
def test_gradcam_on_every_backbone_or_a_clear_refusal(name):
    net = _net(name, size=8)
    x = _images(2, 3, 8, 8)
    if net.forward_features(x).dim() == 2:  # MLPs: no spatial layout
        with pytest.raises(ShapeError, match="Grad-CAM needs a spatial feature map"):
            I.gradcam(net, x)
        return
    cam = I.gradcam(net, x)
    assert cam.shape == (2, 8, 8) and torch.isfinite(cam).all() and (cam >= 0).all()


def test_default_layer_moves_up_when_the_last_map_is_1x1():
    net = _net("small_cnn", channels=(8, 16, 32))  # three 2x2 poolings
    assert I.default_gradcam_layer(net, _images(1, 3, 16, 16)) is None  # last map 2x2
    assert I.default_gradcam_layer(net, _images(1, 3, 8, 8)) == "backbone.features.19"  # 1x1
    assert I.default_gradcam_layer(_net("resnet18", size=8), _images(1, 3, 8, 8)).count(".") == 1


# -- occlusion, saliency, integrated gradients on a linear model ------------------------------------
def _occlusion_by_loops(model: Linear, x: Tensor, c: int, k: int, s: int, base: float) -> Tensor:
    """Independent reference: windows at 0, s, 2s, ... (the last one cut by the border)."""
    contrib = model.weight[c] * (x - base)  # (B, C, H, W): the drop is linear in the pixels
    b, _, h, w = x.shape
    total, count = torch.zeros(b, h, w, dtype=x.dtype), torch.zeros(h, w, dtype=x.dtype)
    for i in range(math.ceil((h - k) / s) + 1):
        for j in range(math.ceil((w - k) / s) + 1):
            r, q = slice(i * s, i * s + k), slice(j * s, j * s + k)
            total[:, r, q] += contrib[:, :, r, q].sum((1, 2, 3))[:, None, None]
            count[r, q] += 1
    return total / count


@pytest.mark.parametrize(("size", "k", "s"), [(8, 2, 2), (8, 3, 2), (7, 4, 1)])
def test_occlusion_is_exact_on_a_linear_model(size, k, s):
    model = Linear(2, size, size)
    x = _images(3, 2, size, size).double()
    got = I.occlusion(model, x, target=1, window=k, stride=s, baseline=0.3, output="logit")
    torch.testing.assert_close(got.double(), _occlusion_by_loops(model, x, 1, k, s, 0.3))
    if k == s:  # tiles: each pixel holds the sum of w * (x - baseline) over its tile
        tile = (model.weight[1] * (x - 0.3)).sum(1)
        tile = nn.functional.avg_pool2d(tile[:, None], k)[:, 0] * k * k
        expected = tile.repeat_interleave(k, 1).repeat_interleave(k, 2)
        torch.testing.assert_close(got.double(), expected)


def test_occlusion_probability_drop_of_the_whole_image():
    model = Linear(1, 6, 6)
    x = _images(2, 1, 6, 6).double()
    t = torch.tensor([0, 2])
    got = I.occlusion(model, x, t, window=6, stride=6, baseline=0.5)
    p = model(x).softmax(-1).gather(1, t[:, None])
    p0 = model(torch.full_like(x, 0.5)).softmax(-1).gather(1, t[:, None])
    torch.testing.assert_close(got.double(), (p - p0)[:, :, None].expand(2, 6, 6))
    with pytest.raises(ConfigError, match="window 7x7"):
        I.occlusion(model, x, window=7)
    with pytest.raises(ConfigError, match="output"):
        I.occlusion(model, x, output="loss")


def test_saliency_and_integrated_gradients_are_exact_on_a_linear_model():
    model = Linear(3, 5, 5)
    x = _images(2, 3, 5, 5).double()
    t = torch.tensor([2, 0])
    w = model.weight[t]  # (B, C, H, W)
    torch.testing.assert_close(I.saliency(model, x, t).double(), w.abs().amax(1))
    ig = I.integrated_gradients(model, x, t, baseline=0.2, steps=4)
    torch.testing.assert_close(ig.double(), w * (x - 0.2), rtol=1e-5, atol=1e-6)


def test_integrated_gradients_completeness_on_a_cnn():
    net = _net("small_cnn", channels=(8, 16)).double()
    x = _images(2, 3, 16, 16).double()
    t = torch.tensor([1, 3])
    ig = I.integrated_gradients(net, x, t, steps=64)
    gap = (net(x) - net(torch.zeros_like(x))).gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(ig.double().sum((1, 2, 3)), gap, rtol=2e-2, atol=2e-3)


# -- feature space ----------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_neighbours_find_the_query_itself_first_and_match_brute_force(metric):
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(50, 16, generator=g)
    q = torch.cat([bank[[3, 17, 42]], torch.randn(4, 16, generator=g)])
    d, i = I.nearest_neighbours(q, bank, k=5, metric=metric, chunk=2)
    assert i[:3, 0].tolist() == [3, 17, 42]
    torch.testing.assert_close(d[:3, 0], torch.zeros(3), atol=1e-6, rtol=0)
    if metric == "l2":
        ref = (q[:, None] - bank[None]).norm(dim=-1)
    else:
        ref = 1 - nn.functional.cosine_similarity(q[:, None], bank[None], dim=-1)
    rd, ri = ref.topk(5, dim=1, largest=False)
    assert torch.equal(i, ri)
    torch.testing.assert_close(d, rd, atol=1e-4, rtol=1e-4)
    assert (d[:, 1:] >= d[:, :-1]).all()


def test_neighbours_reject_bad_inputs():
    bank = torch.zeros(5, 4)
    with pytest.raises(ShapeError, match="share D"):
        I.nearest_neighbours(torch.zeros(2, 3), bank)
    with pytest.raises(ConfigError, match="between 1 and the bank size 5"):
        I.nearest_neighbours(torch.zeros(2, 4), bank, k=6)
    with pytest.raises(ConfigError, match="metric"):
        I.nearest_neighbours(torch.zeros(2, 4), bank, metric="dot")


def test_embed_a_dataset_and_a_tensor_alike():
    net = _net("small_cnn", channels=(8, 16))
    x = _images(10, 3, 16, 16)
    data = [{"image": x[i], "label": i} for i in range(10)]
    z, y = I.embed(net, data, batch_size=3)
    z2, none = I.embed(net, x, batch_size=4)
    assert z.shape == (10, 16) and y.tolist() == list(range(10)) and none is None
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(z, net.embed(x).detach())


def test_pca_matches_svd_and_finds_a_plane():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 2)) @ rng.normal(size=(2, 6)) + 3.0  # a 2-D plane in 6-D
    pts, ratio = I.pca(torch.from_numpy(z), 2)
    assert pts.shape == (40, 2) and ratio.sum() == pytest.approx(1.0)
    u, s, _ = np.linalg.svd(z - z.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(pts), np.abs(u[:, :2] * s[:2]), atol=1e-8)
    with pytest.raises(ShapeError):
        I.pca(z[:1], 2)


def test_tsne_shapes_determinism_and_clusters():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 15)
    z = rng.normal(size=(45, 10)) + 12.0 * np.eye(10)[y]
    p = I.tsne(z, seed=0)
    assert p.shape == (45, 2)
    np.testing.assert_array_equal(p, I.tsne(z, seed=0))
    d = np.linalg.norm(p[:, None] - p[None], axis=-1) + np.eye(45) * 1e9
    assert (y[d.argmin(1)] == y).all()  # well-separated clusters stay apart in 2-D
    with pytest.raises(ShapeError):
        I.tsne(z[:3])
