"""PLY (Stanford polygon format): ``ascii``, ``binary_little_endian`` and ``binary_big_endian``.

The header declares elements (``element vertex 100``) with scalar properties
(``property float x``) or list properties (``property list uchar int vertex_indices``), then
the data of each element in order. The vertex element gives the points: x, y, z, every other
scalar property as a feature (normals, colour, intensity ...) and the label property as per-point
labels. The face element is read only to sample the surface (``num_points``); other elements
are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from visrep.data.pointcloud.io._text import TextRows, header_lines, text_rows
from visrep.data.pointcloud.io.types import Mesh, NonFinite, PointCloud, check_finite
from visrep.data.pointcloud.sampling import surface_samples, triangulate_fan
from visrep.errors import DataError

__all__ = ["read_ply", "read_ply_mesh"]

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
_FACE_LISTS = ("vertex_indices", "vertex_index")


@dataclass(frozen=True)
class _Prop:
    name: str
    dtype: str  # scalar type, or the item type of a list
    count_dtype: str | None = None  # list properties: the type of the length


@dataclass(frozen=True)
class _Element:
    name: str
    count: int
    props: tuple[_Prop, ...]
    line: int

    @property
    def lists(self) -> list[int]:
        return [i for i, p in enumerate(self.props) if p.count_dtype is not None]


def _header(lines: list[str], path: Path) -> tuple[str, list[_Element]]:
    if not lines or lines[0] != "ply":
        raise DataError(f"{path}: line 1: not a PLY file (expected 'ply', got {lines[0][:20]!r})")
    fmt = None
    elements: list[_Element] = []
    props: list[_Prop] = []
    for i, line in enumerate(lines[1:-1], 2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise DataError(
                    f"{path}: line {i}: unsupported PLY format {' '.join(words[1:])!r} (expected ascii, binary_little_endian or binary_big_endian)"
                )
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise DataError(f"{path}: line {i}: expected 'element NAME COUNT', got {line!r}")
            if elements:
                elements[-1] = _Element(
                    elements[-1].name, elements[-1].count, tuple(props), elements[-1].line
                )
            elements.append(_Element(words[1], int(words[2]), (), i))
            props = []
        elif words[0] == "property":
            if not elements:
                raise DataError(f"{path}: line {i}: property before any element")
            if len(words) == 5 and words[1] == "list":
                for t in words[2:4]:
                    if t not in _TYPES:
                        raise DataError(
                            f"{path}: line {i}: property {words[4]!r}: unsupported type {t!r}"
                        )
                if _TYPES[words[2]][0] == "f":
                    raise DataError(
                        f"{path}: line {i}: property {words[4]!r}: a list length must be an integer type"
                    )
                props.append(_Prop(words[4], _TYPES[words[3]], _TYPES[words[2]]))
            elif len(words) == 3:
                if words[1] not in _TYPES:
                    raise DataError(
                        f"{path}: line {i}: property {words[2]!r}: unsupported type {words[1]!r}"
                    )
                props.append(_Prop(words[2], _TYPES[words[1]]))
            else:
                raise DataError(
                    f"{path}: line {i}: expected 'property TYPE NAME' or 'property list TYPE TYPE NAME', got {line!r}"
                )
        else:
            raise DataError(f"{path}: line {i}: unknown PLY header entry {words[0]!r}")
    if elements:
        elements[-1] = _Element(
            elements[-1].name, elements[-1].count, tuple(props), elements[-1].line
        )
    if fmt is None:
        raise DataError(f"{path}: PLY header has no format line")
    return fmt, elements


# -- binary -------------------------------------------------------------------------------------
def _binary_element(
    data: bytes, offset: int, el: _Element, end: str, path: Path
) -> tuple[dict[str, np.ndarray], list[tuple[int, np.ndarray, np.ndarray]], int]:
    """Scalars ``{name: (count,)}``, the list property as groups ``[(length, (rows, length),
    row positions)]``, and the offset after the element."""
    lists = el.lists
    if len(lists) > 1:
        raise DataError(
            f"{path}: line {el.line}: element {el.name!r} has {len(lists)} list properties; only one is supported"
        )

    if not lists:
        rec = np.dtype([(p.name, end + p.dtype) for p in el.props])
        need = el.count * rec.itemsize
        if len(data) - offset < need:
            raise DataError(
                f"{path}: fewer {el.name} records than declared: element {el.name} {el.count} needs {need} bytes, the file has {len(data) - offset}"
            )
        arr = np.frombuffer(data, dtype=rec, count=el.count, offset=offset)
        return {p.name: arr[p.name] for p in el.props}, [], offset + need
    # one list property: every row's start by pointer doubling over the bytes, then gathers
    lp = el.props[lists[0]]
    sizes = [np.dtype(p.dtype).itemsize for p in el.props]
    before = sum(sizes[: lists[0]])  # bytes of the scalars before the list
    after = sum(sizes[lists[0] + 1 :])
    len_dtype = np.dtype(end + lp.count_dtype)
    item = np.dtype(end + lp.dtype)
    u = np.frombuffer(data, dtype=np.uint8)
    starts, lengths, pos = _list_rows(u, offset, el, before, len_dtype, item.itemsize, after, path)
    list_at = starts + before + len_dtype.itemsize
    scalars: dict[str, np.ndarray] = {}
    at = 0
    for p, size in zip(el.props, sizes, strict=True):
        if p.count_dtype is None:
            base = starts + at if at < before else list_at + lengths * item.itemsize + at - before
            scalars[p.name] = _gather(u, base, np.dtype(end + p.dtype), 1)[:, 0]
        at += size if p.count_dtype is None else 0
    groups = []
    for length in np.unique(lengths).tolist():
        sel = np.flatnonzero(lengths == length)
        groups.append((int(length), _gather(u, list_at[sel], item, int(length)), sel))
    return scalars, groups, pos


def _gather(u: np.ndarray, base: np.ndarray, dtype: np.dtype, count: int) -> np.ndarray:
    """``(R, count)`` values of ``dtype`` stored from byte ``base[r]`` of ``u`` on."""
    width = dtype.itemsize * count
    raw = u[base[:, None] + np.arange(width)] if width else np.zeros((len(base), 0), np.uint8)
    return np.ascontiguousarray(raw).view(dtype).reshape(len(base), count)


def _list_rows(
    u: np.ndarray,
    offset: int,
    el: _Element,
    before: int,
    len_dtype: np.dtype,
    item_size: int,
    after: int,
    path: Path,
    window: int = 1 << 22,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Byte offsets and list lengths of the ``el.count`` records of an element with one list
    property, from ``offset`` on, and the offset after them.

    A record's end depends on its list length, so the starts form a chain; as in
    :func:`~visrep.data.pointcloud.io.lzf.lzf_decompress`, every byte of a window is read as a
    possible record start (its length, hence the next start) and the chain from the window's
    first start is found by pointer doubling. Windows of ``window`` bytes bound the memory.
    """
    n = len(u)
    k = len_dtype.itemsize
    starts, lengths = [], []
    left, pos = el.count, offset
    while left:
        hi = min(n, pos + window)
        if pos >= hi:
            raise DataError(
                f"{path}: fewer {el.name} records than declared: element {el.name} {el.count}, data ends after {el.count - left}"
            )
        j = np.arange(pos, hi, dtype=np.int64)
        readable = j + before + k <= n
        length = _gather(u, np.where(readable, j + before, 0), len_dtype, 1)[:, 0].astype(np.int64)
        nxt = j + before + k + length * item_size + after
        valid = readable & (length >= 0) & (nxt <= n)
        w = len(j)
        rel = np.where(valid, np.minimum(nxt - pos, w), w + 1)
        jump = np.concatenate([rel, [w, w + 1]])
        reached = np.zeros(w + 2, dtype=bool)
        reached[0] = True
        while True:  # reached: the chain's first 2^s records; jump: 2^s records ahead
            reached[jump[reached]] = True
            jump = jump[jump]
            if jump[0] >= w:
                reached[jump[reached]] = True
                break
        chain = np.flatnonzero(reached[:w])[:left]
        bad = ~valid[chain]
        if bad.any():
            r = int(chain[np.argmax(bad)])
            done = el.count - left + int(np.argmax(bad))
            if readable[r] and length[r] < 0:
                raise DataError(
                    f"{path}: element {el.name!r} record {done}: negative list length {int(length[r])}"
                )
            why = (
                f" (its list of {int(length[r])} items needs {int(nxt[r] - j[r])} bytes, {n - int(j[r])} left)"
                if readable[r]
                else ""
            )
            raise DataError(
                f"{path}: fewer {el.name} records than declared: element {el.name} {el.count}, data ends in record {done}{why}"
            )
        starts.append(j[chain])
        lengths.append(length[chain])
        left -= len(chain)
        pos = int(nxt[chain[-1]])
    if not starts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), offset
    return np.concatenate(starts), np.concatenate(lengths), pos


# -- ascii --------------------------------------------------------------------------------------
def _cast(values: np.ndarray, dtype: str, lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Text values as ``dtype``; integer types refuse fractions and values out of their range
    (as the PCD reader does), naming the line.

    Args:
        values: ``(R,)`` or ``(R, L)`` float64 parsed values, a row per data line.
        lines: ``(R,)`` the rows' line numbers in the file.
    """
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        bad = (values != np.round(values)) | (values < info.min) | (values > info.max)
        if bad.any():
            per_row = bad.reshape(len(bad), -1)
            r = int(np.flatnonzero(per_row.any(1))[0])
            v = values.reshape(len(values), -1)[r][per_row[r]][0]
            raise DataError(
                f"{path}: line {int(lines[r])}: {what} ({dt.name}) got {v:g}, expected an "
                f"integer in {info.min}..{info.max}"
            )
    return values.astype(dt)


def _ascii_element(
    rows: TextRows, first: int, el: _Element, path: Path
) -> tuple[dict[str, np.ndarray], list[tuple[int, np.ndarray, np.ndarray]]]:
    sl = slice(first, first + el.count)
    if len(rows) < first + el.count:
        raise DataError(
            f"{path}: fewer {el.name} lines than declared: element {el.name} {el.count}, found {max(len(rows) - first, 0)}"
        )
    lists = el.lists
    if not lists:
        table = rows.table(sl, len(el.props), str(path), f"{el.name} line")
        lines = rows.line[sl]
        return {
            p.name: _cast(table[:, j], p.dtype, lines, path, f"property {p.name!r}")
            for j, p in enumerate(el.props)
        }, []
    if len(lists) > 1:
        raise DataError(
            f"{path}: line {el.line}: element {el.name!r} has {len(lists)} list properties; only one is supported"
        )
    at = lists[0]
    start, length = rows.start[sl], rows.length[sl]
    short = length <= at
    if short.any():
        r = int(np.flatnonzero(short)[0])
        raise DataError(
            f"{path}: line {int(rows.line[first + r])}: {el.name} line has {int(length[r])} values, expected at least {at + 1} (up to its list length)"
        )
    n_len = rows.values[start + at]
    bad = (n_len != np.round(n_len)) | (n_len < 0) | (length != len(el.props) + n_len)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: line {int(rows.line[first + r])}: {el.name} line has {int(length[r])} values, its list length {rows.values[start[r] + at]:g} needs {len(el.props) + max(int(n_len[r]), 0)}"
        )
    lines = rows.line[sl]
    lp = el.props[at]
    n_len = _cast(n_len, lp.count_dtype or "i8", lines, path, f"list length of {lp.name!r}")
    n_len = n_len.astype(np.int64)
    scalars = {}
    for j, p in enumerate(el.props):
        if j != at:  # scalars after the list are shifted by its length
            v = rows.values[start + j + (n_len if j > at else 0)]
            scalars[p.name] = _cast(v, p.dtype, lines, path, f"property {p.name!r}")
    groups = []
    for length_value in np.unique(n_len):
        sel = np.flatnonzero(n_len == length_value)
        cols = start[sel, None] + at + 1 + np.arange(length_value)
        items = _cast(rows.values[cols], lp.dtype, lines[sel], path, f"list {lp.name!r}")
        groups.append((int(length_value), items, sel))
    return scalars, groups


def _read(
    path: Path, need_faces: bool
) -> tuple[
    str,
    _Element,
    dict[str, np.ndarray],
    list[tuple[int, np.ndarray, np.ndarray]] | None,
    np.ndarray | None,
]:
    if not path.is_file():
        raise DataError(f"{path}: no such PLY file")
    data = path.read_bytes()
    lines, offset = header_lines(data, str(path), (b"end_header",))
    fmt, elements = _header(lines, path)
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise DataError(f"{path}: PLY header has no 'element vertex'")
    wanted = {"vertex", "face"} if need_faces else {"vertex"}
    last = max(names.index(n) for n in wanted if n in names)
    out: dict[str, tuple[dict[str, np.ndarray], list[tuple[int, np.ndarray, np.ndarray]]]] = {}
    vertex_lines = None
    if fmt == "ascii":
        rows = text_rows(data[offset:], str(path), len(lines) + 1)
        first = 0
        for el in elements[: last + 1]:
            if el.name in wanted:
                out[el.name] = _ascii_element(rows, first, el, path)
                if el.name == "vertex":
                    vertex_lines = rows.line[first : first + el.count]
            first += el.count
    else:
        pos = offset
        for el in elements[: last + 1]:
            scalars, groups, pos = _binary_element(data, pos, el, _FORMATS[fmt], path)
            if el.name in wanted:
                out[el.name] = (scalars, groups)
    vertex_el = elements[names.index("vertex")]
    if vertex_el.lists:
        raise DataError(
            f"{path}: line {vertex_el.line}: vertex list property {vertex_el.props[vertex_el.lists[0]].name!r} is not supported"
        )
    faces = None
    if need_faces and "face" in out:
        face_el = elements[names.index("face")]
        if not face_el.lists or face_el.props[face_el.lists[0]].name not in _FACE_LISTS:
            raise DataError(f"{path}: line {face_el.line}: element face has no vertex_indices list")
        faces = out["face"][1]
    return fmt, vertex_el, out["vertex"][0], faces, vertex_lines


def _mesh_faces(
    groups: list[tuple[int, np.ndarray, np.ndarray]], n_vertices: int, path: Path
) -> np.ndarray:
    polys = [(k, np.asarray(f, dtype=np.int64), o) for k, f, o in groups if len(f)]
    for k, f, _ in polys:
        if k < 3:
            raise DataError(f"{path}: element face: a face with {k} vertices (need at least 3)")
        if f.size and (f.min() < 0 or f.max() >= n_vertices):
            raise DataError(
                f"{path}: element face: vertex index {int(f.min() if f.min() < 0 else f.max())} out of range [0, {n_vertices})"
            )
    return triangulate_fan([f for _, f, _ in polys], [o for _, _, o in polys])


def read_ply_mesh(path: str | Path) -> Mesh:
    """The vertices and faces (fan-triangulated) of a PLY mesh."""
    path = Path(path)
    fmt, _, vertex, faces, _ = _read(path, need_faces=True)
    xyz = _xyz(vertex, path)
    if not faces:
        raise DataError(f"{path}: PLY file has no faces (element face)")
    tri = _mesh_faces(faces, len(xyz), path)
    return Mesh(
        xyz.astype(np.float64),
        tri,
        sum(len(f) for _, f, _ in faces),
        {"file": str(path), "format": f"ply {fmt}"},
    )


def _xyz(vertex: dict[str, np.ndarray], path: Path) -> np.ndarray:
    missing = [a for a in "xyz" if a not in vertex]
    if missing:
        raise DataError(
            f"{path}: element vertex has no {missing[0]!r} property (has {', '.join(vertex)})"
        )
    return np.stack([vertex[a] for a in "xyz"], axis=1).astype(np.float64)


def read_ply(
    path: str | Path,
    label_field: str | None = "label",
    num_points: int | None = None,
    generator: torch.Generator | None = None,
    nonfinite: NonFinite = "error",
) -> PointCloud:
    """Read the vertices of a PLY file as a point cloud, or sample its surface.

    Args:
        path: the ``.ply`` file (ascii, binary little- or big-endian).
        label_field: the vertex property holding per-point labels, or None.
        num_points: None: the vertices are the points; a number: that many points sampled on
            the faces (area-weighted, uniform barycentric; features interpolated, labels of the
            nearest corner), as for OFF meshes.
        generator: the random generator of the surface sampling (None: torch's global one).
        nonfinite: points with a NaN / infinite coordinate: ``"error"``, ``"drop"`` or ``"keep"``.

    Raises:
        DataError: a bad header, an unsupported property type, fewer records than declared,
            non-finite coordinates, no faces to sample.
    """
    path = Path(path)
    fmt, _, vertex, faces, lines = _read(path, need_faces=num_points is not None)
    xyz = _xyz(vertex, path)
    feat_names = [k for k in vertex if k not in ("x", "y", "z") and k != label_field]
    feats = np.stack([vertex[k].astype(np.float32) for k in feat_names], 1) if feat_names else None
    labels = None
    if label_field in vertex:
        v = vertex[label_field]
        if v.dtype.kind == "f" and (v != np.round(v)).any():
            raise DataError(f"{path}: property {label_field!r}: per-point labels must be integers")
        labels = v.astype(np.int64)
    meta: dict = {"file": str(path), "format": f"ply {fmt}"}
    if lines is not None:
        meta["_data_lines"] = lines
    cloud = PointCloud(xyz, feats, tuple(feat_names), labels, meta=meta)
    if num_points is None:
        cloud = check_finite(cloud, nonfinite, str(path))
    else:
        if nonfinite == "error":
            check_finite(cloud, nonfinite, str(path))  # name the vertex line
        if not faces:
            raise DataError(
                f"{path}: num_points={num_points} samples the surface, but the file has no faces"
            )
        tri = _mesh_faces(faces, len(xyz), path)
        fid, w = (t.numpy() for t in surface_samples(xyz, tri, num_points, generator, str(path)))
        corners = tri[fid]  # (n, 3) vertex ids of each sample's triangle
        pts = np.einsum("nk,nkd->nd", w, xyz[corners])
        if labels is not None:  # the label of the corner nearest to the sample
            near = np.linalg.norm(xyz[corners] - pts[:, None], axis=2).argmin(1)
            labels = labels[corners[np.arange(len(corners)), near]]
        sampled = PointCloud(
            pts,
            None
            if feats is None
            else np.einsum("nk,nkd->nd", w, feats[corners].astype(np.float64)),
            tuple(feat_names),
            labels,
            meta={
                "file": str(path),
                "format": f"ply {fmt}",
                "sampled_from": f"{len(tri)} triangles",
            },
        )
        cloud = check_finite(sampled, "drop" if nonfinite == "drop" else "keep", str(path))
    cloud.meta.pop("_data_lines", None)
    return cloud
