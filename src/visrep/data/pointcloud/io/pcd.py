"""PCD v0.7 (the Point Cloud Library's format): ``ascii``, ``binary`` and ``binary_compressed``.

A PCD file is an ASCII header (``VERSION``, ``FIELDS``, ``SIZE``, ``TYPE``, ``COUNT``,
``WIDTH``, ``HEIGHT``, ``VIEWPOINT``, ``POINTS``, ``DATA``) followed by the data: ASCII rows,
packed little-endian records (``binary``, array of structures), or an LZF stream of the
field-by-field layout (``binary_compressed``, structure of arrays) preceded by its compressed and
uncompressed sizes as two uint32. Fields: x, y, z (required), a per-point label field (default
``label``), PCL's packed ``rgb`` / ``rgba`` (decoded to r, g, b [, a] features), fields with
``COUNT > 1`` (``name_0 ...``), and ``_`` padding (skipped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visrep.data.pointcloud.io._text import header_lines, text_rows
from visrep.data.pointcloud.io.lzf import lzf_decompress
from visrep.data.pointcloud.io.types import NonFinite, PointCloud, check_finite
from visrep.errors import DataError

__all__ = ["read_pcd"]

_KINDS = {"F": "f", "I": "i", "U": "u"}
_SIZES = {"F": (4, 8), "I": (1, 2, 4, 8), "U": (1, 2, 4, 8)}
_KEYS = (
    "VERSION",
    "FIELDS",
    "COLUMNS",
    "SIZE",
    "TYPE",
    "COUNT",
    "WIDTH",
    "HEIGHT",
    "VIEWPOINT",
    "POINTS",
    "DATA",
)


def _ints(values: list[str], key: str, path: Path, line: int) -> list[int]:
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise DataError(
            f"{path}: line {line}: {key} must be integers, got {' '.join(values)!r}"
        ) from None
    if any(v < 0 for v in out):
        raise DataError(f"{path}: line {line}: {key} must be >= 0, got {' '.join(values)!r}")
    return out


def _header(lines: list[str], path: Path) -> dict[str, Any]:
    """The header keys, checked: fields with sizes, types and counts, point count, data kind."""
    h: dict[str, Any] = {}
    where: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        key = key.upper()
        if key not in _KEYS:
            raise DataError(f"{path}: line {i}: unknown PCD header entry {key!r}")
        h["FIELDS" if key == "COLUMNS" else key] = values
        where["FIELDS" if key == "COLUMNS" else key] = i
    for key in ("FIELDS", "SIZE", "TYPE", "WIDTH"):
        if key not in h:
            raise DataError(f"{path}: PCD header has no {key} line")
    names = h["FIELDS"]
    n = len(names)
    sizes = _ints(h["SIZE"], "SIZE", path, where["SIZE"])
    counts = _ints(h["COUNT"], "COUNT", path, where["COUNT"]) if "COUNT" in h else [1] * n
    types = [t.upper() for t in h["TYPE"]]
    for key, vals in (("SIZE", sizes), ("TYPE", types), ("COUNT", counts)):
        if len(vals) != n:
            raise DataError(
                f"{path}: line {where.get(key, where['FIELDS'])}: {key} has {len(vals)} entries "
                f"for {n} FIELDS"
            )
    for name, size, typ in zip(names, sizes, types, strict=True):
        if typ not in _KINDS or size not in _SIZES[typ]:
            raise DataError(
                f"{path}: line {where['TYPE']}: field {name!r}: unsupported TYPE {typ} with SIZE "
                f"{size} (expected F 4/8, I or U 1/2/4/8)"
            )
    real = [m for m in names if m != "_"]
    if len(set(real)) != len(real):
        raise DataError(
            f"{path}: line {where['FIELDS']}: repeated field names in {' '.join(names)}"
        )
    for axis in "xyz":
        if axis not in names:
            raise DataError(
                f"{path}: line {where['FIELDS']}: no {axis!r} field (FIELDS {' '.join(names)})"
            )
        if counts[names.index(axis)] != 1:
            raise DataError(f"{path}: line {where['COUNT']}: field {axis!r} must have COUNT 1")
    width = _ints(h["WIDTH"], "WIDTH", path, where["WIDTH"])
    height = _ints(h.get("HEIGHT", ["1"]), "HEIGHT", path, where.get("HEIGHT", 0))
    if len(width) != 1 or len(height) != 1:
        raise DataError(f"{path}: line {where['WIDTH']}: WIDTH and HEIGHT take one integer each")
    points = width[0] * height[0]
    if "POINTS" in h:
        declared = _ints(h["POINTS"], "POINTS", path, where["POINTS"])
        if len(declared) != 1 or declared[0] != points:
            raise DataError(
                f"{path}: line {where['POINTS']}: POINTS {' '.join(h['POINTS'])} does not equal "
                f"WIDTH x HEIGHT = {points}"
            )
    data = h["DATA"][0].lower() if h.get("DATA") else ""
    if data not in ("ascii", "binary", "binary_compressed"):
        raise DataError(
            f"{path}: line {len(lines)}: DATA {data!r} is not ascii, binary or binary_compressed"
        )
    viewpoint = h.get("VIEWPOINT")
    if viewpoint is not None:
        try:
            viewpoint = [float(v) for v in viewpoint]
        except ValueError:
            viewpoint = None
        if viewpoint is None or len(viewpoint) != 7:
            raise DataError(
                f"{path}: line {where['VIEWPOINT']}: VIEWPOINT takes 7 numbers (tx ty tz qw qx qy qz)"
            )
    return {
        "names": names,
        "sizes": sizes,
        "types": types,
        "counts": counts,
        "points": points,
        "data": data,
        "viewpoint": viewpoint,
        "version": " ".join(h.get("VERSION", [])),
        "width": width[0],
        "height": height[0],
    }


def _dtype(h: dict[str, Any], i: int) -> np.dtype:
    return np.dtype(f"<{_KINDS[h['types'][i]]}{h['sizes'][i]}")


def _columns(
    h: dict[str, Any], data: bytes, offset: int, path: Path, header_len: int
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Each field's values ``(P,)`` or ``(P, COUNT)``; and the file line of each data row
    (ASCII) or None."""
    names, counts, p = h["names"], h["counts"], h["points"]
    cols: dict[str, np.ndarray] = {}
    if h["data"] == "ascii":
        rows = text_rows(data[offset:], str(path), header_len + 1)
        width = sum(counts)
        if len(rows) < p:
            raise DataError(
                f"{path}: fewer points than declared: POINTS {p}, found {len(rows)} data lines"
            )
        if len(rows) > p:
            raise DataError(
                f"{path}: line {int(rows.line[p])}: more data lines than declared (POINTS {p})"
            )
        table = rows.table(slice(0, p), width, str(path), "data line")
        at = 0
        for i, (name, count) in enumerate(zip(names, counts, strict=True)):
            block = table[:, at : at + count]
            at += count
            dt = _dtype(h, i)
            if dt.kind == "f":
                vals = block.astype(dt)
            else:  # integers written as text; refuse fractions and values out of range
                info = np.iinfo(dt)
                bad = (block != np.round(block)) | (block < info.min) | (block > info.max)
                if bad.any():
                    r = int(np.flatnonzero(bad.any(axis=1))[0])
                    raise DataError(
                        f"{path}: line {int(rows.line[r])}: field {name!r} ({h['types'][i]}{h['sizes'][i]}) "
                        f"got {block[r][bad[r]][0]!r}"
                    )
                vals = block.astype(dt)
            cols[f"{name}#{i}"] = vals[:, 0] if count == 1 else vals
        return cols, rows.line[:p]
    fields = [
        (f"{name}#{i}", _dtype(h, i), (c,) if c > 1 else ())
        for i, (name, c) in enumerate(zip(names, counts, strict=True))
    ]
    record = np.dtype(fields)
    need = p * record.itemsize
    if h["data"] == "binary":
        have = len(data) - offset
        if have < need:
            raise DataError(
                f"{path}: fewer points than declared: POINTS {p} x {record.itemsize} bytes needs "
                f"{need} bytes of data, the file has {have}"
            )
        arr = np.frombuffer(data, dtype=record, count=p, offset=offset)
        return {k: arr[k] for k in record.names}, None
    if len(data) - offset < 8:
        raise DataError(f"{path}: binary_compressed data has no size words (8 bytes)")
    csize, usize = (int(v) for v in np.frombuffer(data, dtype="<u4", count=2, offset=offset))
    if len(data) - offset - 8 < csize:
        raise DataError(
            f"{path}: binary_compressed data is truncated: {csize} compressed bytes declared, "
            f"{len(data) - offset - 8} present"
        )
    if usize != need:
        raise DataError(
            f"{path}: fewer points than declared: binary_compressed data holds {usize} bytes, "
            f"POINTS {p} x {record.itemsize} bytes needs {need}"
        )
    raw = lzf_decompress(data[offset + 8 : offset + 8 + csize], usize, f"{path}: binary_compressed")
    at = 0
    for name, dt, shape in fields:  # field by field: all points' values of one field together
        n = p * int(np.prod(shape, dtype=np.int64))
        cols[name] = np.frombuffer(raw, dtype=dt, count=n, offset=at).reshape(p, *shape)
        at += n * dt.itemsize
    return cols, None


def read_pcd(
    path: str | Path, label_field: str | None = "label", nonfinite: NonFinite = "error"
) -> PointCloud:
    """Read a PCD file (v0.7; ``ascii``, ``binary`` or ``binary_compressed`` data).

    Args:
        path: the ``.pcd`` file.
        label_field: the field holding per-point labels (an integer field), or None for none.
        nonfinite: points with a NaN / infinite coordinate: ``"error"``, ``"drop"`` (PCL's
            organised clouds mark missing points with NaN) or ``"keep"``.

    Returns:
        A :class:`PointCloud`; ``meta`` holds ``format`` (``"pcd <data>"``), ``width``,
        ``height`` and ``viewpoint``.

    Raises:
        DataError: a bad header, an unsupported field type, fewer points than declared, a bad
            data row, non-finite coordinates (with ``nonfinite="error"``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such PCD file")
    data = path.read_bytes()
    lines, offset = header_lines(data, str(path), (b"data",))
    h = _header(lines, path)
    cols, data_lines = _columns(h, data, offset, path, len(lines))
    names, counts = h["names"], h["counts"]
    xyz = np.stack([cols[f"{a}#{names.index(a)}"] for a in "xyz"], axis=1).astype(np.float32)
    feats: list[np.ndarray] = []
    feat_names: list[str] = []
    labels = None
    for i, (name, count) in enumerate(zip(names, counts, strict=True)):
        v = cols[f"{name}#{i}"]
        if name in ("x", "y", "z", "_"):
            continue
        if name == label_field and count == 1:
            if h["types"][i] == "F" and (v != np.round(v)).any():
                raise DataError(f"{path}: field {name!r}: per-point labels must be integers")
            labels = v.astype(np.int64)
        elif name in ("rgb", "rgba") and h["sizes"][i] == 4 and count == 1:
            packed = v.view(np.uint32) if v.dtype.itemsize == 4 else v.astype(np.uint32)
            for ch, shift in zip(name, (16, 8, 0, 24), strict=False):
                feats.append(((packed >> shift) & 255).astype(np.float32))
                feat_names.append(ch)
        elif count == 1:
            feats.append(v.astype(np.float32))
            feat_names.append(name)
        else:
            feats.extend(v.astype(np.float32).T)
            feat_names.extend(f"{name}_{j}" for j in range(count))
    meta: dict[str, Any] = {"file": str(path), "format": f"pcd {h['data']}"}
    meta.update(width=h["width"], height=h["height"], version=h["version"])
    if h["viewpoint"] is not None:
        meta["viewpoint"] = h["viewpoint"]
    if data_lines is not None:
        meta["_data_lines"] = data_lines
    cloud = PointCloud(
        xyz,
        np.stack(feats, axis=1) if feats else None,
        tuple(feat_names),
        labels,
        meta=meta,
    )
    cloud = check_finite(cloud, nonfinite, str(path))
    cloud.meta.pop("_data_lines", None)
    return cloud
