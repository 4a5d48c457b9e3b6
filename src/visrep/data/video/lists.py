"""Which videos a data set holds: class-per-folder trees, UCF101 split lists, Kinetics CSVs.

Every reader returns ``(class names, [(source, class index), ...])`` where a source is a video
file or a folder of frame images; nothing is decoded here.

* Tree: ``<root>/<class>/<video>.{mp4,avi,mkv,webm,mov}`` or ``<root>/<class>/<video>/<frames>``.
* UCF101 (Soomro et al. 2012): ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist01.txt``
  (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, 1-based class) and ``testlist01.txt``
  (``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi``, the class from the folder); paths are
  relative to the root (a listed ``.avi`` may also be a folder of its extracted frames named
  without the suffix). The official lists keep a group's clips (``gNN``) on one side.
* Kinetics (Kay et al. 2017): CSV ``label,youtube_id,time_start,time_end,split``; a clip is the
  file ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (the downloader's name) or
  ``<youtube_id>.<ext>``, anywhere below the root (class folders, split folders or flat).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from visrep.data.video.io import FRAME_SUFFIXES, VIDEO_SUFFIXES
from visrep.errors import DataError

Entry = tuple[Path, int]


_UCF_GROUP = re.compile(r"_g(\d+)_c\d+")


def recording_groups(entries: list[Entry]) -> np.ndarray | None:
    """The recording group of each entry, int64 ``(N,)``, or None when no name gives one.

    UCF101 names a clip ``v_<Class>_g<NN>_c<MM>``: the clips ``c01, c02, ...`` of group ``NN``
    of a class are cut from one long recording (same actor, background and viewpoint; Soomro
    et al. 2012), so a clip and its siblings must not fall on both sides of a split.
    The group is ``(class, NN)``; an entry without the pattern is a group of its own.

    >>> recording_groups([(Path("v_A_g01_c01.avi"), 0), (Path("v_A_g01_c02.avi"), 0),
    ...                   (Path("v_A_g02_c01.avi"), 0), (Path("v_B_g01_c01.avi"), 1)]).tolist()
    [0, 0, 1, 2]
    >>> recording_groups([(Path("clip.mp4"), 0)]) is None
    True
    """
    keys: list[str] = []
    found = False
    for src, c in entries:
        m = _UCF_GROUP.search(src.name)
        found = found or m is not None
        keys.append(f"{c}:g{int(m.group(1))}" if m else f"file:{src}")
    if not found:
        return None
    return np.unique(np.asarray(keys), return_inverse=True)[1].reshape(-1).astype(np.int64)


def _is_frame_folder(d: Path) -> bool:
    return d.is_dir() and any(f.suffix.lower() in FRAME_SUFFIXES for f in d.iterdir())


def scan_video_tree(root: str | Path) -> tuple[list[str], list[Entry]]:
    """Class names (sorted folder names) and the videos (files or frame folders) of each.

    Raises:
        DataError: ``root`` is missing or holds no videos in class folders.
    """
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"data.root {str(r)!r} is not a folder (expected <class>/<video>.mp4 ...)")
    classes = sorted(d.name for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))
    entries: list[Entry] = []
    for c, name in enumerate(classes):
        for item in sorted((r / name).iterdir()):
            is_file = item.is_file() and item.suffix.lower() in VIDEO_SUFFIXES
            if is_file or _is_frame_folder(item):
                entries.append((item, c))
    if not entries:
        raise DataError(
            f"data.root {str(r)!r} has no videos: expected <class>/<video>"
            f"{{{','.join(VIDEO_SUFFIXES)}}} or <class>/<video>/<frames>.jpg|png"
        )
    return classes, entries


def read_class_index(path: str | Path) -> list[str]:
    """UCF101's ``classInd.txt``: ``<1-based index> <name>`` per line -> names in index order."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data.class_index: no such file {str(p)!r}")
    pairs: dict[int, str] = {}
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{p}:{n}: expected '<index> <class name>', got {line.strip()!r}")
        pairs[int(parts[0])] = parts[1]
    if sorted(pairs) != list(range(1, len(pairs) + 1)):
        raise DataError(f"{p}: class indices must be 1..{len(pairs)}, got {sorted(pairs)[:5]}...")
    return [pairs[i] for i in range(1, len(pairs) + 1)]


def read_ucf_list(
    path: str | Path, root: str | Path, classes: list[str], skip_missing: bool = False
) -> list[Entry]:
    """A UCF101 ``trainlistNN.txt`` / ``testlistNN.txt``: ``<class>/<file> [<1-based class>]``."""
    p, r = Path(path), Path(root)
    if not p.is_file():
        raise DataError(f"no such UCF101 list file {str(p)!r}")
    by_name = {c: i for i, c in enumerate(classes)}
    entries: list[Entry] = []
    missing: list[str] = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        rel = parts[0]
        folder = rel.split("/")[0]
        if len(parts) > 1:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise DataError(f"{p}:{n}: class {parts[1]!r} is not in 1..{len(classes)}")
            c = int(parts[1]) - 1
        elif folder in by_name:
            c = by_name[folder]
        else:
            raise DataError(f"{p}:{n}: class folder {folder!r} is not in the class index")
        f = r / rel
        if not f.exists() and _is_frame_folder(f.with_suffix("")):
            f = f.with_suffix("")  # frames extracted to a folder named after the video
        if not f.exists():
            missing.append(rel)
            continue
        entries.append((f, c))
    _missing(p, r, missing, skip_missing, len(entries))
    return entries


def _missing(p: Path, r: Path, missing: list[str], skip: bool, found: int) -> None:
    if missing and not skip:
        raise DataError(
            f"{p}: {len(missing)} listed videos are not under {str(r)!r} (first: "
            f"{missing[0]!r}); set data.skip_missing true to leave them out"
        )
    if found == 0:
        raise DataError(f"{p}: none of the listed videos is under {str(r)!r}")


def _video_files(root: Path) -> dict[str, Path]:
    """Every video file below ``root`` by its stem (one walk of the tree)."""
    found: dict[str, Path] = {}
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file():
            found.setdefault(f.stem, f)
    return found


def read_kinetics_csv(
    path: str | Path, root: str | Path, classes: list[str] | None = None, skip_missing: bool = False
) -> tuple[list[str], list[Entry]]:
    """A Kinetics annotation CSV (``label,youtube_id,time_start,time_end,split``).

    Args:
        classes: the class names (e.g. from the training CSV); None: the sorted labels found.

    Returns:
        The class names and the clips found below ``root``.
    """
    p, r = Path(path), Path(root)
    if not p.is_file():
        raise DataError(f"no such Kinetics CSV {str(p)!r}")
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"label", "youtube_id", "time_start", "time_end"}
    if not rows or not need <= set(rows[0]):
        raise DataError(
            f"{p}: expected a CSV with columns {sorted(need)}, got {list(rows[0]) if rows else 'no rows'}"
        )
    names = classes if classes is not None else sorted({row["label"] for row in rows})
    by_name = {c: i for i, c in enumerate(names)}
    files = _video_files(r)
    entries: list[Entry] = []
    missing: list[str] = []
    for n, row in enumerate(rows, 2):
        label = row["label"]
        if label not in by_name:
            raise DataError(f"{p}:{n}: label {label!r} is not one of the {len(names)} classes")
        try:
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        except ValueError:
            raise DataError(f"{p}:{n}: time_start / time_end must be numbers") from None
        f = files.get(stem) or files.get(row["youtube_id"])
        if f is None:
            missing.append(stem)
            continue
        entries.append((f, by_name[label]))
    _missing(p, r, missing, skip_missing, len(entries))
    return list(names), entries
