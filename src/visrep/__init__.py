"""visrep: visual representation learning, from data source to a trained run and its analysis.

The flow (``../DESIGN.md``): data -> representation -> backbone -> head -> task -> trainer -> run dir.
"""

from visrep.errors import VisrepError

__version__ = "0.2.0"
__all__ = ["VisrepError", "__version__"]
