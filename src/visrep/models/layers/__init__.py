"""Shared building blocks, defined once and imported by every model that needs them."""

from visrep.models.layers.activations import get_activation
from visrep.models.layers.normalize import Normalize, normalize

__all__ = ["Normalize", "get_activation", "normalize"]

from visrep.models.layers.convlstm import ConvLSTM, ConvLSTMCell, convlstm_cell  # issue 15

__all__ += ["ConvLSTM", "ConvLSTMCell", "convlstm_cell"]
