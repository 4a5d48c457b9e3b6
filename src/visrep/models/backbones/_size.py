"""Input-size helpers shared by size-dependent backbones."""

from __future__ import annotations

from visrep.errors import ConfigError


def to_hw(img_size: int | tuple[int, int] | list[int] | None, name: str) -> tuple[int, int]:
    """``img_size`` as ``(H, W)``; size-dependent backbones cannot be built without it."""
    if img_size is None:
        raise ConfigError(f"backbone {name!r} needs img_size (the input height and width)")
    if isinstance(img_size, int):
        return img_size, img_size
    h, w = img_size
    return int(h), int(w)
