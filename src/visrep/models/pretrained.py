"""Pretrained backbone weights from local files: nothing is ever downloaded.

A backbone's ``pretrained_path`` is one of

- a plain state-dict file (``torch.save(model.state_dict(), path)``, any suffix but ``.ckpt``);
- a visrep (Lightning) checkpoint ``*.ckpt``: the task's model is ``net`` and its backbone
  ``net.backbone``, so the tensors under ``net.backbone.`` are the backbone's;
- a visrep run directory: its ``checkpoints/best.ckpt``, else ``checkpoints/last.ckpt``.

Transfer from a visrep run is the standard way to start a detector or a segmenter from a trained
backbone. Files are read only with ``weights_only=True`` (through :func:`visrep.runs.load_checkpoint`
for checkpoints), so a weights file cannot run code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from visrep.errors import CheckpointError

__all__ = ["BACKBONE_PREFIX", "load_matching", "load_pretrained", "read_backbone_state"]

log = logging.getLogger(__name__)

BACKBONE_PREFIX = "net.backbone."  # where a visrep task keeps its backbone


def _checkpoint_of_run(folder: Path) -> Path:
    # Imported here: visrep.runs brings Lightning, and models stay usable without it.
    from visrep.runs import RunDir

    ckpt = RunDir(folder).trained_ckpt()
    if ckpt is not None:
        return ckpt
    raise CheckpointError(
        f"pretrained_path {str(folder)!r} is a directory without checkpoints/best.ckpt or "
        "checkpoints/last.ckpt (not a visrep run directory?)"
    )


def read_backbone_state(path: str | Path, prefix: str = BACKBONE_PREFIX) -> dict[str, Tensor]:
    """The backbone tensors stored at ``path`` (a state dict, a ``.ckpt`` or a run directory).

    Tensors under ``prefix`` (``net.backbone.``: a visrep task's backbone; ``net.``: its whole
    network) are returned without that prefix; a file without such names is returned as it is.

    Raises:
        CheckpointError: missing, unreadable, or not holding tensors.
    """
    p = Path(path)
    if p.is_dir():
        p = _checkpoint_of_run(p)
    if p.suffix == ".ckpt":
        from visrep.runs import load_checkpoint  # Lightning, see above

        state = load_checkpoint(p)["state_dict"]
    else:
        if not p.is_file():
            raise CheckpointError(f"pretrained weights file {str(p)!r} does not exist")
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for corrupt or unsafe files
            raise CheckpointError(
                f"cannot read pretrained weights {str(p)!r} as a state dict ({type(e).__name__})"
            ) from e
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    tensors = (
        {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, Tensor)}
        if isinstance(state, dict)
        else {}
    )
    if not tensors:
        raise CheckpointError(f"pretrained weights {str(p)!r} hold no state dict of tensors")
    if any(k.startswith(prefix) for k in tensors):
        n = len(prefix)
        tensors = {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}
    return tensors


def load_matching(model: nn.Module, state: dict[str, Tensor], source: str = "state") -> nn.Module:
    """Copy the tensors of ``state`` whose name and shape match into ``model``.

    Tensors whose shape differs (typically the classifier, or a changed stem) and names the
    model lacks are skipped and logged.

    Raises:
        CheckpointError: fewer than half of the model's tensors match (weights of another
            architecture, where only a bias or two would happen to fit).
    """
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if 2 * len(usable) < len(own):
        raise CheckpointError(
            f"pretrained weights {source!r} match only {len(usable)} of the model's {len(own)} "
            f"tensors by name and shape: another architecture? (file: "
            f"{', '.join(list(state)[:3])}, ...; model: {', '.join(list(own)[:3])}, ...)"
        )
    model.load_state_dict(usable, strict=False)
    reshaped = sorted(k for k in state if k in own and k not in usable)
    unknown = sorted(set(state) - set(own))
    if reshaped or unknown:
        log.warning(
            "pretrained %s: loaded %d tensors, skipped %d of another shape (%s) and %d unknown (%s)",
            source,
            len(usable),
            len(reshaped),
            ", ".join(reshaped[:5]),
            len(unknown),
            ", ".join(unknown[:5]),
        )
    return model


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the backbone weights at ``path`` into ``model`` (see the module docstring)."""
    return load_matching(model, read_backbone_state(path), str(path))
