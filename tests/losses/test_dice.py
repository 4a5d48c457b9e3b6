import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ShapeError
from visrep.losses import DiceLoss, dice_loss


def test_dice_matches_the_formula_and_ignores_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0, :] = 255
    p = logits.softmax(1)
    keep = target != 255
    d = []
    for c in range(3):
        pc, gc = p[:, c][keep], (target[keep] == c).float()
        d.append(2 * (pc * gc).sum() / ((pc**2).sum() + (gc**2).sum()))
    expected = 1 - torch.stack(d).mean()
    torch.testing.assert_close(dice_loss(logits, target, 255, eps=0.0), expected)
    torch.testing.assert_close(DiceLoss(255, eps=0.0)(logits, target), expected)


def test_dice_is_zero_for_a_perfect_prediction_and_has_gradients():
    t = torch.tensor([[[0, 2], [2, 2]]])
    perfect = 60.0 * F.one_hot(t, 3).permute(0, 3, 1, 2).double()
    assert float(dice_loss(perfect, t)) < 1e-9
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: dice_loss(z, t, eps=1e-3), (x,))


def test_dice_bad_shapes():
    with pytest.raises(ShapeError, match="dice_loss"):
        dice_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 4, dtype=torch.long))
