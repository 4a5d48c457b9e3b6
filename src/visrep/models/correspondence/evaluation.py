"""Evaluating correspondence filters: inlier precision / recall / F1, and the RANSAC baselines
(OpenCV's ``findHomography`` and ``findEssentialMat``) that Yi et al. 2018 compare with (their
tables 1-3: RANSAC on the putative matches, and "ours + RANSAC" on the matches the network keeps).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from visrep.data.correspondence.sift import opencv
from visrep.errors import ShapeError

__all__ = ["inlier_scores", "ransac_essential", "ransac_homography"]


def inlier_scores(
    predicted: Tensor, labels: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair precision, recall and F1 ``(B,)`` of predicted inliers against the labels.

    A pair with no predicted inlier has precision 0; with no true inlier, recall 0; F1 is 0
    when precision and recall are both 0.

    >>> p = torch.tensor([[True, True, False, False]]); y = torch.tensor([[True, False, True, False]])
    >>> [round(float(v), 3) for v in inlier_scores(p, y)]
    [0.5, 0.5, 0.5]
    """
    if predicted.shape != labels.shape or predicted.dim() != 2:
        raise ShapeError(
            f"inlier_scores: predicted and labels must both be (B, N), got "
            f"{tuple(predicted.shape)} and {tuple(labels.shape)}"
        )
    valid = torch.ones_like(labels, dtype=torch.bool) if mask is None else mask.bool()
    p, y = predicted.bool() & valid, labels.bool() & valid
    tp = (p & y).sum(1).float()
    precision = tp / p.sum(1).clamp_min(1)
    recall = tp / y.sum(1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return precision, recall, f1


def ransac_homography(
    x1: np.ndarray,
    x2: np.ndarray,
    threshold: float = 3.0,
    confidence: float = 0.999,
    max_iters: int = 2000,
) -> tuple[np.ndarray | None, np.ndarray]:
    """``cv2.findHomography(x1, x2, cv2.RANSAC, threshold)`` on pixel points ``(N, 2)``:
    ``(H or None, inlier mask (N,) bool)``; fewer than 4 points give ``(None, all False)``."""
    cv2 = opencv()
    mask = np.zeros(len(x1), bool)
    if len(x1) < 4:
        return None, mask
    H, m = cv2.findHomography(
        x1.astype(np.float64), x2.astype(np.float64), cv2.RANSAC, threshold,
        maxIters=max_iters, confidence=confidence,
    )  # fmt: skip
    if H is None or m is None:
        return None, mask
    return H, m[:, 0].astype(bool)


def ransac_essential(
    x1: np.ndarray,
    x2: np.ndarray,
    threshold: float = 1e-3,
    confidence: float = 0.999,
    max_iters: int = 2000,
) -> tuple[np.ndarray | None, np.ndarray]:
    """``cv2.findEssentialMat`` (five-point RANSAC) on normalised points ``(N, 2)`` (identity
    camera matrix, ``threshold`` in normalised units): ``(E or None, inlier mask (N,) bool)``;
    OpenCV may return several stacked solutions, the first is kept."""
    cv2 = opencv()
    mask = np.zeros(len(x1), bool)
    if len(x1) < 5:
        return None, mask
    E, m = cv2.findEssentialMat(
        x1.astype(np.float64), x2.astype(np.float64), np.eye(3), cv2.RANSAC, confidence,
        threshold, maxIters=max_iters,
    )  # fmt: skip
    if E is None or m is None or E.shape[0] < 3:
        return None, mask
    return E[:3], m[:, 0].astype(bool)
