"""Whitespace-separated text tables, tokenised in numpy: the data blocks of ASCII PCD, ASCII
PLY and OFF files, with the file line number of every row for error messages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visrep.errors import DataError

__all__ = ["TextRows", "header_lines", "text_rows"]


@dataclass(frozen=True)
class TextRows:
    """The non-empty lines of a text block as rows of numbers.

    Attributes:
        values: every token as float64, in file order.
        start: index in ``values`` of each row's first token.
        length: number of tokens of each row.
        line: 1-based file line number of each row.
    """

    values: np.ndarray
    start: np.ndarray
    length: np.ndarray
    line: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    def table(self, rows: slice, width: int, path: str, what: str) -> np.ndarray:
        """Rows ``rows`` as a ``(R, width)`` array; any row of another length raises."""
        length = self.length[rows]
        bad = np.flatnonzero(length != width)
        if bad.size:
            i = bad[0] + (rows.start or 0)
            raise DataError(
                f"{path}: line {int(self.line[i])}: {what} has {int(self.length[i])} values, "
                f"expected {width}"
            )
        if not len(length):
            return np.zeros((0, width))
        a = int(self.start[rows][0])
        return self.values[a : a + width * len(length)].reshape(-1, width)


def text_rows(body: bytes, path: str, first_line: int = 1, comments: bool = False) -> TextRows:
    """Tokenise ``body`` (whitespace-separated numbers, one row per line), vectorised.

    Args:
        body: the text block.
        path: the file, for error messages.
        first_line: the file line number of the first line of ``body``.
        comments: drop everything from ``#`` to the end of its line (OFF).

    Raises:
        DataError: a token that is not a number (naming its line).
    """
    u = np.frombuffer(body, dtype=np.uint8)
    if comments and u.size and (u == ord("#")).any():
        nl = np.flatnonzero(u == 10)
        hashes = np.flatnonzero(u == ord("#"))
        at = np.searchsorted(nl, hashes)  # the newline ending each '#' comment, if any
        ends = np.where(
            at < len(nl), nl[np.minimum(at, max(len(nl) - 1, 0))] if nl.size else 0, len(u)
        )
        mark = np.zeros(len(u) + 1, dtype=np.int64)
        np.add.at(mark, hashes, 1)
        np.add.at(mark, ends, -1)
        u = np.where(np.cumsum(mark[:-1]) > 0, np.uint8(32), u)
    space = u <= 32  # bytes.split() splits on ASCII whitespace, all <= 32
    starts = np.flatnonzero(space[:-1] & ~space[1:]) + 1
    if u.size and not space[0]:
        starts = np.concatenate([[0], starts])
    tokens = u.tobytes().split()
    if len(tokens) != len(starts):  # control bytes other than whitespace
        raise DataError(f"{path}: line {first_line}: unexpected control characters in the data")
    nl = np.flatnonzero(u == 10)
    line_of = np.searchsorted(nl, starts)  # 0-based line of each token within body
    if len(tokens):
        first = np.flatnonzero(np.concatenate([[True], np.diff(line_of) != 0]))
    else:
        first = np.zeros(0, dtype=np.int64)
    length = np.diff(np.append(first, len(tokens)))
    try:
        values = np.array(tokens, dtype=np.float64) if tokens else np.zeros(0)
    except ValueError:
        bad = next(i for i, t in enumerate(tokens) if not _is_number(t))
        raise DataError(
            f"{path}: line {first_line + int(line_of[bad])}: {tokens[bad][:40].decode('latin-1')!r} "
            "is not a number"
        ) from None
    return TextRows(values, first, length, first_line + line_of[first])


def _is_number(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def header_lines(
    data: bytes, path: str, end: tuple[bytes, ...], max_lines: int = 1000
) -> tuple[list[str], int]:
    """The text header of ``data`` up to and including the first line starting with one of
    ``end``: its lines (stripped) and the byte offset just after it.

    Raises:
        DataError: no such line within ``max_lines`` lines, or a header that is not ASCII text.
    """
    lines: list[str] = []
    pos = 0
    while len(lines) < max_lines and pos < len(data):
        nl = data.find(b"\n", pos)
        stop = len(data) if nl < 0 else nl
        try:
            line = data[pos:stop].decode("ascii").strip()
        except UnicodeDecodeError:
            raise DataError(f"{path}: line {len(lines) + 1}: header is not ASCII text") from None
        lines.append(line)
        pos = min(stop + 1, len(data))
        if line and line.split(None, 1)[0].lower().encode() in end:
            return lines, pos
    want = " or ".join(e.decode() for e in end)
    raise DataError(f"{path}: header has no {want} line (read {len(lines)} lines)")
