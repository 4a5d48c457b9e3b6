"""DETR's bipartite matching of predicted to true objects (Carion et al. 2020, Sec. 3.1, eq. 1).

The ``Q`` predictions of an image are assigned one-to-one to its ``M <= Q`` objects by the
permutation of lowest total matching cost ``sum_i L_match(y_i, y_hat_sigma(i))``, found with the
Hungarian algorithm (Kuhn 1955; :func:`scipy.optimize.linear_sum_assignment`). The pair cost is

    L_match = -w_class p_hat(c_i) + w_bbox ||b_i - b_hat||_1 - w_giou GIoU(b_i, b_hat)

with ``p_hat(c_i)`` the predicted probability of the object's class (the probability itself,
not its log, as in the paper: it keeps the class cost on the scale of the box costs), boxes
``(cx, cy, w, h)`` normalised by the image size for the L1 term, and the generalised IoU
(Rezatofighi et al. 2019) on their corners. Defaults are the paper's weights (1, 5, 2).

The costs of a batch are computed at once, with the targets padded to the batch's largest
count: one ``(B, Q, M_max)`` tensor; only the assignment itself runs per image, on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torchvision.ops import box_convert

from visrep.errors import ConfigError, ShapeError
from visrep.losses.detection import check_set_inputs, generalized_box_iou

__all__ = ["HungarianMatcher", "hungarian_match", "linear_assignment", "match_cost"]


def linear_assignment(cost: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """The one-to-one assignment of rows to columns with the lowest total cost.

    Rectangular matrices assign ``min(R, C)`` pairs (every row when ``R <= C``, every column
    otherwise); an empty matrix gives empty indices.

    Args:
        cost: ``(R, C)`` pair costs (finite).

    Returns:
        ``(rows, cols)``, int64 ``(min(R, C),)`` each, rows in increasing order.

    >>> linear_assignment(torch.tensor([[4.0, 1.0], [2.0, 3.0], [0.0, 9.0]]))
    (tensor([0, 2]), tensor([1, 0]))
    """
    c = cost.detach().cpu().numpy() if isinstance(cost, Tensor) else np.asarray(cost)
    if c.ndim != 2:
        raise ShapeError(f"linear_assignment: cost must be (R, C), got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ShapeError("linear_assignment: cost has NaN or infinite entries")
    if 0 in c.shape:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty.clone()
    rows, cols = linear_sum_assignment(c)
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def match_cost(
    logits: Tensor,
    boxes: Tensor,
    targets: Sequence[dict[str, Tensor]],
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> Tensor:
    """The matching cost of every prediction against every object of its image, batched.

    Args:
        logits: ``(B, Q, K + 1)`` class scores (index ``K``: no object).
        boxes: ``(B, Q, 4)`` normalised ``(cx, cy, w, h)``.
        targets: per image ``labels`` ``(M_b,)`` and normalised ``boxes`` ``(M_b, 4)``.
        cost_class, cost_bbox, cost_giou: the weights ``w`` of the module docstring.

    Returns:
        ``(B, Q, M_max)``; columns ``M_b..M_max - 1`` of image ``b`` are padding (finite, to
        be ignored).
    """
    check_set_inputs(logits, boxes, targets, "matcher")
    b, q = logits.shape[:2]
    m_max = max((len(t["labels"]) for t in targets), default=0)
    if m_max == 0:
        return logits.new_zeros(b, q, 0)
    dev = logits.device
    labels = pad_sequence([t["labels"].to(dev) for t in targets], batch_first=True)
    # Padding boxes: a valid box, so GIoU stays finite in the ignored columns.
    tboxes = pad_sequence(
        [t["boxes"].to(boxes) for t in targets], batch_first=True, padding_value=0.5
    )
    prob = logits.softmax(-1)
    c_class = -prob.gather(2, labels[:, None, :].expand(b, q, m_max))
    c_bbox = torch.cdist(boxes, tboxes, p=1)
    c_giou = -generalized_box_iou(
        box_convert(boxes, "cxcywh", "xyxy"), box_convert(tboxes, "cxcywh", "xyxy")
    )
    return cost_bbox * c_bbox + cost_class * c_class + cost_giou * c_giou


@torch.no_grad()
def hungarian_match(
    logits: Tensor,
    boxes: Tensor,
    targets: Sequence[dict[str, Tensor]],
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> list[tuple[Tensor, Tensor]]:
    """The lowest-cost one-to-one matching of each image's predictions to its objects (eq. 1).

    Args: as :func:`match_cost`.

    Returns:
        Per image ``(prediction indices, target indices)``, int64 ``(min(Q, M_b),)`` each on
        ``logits``'s device, prediction indices increasing.

    >>> logits = torch.tensor([[[0.0, 4.0, 0.0], [4.0, 0.0, 0.0]]])  # query 1 says class 0
    >>> boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]])
    >>> t = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    >>> hungarian_match(logits, boxes, t)
    [(tensor([1]), tensor([0]))]
    """
    cost = match_cost(logits, boxes, targets, cost_class, cost_bbox, cost_giou).cpu()
    out = []
    for i, t in enumerate(targets):
        rows, cols = linear_assignment(cost[i, :, : len(t["labels"])])
        out.append((rows.to(logits.device), cols.to(logits.device)))
    return out


class HungarianMatcher(nn.Module):
    """Module form of :func:`hungarian_match`, holding the cost weights (paper: 1, 5, 2).

    A :data:`~visrep.losses.detection.Matcher`: called with ``(logits, boxes, targets)``.
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0):
        super().__init__()
        costs = {"cost_class": cost_class, "cost_bbox": cost_bbox, "cost_giou": cost_giou}
        for name, w in costs.items():
            if w < 0:
                raise ConfigError(f"{name} must be >= 0, got {w}")
        if not any(costs.values()):
            raise ConfigError("cost_class, cost_bbox and cost_giou cannot all be 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou

    def forward(
        self, logits: Tensor, boxes: Tensor, targets: Sequence[dict[str, Tensor]]
    ) -> list[tuple[Tensor, Tensor]]:
        return hungarian_match(
            logits, boxes, targets, self.cost_class, self.cost_bbox, self.cost_giou
        )
