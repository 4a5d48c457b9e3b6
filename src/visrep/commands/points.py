"""``visrep points info|show``: point-cloud files from the command line.

* ``info FILE``: format, point count, fields, bounding box, centroid, non-finite points, label
  counts; for an OFF mesh its vertices, faces and surface area; for a ModelNet-layout ``.npz``
  the clouds per split and class (``--index`` picks one cloud).
* ``show FILE -o out.png``: a 3-D scatter with equal axes, coloured by per-point label, by a
  coordinate (``z``: height) or by a feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visrep.commands._common import Command, run_subcommands
from visrep.data.pointcloud.io import (
    READERS,
    PointCloud,
    describe_npz,
    npz_splits,
    point_suffix,
    read_off,
    read_points,
)
from visrep.errors import ConfigError, DataError
from visrep.plots.pointcloud import plot_point_cloud

SUFFIXES = ", ".join(READERS)


def _options(
    path: Path,
    index: int | None,
    split: str | None,
    columns: list[str | int] | None,
    num_points: int | None,
    seed: int,
) -> dict[str, Any]:
    """The reader options that apply to ``path``'s format; the others must not be given."""
    suffix = point_suffix(path)
    if suffix not in READERS:
        raise DataError(
            f"{path}: unknown point-cloud format {path.suffix!r}, expected one of {SUFFIXES}"
        )
    opts: dict[str, Any] = {"nonfinite": "keep"}
    given = {"index": index, "split": split, "columns": columns, "num_points": num_points}
    applies = {
        ".npz": ("index", "split", "columns"),
        ".npy": ("index", "columns"),
        ".bin": ("columns",),
        ".off": ("num_points",),
        ".ply": ("num_points",),
    }.get(suffix, ())
    for name, value in given.items():
        if value is None:
            continue
        if name not in applies:
            raise ConfigError(f"--{name} does not apply to {suffix} files")
        opts[name] = value
    if "columns" in opts:
        if suffix == ".bin" and len(columns) == 1 and str(columns[0]).isdigit():
            opts["columns"] = int(columns[0])  # --columns 6: a number of float32 columns
        else:
            opts["columns"] = [str(c) for c in columns]
    if "num_points" in opts:
        if num_points < 1:
            raise ConfigError(f"--num_points must be >= 1, got {num_points}")
        opts["generator"] = torch.Generator().manual_seed(seed)
    return opts


def _refuse_folder(file: str) -> Path:
    path = Path(file)
    if path.is_dir():
        raise DataError(f"{file} is a folder; expected a point-cloud file ({SUFFIXES})")
    if not path.is_file():
        raise DataError(f"{file}: no such file")
    return path


def _vec(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.6g}" for x in v) + ")"


def _print(lines: dict[str, Any]) -> None:
    width = max(map(len, lines))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in lines.items()))


def _cloud_lines(path: Path, cloud: PointCloud) -> dict[str, Any]:
    s = cloud.summary()
    lines: dict[str, Any] = {"file": str(path), "format": s["format"], "points": f"{s['points']:,}"}
    lines["fields"] = " ".join(s["fields"])
    if "bbox_min" in s:
        lines["bbox min"] = _vec(s["bbox_min"])
        lines["bbox max"] = _vec(s["bbox_max"])
        lines["extent"] = _vec(np.subtract(s["bbox_max"], s["bbox_min"]))
        lines["centroid"] = _vec(s["centroid"])
    bad = s["non_finite_points"]
    lines["finite"] = (
        "yes, all coordinates" if not bad else f"NO: {bad:,} points with NaN / inf coordinates"
    )
    if "point_labels" in s:
        counts = s["point_labels"]
        lines["point labels"] = ", ".join(f"{k}: {v:,}" for k, v in list(counts.items())[:20]) + (
            f" ... ({len(counts)} labels)" if len(counts) > 20 else ""
        )
    if cloud.label is not None:
        name = cloud.meta.get("class_name")
        lines["class"] = f"{cloud.label}" + (f" ({name})" if name else "")
    if "name" in cloud.meta:
        lines["source"] = cloud.meta["name"]
    return lines


def info(
    file: str,
    *,
    index: int | None = None,
    split: str | None = None,
    columns: list[str | int] | None = None,
) -> int:
    """Summary of a point-cloud file: format, points, fields, bounding box, centroid, finite.

    Args:
        file: a point-cloud file (.pcd, .ply, .off, .bin, .npy, .npz).
        index: which cloud of a stacked .npy or of a data-set .npz (default for a data set: a
            summary of its splits and classes).
        split: the split of a data-set .npz (default: train).
        columns: column names of a .bin / .npy (x,y,z first), or a .bin's column count.
    """
    path = _refuse_folder(file)
    suffix = point_suffix(path)
    if suffix == ".npz" and index is None:
        with np.load(path, allow_pickle=False) as z:
            is_set = bool(npz_splits(list(z.files)))
        if is_set:
            d = describe_npz(path)
            lines: dict[str, Any] = {"file": str(path), "format": d["format"]}
            lines["classes"] = f"{len(d['classes'])}: {' '.join(d['classes'])}"
            for s, v in d["splits"].items():
                shape = " x ".join(map(str, v["shape"]))
                bad = (
                    f", {v['non_finite_clouds']} with non-finite points"
                    if v["non_finite_clouds"]
                    else ""
                )
                lines[s] = f"{v['clouds']:,} clouds ({shape} {v['dtype']}{bad})"
                lines[f"{s} per class"] = ", ".join(f"{k} {n}" for k, n in v["per_class"].items())
            _print(lines)
            return 0
    if suffix == ".off":
        _options(path, index, split, columns, None, 0)
        mesh = read_off(path)
        v = mesh.vertices
        lines = {"file": str(path), "format": mesh.meta["format"], "vertices": f"{len(v):,}"}
        lines["faces"] = f"{mesh.polygons:,} ({len(mesh.faces):,} triangles)"
        lines["surface area"] = f"{mesh.area:.6g}"
        lines["bbox min"], lines["bbox max"] = _vec(v.min(0)), _vec(v.max(0))
        lines["centroid (vertices)"] = _vec(v.mean(0))
        lines["finite"] = "yes, all coordinates"  # read_off refuses non-finite vertices
        _print(lines)
        return 0
    cloud = read_points(path, **_options(path, index, split, columns, None, 0))
    _print(_cloud_lines(path, cloud))
    return 0


def show(
    file: str,
    *,
    out: str,
    index: int | None = None,
    split: str | None = None,
    color: str | None = None,
    columns: list[str | int] | None = None,
    num_points: int | None = None,
    seed: int = 0,
) -> int:
    """Draw a point cloud as a 3-D scatter (equal axes) to a .png.

    Args:
        file: a point-cloud file (.pcd, .ply, .off, .bin, .npy, .npz).
        out: the .png to write; -o for short.
        index: which cloud of a stacked .npy or of a data-set .npz (default 0).
        split: the split of a data-set .npz (default: train).
        color: label (per-point labels), x, y, z (height) or a feature name (default: label
            where the file has per-point labels, else z).
        columns: column names of a .bin / .npy (x,y,z first), or a .bin's column count.
        num_points: points sampled on the surface of an .off mesh (default 2048) or a .ply mesh
            (default: its vertices).
        seed: seed of the surface sampling.
    """
    target = Path(out)
    if target.suffix.lower() != ".png":
        raise ConfigError(f"-o {out}: expected a .png file")
    path = _refuse_folder(file)
    suffix = point_suffix(path)
    if suffix == ".off" and num_points is None:
        num_points = 2048
    if suffix == ".npz" and index is None:
        with np.load(path, allow_pickle=False) as z:
            index = 0 if npz_splits(list(z.files)) else None
    cloud = read_points(path, **_options(path, index, split, columns, num_points, seed))
    finite = np.isfinite(cloud.xyz).all(1)
    if not finite.any():
        raise DataError(f"{path}: no point has finite coordinates")
    cloud = cloud.select(finite) if not finite.all() else cloud
    color = color or ("label" if cloud.labels is not None else "z")
    title = path.name + (f" [{cloud.meta['class_name']}]" if "class_name" in cloud.meta else "")
    kwargs: dict[str, Any] = {}
    if color == "label":
        if cloud.labels is None:
            raise ConfigError(
                f"--color label: {path} has no per-point labels (fields: {' '.join(cloud.fields)})"
            )
        kwargs["labels"] = cloud.labels
    elif color in cloud.fields:
        kwargs["colors"] = cloud.points[:, cloud.fields.index(color)]
        kwargs["color_label"] = "height (z)" if color == "z" else color
    else:
        raise ConfigError(
            f"--color must be label or one of {', '.join(cloud.fields)}, got {color!r}"
        )
    plot_point_cloud(cloud.xyz, target, title=f"{title}: {len(cloud):,} points", **kwargs)
    print(f"{target}: {len(cloud):,} points coloured by {color}")
    return 0


COMMANDS = {
    "info": Command(info),
    "show": Command(show, aliases={"-o": "--out", "--output": "--out"}),
}


def main(argv: Sequence[str]) -> int:
    """Run ``visrep points ...``; returns the exit code."""
    return run_subcommands(COMMANDS, "visrep points", "point-cloud files: info, show", argv)
