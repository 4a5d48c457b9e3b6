"""Loading optional pretrained weights from a file the user passes (nothing is downloaded)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from visrep.errors import CheckpointError

log = logging.getLogger(__name__)


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """Copy matching tensors from a state-dict file into ``model``.

    Tensors whose shape differs (typically the classifier and a changed stem) are skipped and
    reported; the file is read with ``weights_only=True`` (no arbitrary unpickling).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"pretrained weights file {str(p)!r} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt files
        raise CheckpointError(
            f"cannot read pretrained weights {str(p)!r}: {type(e).__name__}"
        ) from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"pretrained weights {str(p)!r}: expected a state dict of tensors")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    if not usable:
        raise CheckpointError(
            f"pretrained weights {str(p)!r} share no tensor names/shapes with the model"
        )
    model.load_state_dict(usable, strict=False)
    if skipped:
        log.warning(
            "pretrained %s: skipped %d tensors (%s)", p.name, len(skipped), ", ".join(skipped[:5])
        )
    return model
