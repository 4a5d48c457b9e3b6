"""The event classifier: ``events -> representation -> normalise -> g_phi -> f_theta -> logits``.

The seed's event slides put a representation (hand-crafted surfaces, HATS, or the learnable
EST / Matrix-LSTM) in front of a frame-based network, trained end to end when learnable
(Gehrig et al. 2019; Cannici et al. 2020). Usable without Lightning;
:class:`visrep.tasks.EventClassificationTask` wraps it for training.
"""

from __future__ import annotations

from typing import Literal

import torch  # noqa: F401  (doctest)
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.events.types import EventBatch

__all__ = ["EventClassifier", "EventFrameNorm", "rms_normalize"]


def rms_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Divide each sample by the root mean square of its non-zero entries.

    Event frames are sparse, and their magnitudes (counts, signed voxel sums, learned
    features) scale with the number of events, which depends on how fast the scene or camera
    moves rather than on what is seen. Dividing by the RMS of the non-zero entries removes that
    global rate while keeping what matters in an event frame: zeros stay zeros ("no event"),
    signs stay signs (polarity), and relative values between pixels and channels are unchanged.
    (E2VID, Rebecq et al. 2019, TPAMI, Sec. 3.1, standardises the non-zero voxels instead; that
    also shifts them, so an average count would look like an empty pixel.) Frames with values
    in ``[0, 1]`` (time surfaces) are only rescaled. An all-zero sample stays zero.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``.

    >>> x = torch.tensor([[[[0.0, 3.0], [0.0, 4.0]]]])
    >>> torch.allclose(rms_normalize(x), x / ((3**2 + 4**2) / 2) ** 0.5)
    True
    """
    flat = x.flatten(1)
    nonzero = (flat != 0).sum(1).clamp(min=1)
    rms = (flat.square().sum(1) / nonzero).sqrt().clamp(min=eps)
    return x / rms.view(-1, *([1] * (x.dim() - 1)))


class EventFrameNorm(nn.Module):
    """Module form of :func:`rms_normalize` (``"rms"``), or the identity (``"none"``)."""

    def __init__(self, mode: Literal["rms", "none"] = "rms") -> None:
        super().__init__()
        if mode not in ("rms", "none"):
            raise ConfigError(f"input_norm must be 'rms' or 'none', got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return rms_normalize(x) if self.mode == "rms" else x

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class EventClassifier(nn.Module):
    """A representation module, an event-frame normalisation and a backbone.

    Args:
        representation: ``EventBatch -> (B, C, H, W)``, learnable or not.
        backbone: Any visrep/timm backbone with ``in_chans == C`` (``forward_features``,
            ``forward_head``).
        input_norm: ``"rms"`` (:func:`rms_normalize`, default) or ``"none"``.

    Shape:
        ``EventBatch`` of ``B`` samples ``-> (B, num_classes)``.
    """

    def __init__(
        self,
        representation: nn.Module,
        backbone: nn.Module,
        input_norm: Literal["rms", "none"] = "rms",
    ) -> None:
        super().__init__()
        self.representation = representation
        self.normalize = EventFrameNorm(input_norm)
        self.backbone = backbone

    def frames(self, events: EventBatch) -> Tensor:
        """The backbone's input: the normalised representation, ``(B, C, H, W)``."""
        return self.normalize(self.representation(events))

    def forward_features(self, events: EventBatch) -> Tensor:
        """Unpooled backbone features of an ``EventBatch``."""
        return self.backbone.forward_features(self.frames(events))

    def embed(self, events: EventBatch) -> Tensor:
        """The pooled representation z that the classifier reads, ``(B, num_features)``."""
        return self.backbone.forward_head(self.forward_features(events), pre_logits=True)

    def forward(self, events: EventBatch) -> Tensor:
        return self.backbone.forward_head(self.forward_features(events))
