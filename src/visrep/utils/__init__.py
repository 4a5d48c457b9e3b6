"""Low-level helpers every stage may use (the bottom of the flow): the :class:`Registry`."""

from visrep.utils.registry import Registry

__all__ = ["Registry"]
