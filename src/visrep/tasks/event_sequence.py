"""Event-camera classification from the event sequence itself: a Phased LSTM reads the events.

The loss, metrics, optimisation and steps of :class:`~visrep.tasks.ClassificationTask` around a
:class:`~visrep.models.event_sequence.PhasedLSTMEventClassifier` (Neil, Pfeiffer, Liu, NIPS
2016): no event frame, each event one input, its timestamp driving the time gate.
"""

from __future__ import annotations

from torch import Tensor

from visrep.data.base import DataSpec
from visrep.data.samples import EVENTS
from visrep.errors import ConfigError
from visrep.events.representations.frames import to_event_count
from visrep.events.types import EventBatch
from visrep.models.event_sequence import PhasedLSTMEventClassifier
from visrep.plots.events import event_images
from visrep.tasks.classification import ClassificationTask
from visrep.tasks.event_classification import first_samples
from visrep.tasks.optim import OptimConfig

__all__ = ["PhasedLSTMEventTask"]


class PhasedLSTMEventTask(ClassificationTask):
    """Trains a Phased LSTM on event sequences for classification.

    Args:
        embed_dim: Width of the learned ``(x, y, polarity)`` address embedding.
        hidden_size: Phased LSTM neurons.
        max_events: Events read per sample, evenly spaced over the recording; None: all.
        time_unit_us: Microseconds per unit of ``tau_range`` (1000: milliseconds).
        tau_range: Periods initialised ``exp(U(log lo, log hi))``.
        r_on: Open ratio of the time gate.
        leak: Closed-phase leak ``alpha`` while training (0 at evaluation).
        learn_timing: Learn the periods and shifts.
        dropout: Dropout before the classifier.
        label_smoothing, optim, top_k: as in :class:`~visrep.tasks.ClassificationTask`.
    """

    families = ("events",)
    input_key = EVENTS
    embeds = False  # its net embeds event batches, not images

    def __init__(
        self,
        embed_dim: int = 40,
        hidden_size: int = 110,
        max_events: int | None = 1024,
        time_unit_us: float = 1000.0,
        tau_range: tuple[float, float] = (1.0, 1000.0),
        r_on: float = 0.05,
        leak: float = 1e-3,
        learn_timing: bool = True,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        optim: OptimConfig | None = None,
        top_k: int = 5,
    ) -> None:
        super().__init__(label_smoothing=label_smoothing, optim=optim, top_k=top_k)
        self.hparams.pop("backbone", None)  # no backbone: the Phased LSTM is the whole net

    def build_net(self, spec: DataSpec) -> PhasedLSTMEventClassifier:
        if spec.sensor_size is None:
            raise ConfigError(f"{type(self).__name__} needs event data with a sensor_size")
        hp = self.hparams
        return PhasedLSTMEventClassifier(
            tuple(int(v) for v in spec.sensor_size), spec.num_classes,
            embed_dim=hp.embed_dim, hidden_size=hp.hidden_size, max_events=hp.max_events,
            time_unit_us=hp.time_unit_us, tau_range=tuple(hp.tau_range), r_on=hp.r_on,
            leak=hp.leak, learn_timing=hp.learn_timing, dropout=hp.dropout,
        )  # fmt: skip

    def sample_images(self, x: EventBatch, k: int) -> Tensor:
        """The first ``k`` samples as event-count images (polarity overlay) for the test grid."""
        return event_images(to_event_count(first_samples(x, k)), "count")
