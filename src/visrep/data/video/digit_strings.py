"""Digit strings: sequences of real handwritten digits whose classes follow a Markov chain, for
sequence labelling with per-frame neural features (seed 003: conditional random fields with
neural features).

The setting of the handwriting experiments that introduced structured output on learned
features: a "word" is a sequence of character images whose labels are not independent
(Taskar et al. 2003's OCR words; Peng, Bo and Xu 2009's conditional neural fields on the same
task). Here the words are strings of ``T`` digits whose classes come from a first-order Markov
chain over the ``K`` classes (:func:`successor_chain`: each class may be followed by a few
classes only, the same number for every class, drawn once per data seed), and each position shows a REAL handwritten image of
its class, drawn at random from the source's images of that class (sklearn's digits, an
MNIST-family IDX folder, or an ``.npz`` with its labels: KMNIST). A per-frame classifier reads
one image; a linear-chain CRF can also learn which class follows which, and correct the images
a classifier reads wrongly where the chain forbids its reading.

Samples are ``{"video": Video (T, 1, S, S), "frame_labels": (T,) int64, "meta": dict}``: no clip
label, so :class:`~visrep.tasks.SequenceLabelingTask` labels every frame with one of the ``K``
classes (no background) and scores a string as right when all its frames are. Test strings
use the source's held-out images (its own test split, or the fixed 20% of a single-file
source: :func:`~visrep.data.video.moving_digits.load_digit_pool`), validation strings a fixed
10% of its training images that training strings never show.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.samples import FRAME_LABELS, META, VIDEO
from visrep.data.video.moving_digits import DigitPool, load_digit_pool, sample_seed
from visrep.errors import ConfigError, DataError, ShapeError

__all__ = [
    "DigitStringDataset",
    "DigitStringsDataModule",
    "draw_images",
    "sample_chain",
    "successor_chain",
]


# -- functions ------------------------------------------------------------------------------------
def successor_chain(num_classes: int, successors: int, seed: int) -> tuple[Tensor, Tensor]:
    """A Markov chain over ``K`` classes where each class may be followed by ``successors``
    classes only, each with probability ``1 / successors``: the classes sit on a cycle in a
    random (seeded) order, and each is followed by one of the next ``successors`` on it. Every
    class then also has ``successors`` predecessors (the matrix is doubly stochastic), so all
    classes are equally frequent at every position; the first class is uniform. ``successors =
    K`` is the chain with no structure (i.i.d. classes).

    Returns:
        ``(initial (K,), transition (K, K))`` float64, rows (and columns) summing to 1.

    >>> p0, a = successor_chain(10, 3, seed=0)
    >>> (a > 0).sum(1).tolist() == (a > 0).sum(0).tolist() == [3] * 10
    True
    """
    if num_classes < 2:
        raise ConfigError(f"a digit string needs >= 2 classes, got {num_classes}")
    if not 1 <= successors <= num_classes:
        raise ConfigError(f"data.successors must be in [1, {num_classes}], got {successors}")
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(num_classes, generator=g)  # the cycle
    rank = order.argsort()  # position of each class on it
    step = torch.arange(1, successors + 1)
    if successors == num_classes:
        step = step - 1  # every class, itself included
    nxt = order[(rank[:, None] + step) % num_classes]  # (K, successors)
    transition = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    transition.scatter_(1, nxt, 1.0 / successors)
    initial = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    return initial, transition


def _check_chain(initial: Tensor, transition: Tensor) -> None:
    k = initial.numel()
    if initial.dim() != 1 or transition.shape != (k, k):
        raise ShapeError(
            f"chain: initial (K,) and transition (K, K) expected, got {tuple(initial.shape)} "
            f"and {tuple(transition.shape)}"
        )
    rows = torch.cat((initial[None], transition)).double()
    if (rows < 0).any() or not torch.allclose(rows.sum(1), torch.ones(k + 1, dtype=rows.dtype)):
        raise ConfigError("data.transitions: every row must be >= 0 and sum to 1")


def sample_chain(
    initial: Tensor, transition: Tensor, num: int, length: int, generator: torch.Generator
) -> Tensor:
    """``num`` class strings of ``length`` from the chain, vectorised over the strings (the
    recursion over positions is the chain's own).

    Shape: ``(K,), (K, K) -> (num, length)`` int64.

    >>> a = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    >>> sample_chain(torch.tensor([1.0, 0.0]), a, 2, 4, torch.Generator().manual_seed(0)).tolist()
    [[0, 1, 0, 1], [0, 1, 0, 1]]
    """
    _check_chain(initial, transition)
    out = torch.empty(num, length, dtype=torch.int64)
    out[:, 0] = torch.multinomial(initial.double().expand(num, -1), 1, generator=generator)[:, 0]
    for t in range(1, length):
        rows = transition.double()[out[:, t - 1]]
        out[:, t] = torch.multinomial(rows, 1, generator=generator)[:, 0]
    return out


def draw_images(labels: Tensor, strings: Tensor, generator: torch.Generator) -> Tensor:
    """For each position of each string, a uniformly drawn index of an image of its class.

    Args:
        labels: ``(N,)`` class of each image of the pool.
        strings: ``(B, T)`` classes.

    Returns:
        ``(B, T)`` int64 indices into the pool, ``labels[out] == strings``.

    >>> idx = draw_images(torch.tensor([1, 0, 1, 0]), torch.tensor([[0, 1, 1]]), torch.Generator())
    >>> torch.tensor([1, 0, 1, 0])[idx].tolist()
    [[0, 1, 1]]
    """
    k = int(strings.max()) + 1 if strings.numel() else 0
    counts = torch.bincount(labels.clamp(min=0), minlength=k)[:k]
    if labels.min() < 0 or (counts[strings.unique()] == 0).any():
        missing = [c for c in strings.unique().tolist() if c >= len(counts) or counts[c] == 0]
        raise DataError(f"the digit source has no images of classes {missing}")
    by_class = labels.argsort(stable=True)  # pool indices grouped by class
    start = torch.cumsum(counts, 0) - counts
    u = torch.rand(strings.shape, generator=generator, dtype=torch.float64)
    offset = (u * counts[strings]).long().clamp(max=counts[strings] - 1)
    return by_class[start[strings] + offset]


def _split_pool(pool: DigitPool, fraction: float) -> dict[str, DigitPool]:
    """The training images split (seeded, fixed) into images of training and of validation
    strings, so validation strings show images the model never trained on, as test strings do."""
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))
    n_val = round(fraction * len(pool))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values

    def sub(idx: Tensor) -> DigitPool:
        return DigitPool(pool.images[idx], pool.labels[idx], pool.source)

    return {"train": sub(train), "val": sub(val)}


# -- data set -------------------------------------------------------------------------------------
class DigitStringDataset(Dataset):
    """``length`` strings drawn once from the chain, with their images (a function of ``seed``,
    ``split`` and ``length``).

    Items: ``{"video": Video (T, 1, S, S), "frame_labels": (T,) int64, "meta": {"index",
    "split", "images"}}`` (``images``: the pool indices shown).
    """

    def __init__(
        self,
        pool: DigitPool,
        initial: Tensor,
        transition: Tensor,
        split: str,
        length: int,
        num_frames: int,
        seed: int,
    ) -> None:
        self.pool, self.split = pool, split
        g = torch.Generator().manual_seed(sample_seed(seed, split, 0))
        self.strings = sample_chain(initial, transition, length, num_frames, g)
        self.images = draw_images(pool.labels, self.strings, g)

    def __len__(self) -> int:
        return len(self.strings)

    def frames(self, indices: Tensor | list[int]) -> Tensor:
        """``(N, T, 1, S, S)`` frames of the given strings."""
        return self.pool.images[self.images[torch.as_tensor(indices)]][:, :, None]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            VIDEO: tv_tensors.Video(self.pool.images[self.images[index]][:, None]),
            FRAME_LABELS: self.strings[index],
            META: {"index": index, "split": self.split, "images": self.images[index].tolist()},
        }


class DigitStringsDataModule(SplitDataModule):
    """Strings of real handwritten digits with Markov-chain classes (family ``video``, for
    :class:`~visrep.tasks.SequenceLabelingTask`; see the module docstring).

    Args:
        source: digit images with labels: ``"sklearn"`` (8x8 digits, embedded), an IDX folder
            (MNIST, Fashion-MNIST ...: its own train / test split), or an ``.npz`` images file
            with ``labels_path`` (KMNIST's ``kmnist-test-imgs.npz`` +
            ``kmnist-test-labels.npz``: split 80 / 20 into train / test images).
        labels_path: the labels of a single-file source, when in their own file.
        num_frames: the string length ``T``.
        digit_size: the frame size ``S`` (images are resized to ``S x S``).
        successors: how many classes may follow each class (:func:`successor_chain`); the
            number of classes ``K`` means no structure.
        transitions: an explicit ``K x K`` row-stochastic matrix instead (the first class is
            uniform).
        train_strings, val_strings, test_strings: split sizes.
        val_images: the fraction of the source's training images that only validation strings
            show (a fixed seeded draw); test strings show the source's held-out images. Neither
            shares an image with the training strings.
        seed: the data set's seed (the chain and every string).
        loader, split: as in :class:`~visrep.data.base.SplitDataModule`.
    """

    def __init__(
        self,
        source: str = "sklearn",
        labels_path: str | None = None,
        num_frames: int = 10,
        digit_size: int = 16,
        successors: int = 3,
        transitions: list[list[float]] | None = None,
        train_strings: int = 2000,
        val_strings: int = 300,
        test_strings: int = 1000,
        val_images: float = 0.1,
        seed: int = 0,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader or LoaderConfig(batch_size=32), split)
        if num_frames < 2:
            raise ConfigError(f"data.num_frames must be >= 2, got {num_frames}")
        if digit_size < 4:
            raise ConfigError(f"data.digit_size must be >= 4, got {digit_size}")
        for name, n, least in (
            ("train_strings", train_strings, 1),
            ("val_strings", val_strings, 0),
            ("test_strings", test_strings, 1),
        ):
            if n < least:
                raise ConfigError(f"data.{name} must be >= {least}, got {n}")
        if not 0 < val_images < 1:
            raise ConfigError(f"data.val_images must be in (0, 1), got {val_images}")
        self.val_images = float(val_images)
        self.transitions = None
        if transitions is not None:
            a = torch.as_tensor(transitions, dtype=torch.float64)
            if a.dim() != 2 or a.shape[0] != a.shape[1]:
                raise ConfigError(f"data.transitions must be a K x K matrix, got {list(a.shape)}")
            _check_chain(torch.full((len(a),), 1.0 / len(a), dtype=torch.float64), a)
            self.transitions = a
        self.source, self.labels_path = source, labels_path
        self.num_frames, self.digit_size, self.successors = num_frames, digit_size, successors
        self.sizes = {"train": train_strings, "val": val_strings, "test": test_strings}
        self.seed = seed
        self.class_names: list[str] = []
        self.mean: list[float] = []
        self.std: list[float] = []

    def _pool(self, split: str) -> DigitPool:
        pool = load_digit_pool(self.source, split, self.digit_size, self.labels_path)
        if int(pool.labels.min()) < 0:
            raise DataError(
                f"data.source {self.source!r} has no labels; digit strings need one class per "
                f"image (give data.labels_path for an .npz or IDX images file)"
            )
        return pool

    def chain(self, num_classes: int) -> tuple[Tensor, Tensor]:
        """``(initial, transition)`` of the strings over ``num_classes`` classes."""
        if self.transitions is not None:
            if len(self.transitions) != num_classes:
                raise ConfigError(
                    f"data.transitions is {len(self.transitions)} x {len(self.transitions)} "
                    f"but the source has {num_classes} classes"
                )
            k = num_classes
            return torch.full((k,), 1.0 / k, dtype=torch.float64), self.transitions
        return successor_chain(num_classes, self.successors, self.seed)

    def load(self) -> Splits:
        train_pool = self._pool("train")
        pools = {"test": self._pool("test"), **_split_pool(train_pool, self.val_images)}
        k = int(max(int(p.labels.max()) for p in pools.values())) + 1
        initial, transition = self.chain(k)
        sets = {
            split: DigitStringDataset(
                pools[split],
                initial,
                transition,
                split,
                n,
                self.num_frames,
                self.seed,
            )
            for split, n in self.sizes.items()
            if n
        }
        self.class_names = [str(c) for c in range(k)]
        return Splits(sets["train"], None, self.class_names, test=sets["test"], val=sets.get("val"))

    def on_splits_ready(self) -> None:
        base, kept = self.train_set.dataset, self.train_set.indices[:256]
        x = base.frames(kept).double()
        self.mean, self.std = [float(x.mean())], [float(x.std())]

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        return DataSpec(
            family="video",
            keys=(VIDEO, FRAME_LABELS),
            in_chans=1,
            image_size=(self.digit_size, self.digit_size),
            num_frames=self.num_frames,
            num_classes=len(self.class_names),
            class_names=tuple(self.class_names),
            mean=tuple(self.mean),
            std=tuple(self.std),
        )
