"""Model interpretation (seed 004): where a classifier looks, and what its feature space holds.

Attribution maps for a batch of images and target classes:
    * :func:`gradcam`: Grad-CAM (Selvaraju et al., ICCV 2017, Eq. 1-2) on a CNN feature map or
      on ViT patch tokens reshaped to their grid.
    * :func:`occlusion`: occlusion sensitivity (Zeiler & Fergus, ECCV 2014, Sec. 4.2), the drop
      of the class probability when a sliding window is replaced by a baseline (captum).
    * :func:`saliency`, :func:`integrated_gradients`: gradient saliency (Simonyan et al. 2014)
      and integrated gradients (Sundararajan et al. 2017) through captum.

Feature space (the ``net.embed`` representation): :func:`embed` a data set in batches,
:func:`nearest_neighbours` by cosine or L2 distance with matrix products, :func:`pca` and
:func:`tsne` (van der Maaten & Hinton 2008; :func:`visrep.utils.embedding.tsne`, which the
embedding task's test plot shares) projections to 2-D. Their figures are
:mod:`visrep.plots.attribution` and :mod:`visrep.plots.embedding`.

``net`` is a :class:`~visrep.models.ImageClassifier` (pixels in [0, 1] in, logits out) or any
model with timm's ``forward_features`` / ``forward_head``; put it in eval mode first.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from visrep.data.samples import IMAGE, LABEL, collate
from visrep.errors import ConfigError, DataError, ShapeError
from visrep.utils.checks import check_images
from visrep.utils.embedding import nearest_indices, neighbour_distances
from visrep.utils.embedding import tsne as tsne  # this module's t-SNE, shared with the tasks


# -- helpers ----------------------------------------------------------------------------------------
def _head(net: nn.Module) -> Callable[[Tensor], Tensor]:
    """``forward_head`` of ``net`` (an ImageClassifier keeps it on its backbone)."""
    inner = getattr(net, "backbone", net)
    return inner.forward_head if hasattr(inner, "forward_head") else net.forward_head


def _targets(net: nn.Module, x: Tensor, target: Tensor | int | None) -> Tensor:
    """``(B,)`` class indices: ``target`` broadcast, or the predicted classes when None."""
    if target is None:
        with torch.no_grad():
            return net(x).argmax(-1)
    t = torch.as_tensor(target, device=x.device).long().reshape(-1)
    return t.expand(x.shape[0]) if t.numel() == 1 else t


def resolve_layer(net: nn.Module, name: str) -> nn.Module:
    """The submodule ``name`` of ``net``, or of ``net.backbone`` (``layer4`` = ``backbone.layer4``)."""
    for root in (net, getattr(net, "backbone", None)):
        if root is None:
            continue
        try:
            return root.get_submodule(name)
        except AttributeError:
            continue
    names = [n for n, _ in net.named_modules() if n]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"e.g. {', '.join(names[-3:])}"
    raise ConfigError(f"layer {name!r} is not a module of the model; {hint}")


def default_gradcam_layer(net: nn.Module, x: Tensor | None = None) -> str | None:
    """Grad-CAM's default layer (None means the ``forward_features`` output, the last feature map).

    Two exceptions: a ViT whose head reads only the class token uses the patch tokens entering
    the last block (its ``norm1``), since the final patch tokens never reach the logits (the
    usual choice, as in pytorch-grad-cam); and when ``x`` is given and the last feature map is
    1x1 (small inputs such as 8x8 digits), where Grad-CAM would be constant, the last backbone
    module with a map larger than 1x1, preferring the shallowest such modules (whole stages).
    """
    bb = getattr(net, "backbone", net)
    prefix = "backbone." if bb is not net else ""
    blocks = getattr(bb, "blocks", None)
    if getattr(bb, "global_pool", None) == "token" and isinstance(blocks, nn.Sequential):
        return f"{prefix}blocks.{len(blocks) - 1}.norm1"
    if x is None:
        return None
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str, out: object) -> None:
        shapes.pop(name, None)  # keep the order of the last call
        shapes[name] = tuple(getattr(out, "shape", ()))

    hooks = [
        m.register_forward_hook(lambda m, i, o, n=n: record(n, o))
        for n, m in bb.named_modules()
        if n
    ]
    try:
        with torch.no_grad():
            last = tuple(net.forward_features(x[:1]).shape)
    finally:
        for h in hooks:
            h.remove()
    if len(last) != 4 or last[-2:] != (1, 1):
        return None
    spatial = [n for n, s in shapes.items() if len(s) == 4 and s[-2] * s[-1] > 1]
    if not spatial:
        return None
    top = min(n.count(".") for n in spatial)  # a whole stage (layer3) rather than a layer in one
    return prefix + [n for n in spatial if n.count(".") == top][-1]


def tokens_to_grid(a: Tensor, net: nn.Module) -> Tensor:
    """ViT tokens ``(B, P + N, D)`` without the ``P`` prefix (class) tokens -> ``(B, D, h, w)``.

    The grid is ``patch_embed.grid_size`` when the model has one, else the square ``N``.
    """
    bb = getattr(net, "backbone", net)
    grid = getattr(getattr(bb, "patch_embed", None), "grid_size", None)
    prefix = getattr(bb, "num_prefix_tokens", None)
    if prefix is None:
        prefix = 0 if math.isqrt(a.shape[1]) ** 2 == a.shape[1] else 1
    n = a.shape[1] - prefix
    h, w = tuple(grid) if grid is not None else (math.isqrt(n), math.isqrt(n))
    if h * w != n:
        raise ShapeError(f"cannot lay {n} tokens of shape {tuple(a.shape)} on a {h}x{w} grid")
    return a[:, prefix:].transpose(1, 2).reshape(a.shape[0], a.shape[2], h, w)


# -- attribution maps -------------------------------------------------------------------------------
def gradcam(
    net: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    layer: str | None = None,
    upsample: bool = True,
) -> Tensor:
    """Grad-CAM class-activation maps (Selvaraju et al. 2017).

    Eq. 1: ``alpha_k^c = 1/Z sum_ij dy^c / dA^k_ij`` (spatially averaged gradients of the class
    score, the logit, w.r.t. the layer's activations ``A``); Eq. 2: ``L^c = ReLU(sum_k alpha_k^c
    A^k)``, bilinearly upsampled to the input. The samples of the batch are independent (eval
    mode), so one backward pass of the summed scores gives every sample's gradients.

    Args:
        net: classifier, eval mode.
        x: images ``(B, C, H, W)``.
        target: class per image ``(B,)`` or one int; None: the predicted classes.
        layer: a module name (of ``net`` or ``net.backbone``) whose output is a feature map
            ``(B, K, h, w)`` or ViT tokens ``(B, P + N, D)``; None: ``default_gradcam_layer(net,
            x)``.
        upsample: resize to ``(H, W)``; False returns the ``(h, w)`` map.

    Returns:
        Non-negative maps ``(B, H, W)`` (unnormalised; see :func:`normalize_maps`).

    Raises:
        ShapeError: the layer has no spatial layout (e.g. an MLP's ``(B, D)`` features).
    """
    check_images(x)
    t = _targets(net, x, target)
    layer = layer if layer is not None else default_gradcam_layer(net, x)
    x = x.detach().requires_grad_(True)  # keeps a graph even when the weights are frozen
    with torch.enable_grad():
        if layer is None:
            a = net.forward_features(x)
            logits = _head(net)(a)
        else:
            seen: list[Tensor] = []
            handle = resolve_layer(net, layer).register_forward_hook(
                lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o)
            )
            try:
                logits = net(x)
            finally:
                handle.remove()
            if not seen:
                raise ConfigError(f"layer {layer!r} is not called in the forward pass")
            a = seen[-1]
        if a.dim() not in (3, 4):
            where = f"layer {layer!r}" if layer else "forward_features"
            raise ShapeError(
                f"Grad-CAM needs a spatial feature map (B, K, h, w) or tokens (B, N, D); "
                f"{where} gives {tuple(a.shape)}"
            )
        score = logits.gather(1, t[:, None]).sum()
        (g,) = torch.autograd.grad(score, a)
    if a.dim() == 3:
        a, g = tokens_to_grid(a, net), tokens_to_grid(g, net)
    alpha = g.mean((2, 3), keepdim=True)  # Eq. 1
    cam = F.relu((alpha * a).sum(1)).detach()  # Eq. 2
    if upsample and cam.shape[-2:] != x.shape[-2:]:
        cam = F.interpolate(cam[:, None], x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam


def normalize_maps(maps: Tensor, eps: float = 1e-7) -> Tensor:
    """Min-max scale each map of ``(B, ...)`` to [0, 1]: ``(m - min) / (max - min + eps)``."""
    flat = maps.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - lo) / (hi - lo + eps)).view_as(maps)


def occlusion(
    net: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    window: int | tuple[int, int] = 4,
    stride: int | tuple[int, int] = 2,
    baseline: float = 0.0,
    output: str = "prob",
    batch_size: int = 256,
) -> Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014): the score drop when a window is occluded.

    A ``window`` square (all channels) slides with ``stride``; each position is replaced by
    ``baseline`` and the drop ``s(x) - s(x_occluded)`` of the target's score is added to every
    pixel it covers, then averaged over the windows covering that pixel (captum's
    ``Occlusion``; the last window of a row may be cut by the border).

    Args:
        net: classifier, eval mode.
        x: images ``(B, C, H, W)``.
        target: class per image or one int; None: the predicted classes.
        window, stride: window size and step in pixels (int or ``(h, w)``).
        baseline: the value occluded pixels take.
        output: ``"prob"`` (softmax probability drop) or ``"logit"``.
        batch_size: images per forward pass (occluded copies are batched).

    Returns:
        Maps ``(B, H, W)``; positive where occluding lowers the score.
    """
    from captum.attr import Occlusion

    check_images(x)
    if output not in ("prob", "logit"):
        raise ConfigError(f"occlusion output must be 'prob' or 'logit', got {output!r}")
    wh, ww = (window, window) if isinstance(window, int) else tuple(window)
    sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
    h, w = x.shape[-2:]
    if not (1 <= wh <= h and 1 <= ww <= w) or not (1 <= sh <= wh and 1 <= sw <= ww):
        raise ConfigError(
            f"occlusion window {wh}x{ww} must fit the {h}x{w} image and the stride {sh}x{sw} "
            "must be between 1 and the window"
        )
    t = _targets(net, x, target)

    def forward(z: Tensor) -> Tensor:
        out = net(z)
        return out.softmax(-1) if output == "prob" else out

    n_windows = (math.ceil((h - wh) / sh) + 1) * (math.ceil((w - ww) / sw) + 1)
    per_eval = max(1, min(n_windows, batch_size // x.shape[0]))
    with torch.no_grad():
        attr = Occlusion(forward).attribute(
            x,
            sliding_window_shapes=(x.shape[1], wh, ww),
            strides=(1, sh, sw),
            baselines=baseline,
            target=t,
            perturbations_per_eval=per_eval,
        )
    return attr[:, 0].float()  # the window spans every channel: the channels are equal


def saliency(net: nn.Module, x: Tensor, target: Tensor | int | None = None) -> Tensor:
    """Gradient saliency (Simonyan et al. 2014, Sec. 3.1): ``M_ij = max_c |d S_c / d x_cij|``.

    Returns:
        Non-negative maps ``(B, H, W)``.
    """
    from captum.attr import Saliency

    check_images(x)
    t = _targets(net, x, target)
    with torch.enable_grad():
        g = Saliency(net).attribute(x.detach().requires_grad_(True), target=t, abs=True)
    return g.amax(1).detach()


def integrated_gradients(
    net: nn.Module,
    x: Tensor,
    target: Tensor | int | None = None,
    baseline: float = 0.0,
    steps: int = 32,
    batch_size: int = 256,
) -> Tensor:
    """Integrated gradients (Sundararajan et al. 2017, Eq. 1): ``(x - x') * int_0^1 dF/dx dalpha``
    along the straight path from the baseline ``x'`` (a constant image), via captum.

    By completeness the attributions of an image sum to ``F(x) - F(x')`` of the target logit
    (up to the ``steps``-point quadrature).

    Returns:
        Attributions ``(B, C, H, W)`` (sum over ``C`` for a map).
    """
    from captum.attr import IntegratedGradients

    check_images(x)
    t = _targets(net, x, target)
    with torch.enable_grad():
        attr = IntegratedGradients(net).attribute(
            x.detach(),
            baselines=baseline,
            target=t,
            n_steps=steps,
            internal_batch_size=max(batch_size, x.shape[0]),
        )
    return attr.detach().float()


# -- feature space ----------------------------------------------------------------------------------
@torch.no_grad()
def embed(
    net: nn.Module,
    data: Dataset | Tensor,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    key: str = IMAGE,
) -> tuple[Tensor, Tensor | None]:
    """The representations ``net.embed(x)`` of a data set of ``{key, "label"}`` samples (in
    order; ``key`` the input the net reads: ``image``, or ``points`` for point-cloud networks)
    or of an image tensor.

    Returns:
        ``(Z, y)``: float32 embeddings ``(N, D)`` on the CPU and int64 targets ``(N,)``, -1
        where a sample has no label (None for a tensor).

    Raises:
        DataError: the samples hold no images.
        ShapeError: the data set is empty.
    """
    dev = device or next(net.parameters()).device
    if isinstance(data, Tensor):
        check_images(data, "data")
        return torch.cat(
            [net.embed(b.to(dev)).flatten(1).float().cpu() for b in data.split(batch_size)]
        ), None
    zs, ys = [], []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate):
        if key not in batch:
            raise DataError(f"embed needs {key!r} samples, got keys {', '.join(batch)}")
        x = batch[key]
        x = [t.to(dev) for t in x] if isinstance(x, list) else x.to(dev)  # point clouds: lists
        zs.append(net.embed(x).flatten(1).float().cpu())
        y = batch.get(LABEL)
        ys.append(torch.as_tensor(y).long() if y is not None else torch.full((len(x),), -1))
    if not zs:
        raise ShapeError("cannot embed an empty data set")
    return torch.cat(zs), torch.cat(ys)


def nearest_neighbours(
    queries: Tensor, bank: Tensor, k: int = 5, metric: str = "cosine", chunk: int = 1024
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest rows of ``bank`` for each query, by matrix products (AlexNet's feature-
    space neighbours, Krizhevsky et al. 2012, Fig. 4): :func:`visrep.utils.embedding.
    nearest_indices` and their :func:`~visrep.utils.embedding.neighbour_distances`.

    ``cosine``: distance ``1 - <q, b> / (|q| |b|)``; ``l2``: ``|q - b|``. Queries are processed
    ``chunk`` at a time, so memory is ``chunk x N``.

    Args:
        queries: ``(Q, D)``.
        bank: ``(N, D)``.
        k: neighbours per query (at most ``N``).
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        ``(distances, indices)``, both ``(Q, k)``, nearest first.

    >>> nearest_neighbours(torch.tensor([[0.9, 0.2, 0.0]]), torch.eye(3), k=2)[1]
    tensor([[0, 1]])
    """
    idx = nearest_indices(queries, bank, k, metric, chunk)
    return neighbour_distances(queries, bank, idx, metric), idx


def pca(z: Tensor | np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Principal component projection (full SVD, scikit-learn).

    Returns:
        ``(points (N, n_components), explained_variance_ratio (n_components,))``.
    """
    from sklearn.decomposition import PCA

    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < n_components:
        raise ShapeError(
            f"PCA to {n_components} components needs (N, D) with N, D >= it, got {z.shape}"
        )
    model = PCA(n_components, svd_solver="full")
    return model.fit_transform(z), model.explained_variance_ratio_
