"""Heads f_theta: map a backbone's features z to task outputs."""

from visrep.models.heads.classifier import ClassifierHead

__all__ = ["ClassifierHead"]
