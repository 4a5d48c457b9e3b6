"""Verification pair lists in the layout of LFW's ``pairs.txt`` (Huang et al. 2007, LFW
technical report 07-49, section "pairs.txt").

The first line is ``N`` (``pairsDevTrain.txt``: N same pairs, then N different pairs) or
``F N`` (``pairs.txt``: F folds, each N same pairs then N different pairs). Then one pair per
line, fields separated by whitespace::

    name i j            a same pair: images i and j of identity name
    name1 i name2 j     a different pair: image i of name1, image j of name2

Image numbers are 1-based, as LFW writes them. **Image number i is the i-th image file of the
identity's folder in natural sort order** (digit runs compare as numbers): ORL's ``sN/i.pgm``
is image i (``2.pgm`` before ``10.pgm``), and LFW's ``Name/Name_000i.jpg``, numbered from 1
without gaps, is image i.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from visrep.errors import DataError


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as numbers: ``2.pgm`` < ``10.pgm``; ties broken by name.

    >>> sorted(["10.pgm", "2.pgm", "1.pgm"], key=natural_key)
    ['1.pgm', '2.pgm', '10.pgm']
    """
    parts = re.split(r"(\d+)", name.lower())  # text, digits, text, ...: types alternate
    return (tuple(int(t) if i % 2 else t for i, t in enumerate(parts)), name)


def _number(field: str, where: str) -> int:
    if not field.isdigit() or int(field) < 1:
        raise DataError(f"{where}: image numbers are 1-based integers, got {field!r}")
    return int(field)


def read_pairs(
    path: str | Path, index: Mapping[str, Sequence[int]], split: str = "test"
) -> np.ndarray:
    """Read an LFW ``pairs.txt``-layout file as ``(n, 3)`` int64 rows ``(i, j, same)``.

    Args:
        path: the pair list (layout in the module docstring).
        index: for each identity of the split, the sample index of each of its images in
            natural sort order of the files (image number ``m`` is ``index[name][m - 1]``).
        split: the split's name, for the error naming an identity it lacks.

    Returns:
        ``(n, 3)`` int64: the two sample indices and 1 for a same pair, 0 for a different one,
        in file order.

    Raises:
        DataError: naming ``path:line`` for a malformed line, an identity not in ``index``, an
            image number past the identity's images, an image paired with itself, a different
            pair naming one identity twice, or a line count other than the header's.
    """
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"data.pairs: cannot read {str(p)!r}: {e}") from e
    numbered = [(n, line.split()) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise DataError(f"{p}: the pair list is empty; expected a first line 'N' or 'folds N'")
    n0, head = numbered[0]
    if not (1 <= len(head) <= 2 and all(h.isdigit() for h in head)):
        raise DataError(
            f"{p}:{n0}: expected a first line 'N' or 'folds N' (integers), got {' '.join(head)!r}"
        )
    folds, per = (1, int(head[0])) if len(head) == 1 else (int(head[0]), int(head[1]))
    body = numbered[1:]
    if len(body) != 2 * folds * per:
        raise DataError(
            f"{p}: the first line announces {folds} x ({per} same + {per} different) = "
            f"{2 * folds * per} pairs, the file has {len(body)}"
        )
    rows = np.empty((len(body), 3), dtype=np.int64)
    for r, (n, f) in enumerate(body):
        where = f"{p}:{n}"
        if len(f) == 3:
            a, b, same = (f[0], f[1]), (f[0], f[2]), 1
        elif len(f) == 4:
            a, b, same = (f[0], f[1]), (f[2], f[3]), 0
            if f[0] == f[2]:
                raise DataError(f"{where}: a different pair names identity {f[0]!r} twice")
        else:
            raise DataError(
                f"{where}: expected 'name i j' (same pair) or 'name1 i name2 j' (different "
                f"pair), got {len(f)} fields"
            )
        for c, (name, num) in enumerate((a, b)):
            images = index.get(name)
            if images is None:
                raise DataError(f"{where}: identity {name!r} is not in the {split} split")
            m = _number(num, where)
            if m > len(images):
                raise DataError(
                    f"{where}: identity {name!r} has {len(images)} images, no image {m}"
                )
            rows[r, c] = images[m - 1]
        if same and rows[r, 0] == rows[r, 1]:
            raise DataError(f"{where}: pairs image {f[1]} of {f[0]!r} with itself")
        rows[r, 2] = same
    return rows
