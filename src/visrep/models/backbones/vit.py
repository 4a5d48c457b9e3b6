"""A small Vision Transformer (Dosovitskiy et al. 2021; seed 004): timm's implementation.

Sized for 8x8 to 64x64 inputs: the patch size defaults to the largest divisor of the image size
that is at most ``size // 8`` (at least 1; see :func:`default_patch_size`), so a
32x32 image becomes an 8x8 grid of 4x4 patches and a digits image a grid of single pixels.
"""

from __future__ import annotations

from typing import Literal

from timm.models.vision_transformer import VisionTransformer

from visrep.errors import ConfigError
from visrep.models.backbones._size import to_hw
from visrep.models.backbones.timm_model import TimmIntermediates
from visrep.models.interface import Backbone
from visrep.models.pretrained import load_pretrained
from visrep.models.registry import BACKBONES

__all__ = ["vit_small"]


def default_patch_size(h: int, w: int) -> int:
    """The largest patch size that divides ``h`` and ``w`` and is at most ``min(h, w) // 8``.

    >>> default_patch_size(32, 32), default_patch_size(28, 28), default_patch_size(8, 8)
    (4, 2, 1)
    """
    cap = max(1, min(h, w) // 8)
    return max(d for d in range(1, cap + 1) if h % d == 0 and w % d == 0)


@BACKBONES.register
class vit_small(TimmIntermediates, VisionTransformer, Backbone):
    """ViT: patch embedding, class token, learned position embeddings, ``depth`` pre-norm blocks.

    timm's ``VisionTransformer`` itself. ``forward_features`` returns the token sequence
    ``(B, 1 + N, embed_dim)``; ``forward_head`` pools (class token or mean) and classifies;
    ``forward_intermediates`` returns the patch tokens after each block as
    ``(B, embed_dim, H / patch, W / patch)`` maps (one level per block).
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        patch_size: int | None = None,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 2.0,
        global_pool: Literal["token", "avg"] = "token",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        pretrained_path: str | None = None,
    ) -> None:
        h, w = to_hw(img_size, "vit_small")
        p = patch_size or default_patch_size(h, w)
        if h % p or w % p:
            raise ConfigError(f"vit_small: patch_size {p} must divide the image size {h}x{w}")
        super().__init__(
            img_size=(h, w),
            patch_size=p,
            in_chans=in_chans,
            num_classes=num_classes,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            global_pool=global_pool,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
        )
        if pretrained_path:
            load_pretrained(self, pretrained_path)
