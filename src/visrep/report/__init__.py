"""The static, self-contained HTML report of a run directory."""

from visrep.report.html import build_report

__all__ = ["build_report"]
