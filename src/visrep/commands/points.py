"""``visrep points info|show|label-boxes|seg-baseline``: point-cloud files from the command line.

* ``info FILE``: format, point count, fields, bounding box, centroid, non-finite points, label
  counts; for an OFF mesh its vertices, faces and surface area; for a ModelNet-layout ``.npz``
  the clouds per split and class (``--index`` picks one cloud).
* ``show FILE -o out.png``: a 3-D scatter with equal axes, coloured by per-point label, by a
  coordinate (``z``: height) or by a feature.
* ``label-boxes SCAN INFO -o out.npz``: a LiDAR scan labelled per point from the 3-D boxes of
  its mmdetection3d info pickle (KITTI or nuScenes), the file
  :class:`~visrep.data.pointcloud.PointSegmentationDataModule` reads.
* ``seg-baseline FILE --by azimuth --test [-45,-20]``: non-learned object / background
  baselines on the held-out region of a labelled scan (all background; a height band above
  the fitted ground plane).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visrep.commands._common import Command, run_subcommands
from visrep.data.pointcloud.boxes import label_points_in_boxes
from visrep.data.pointcloud.ground import (
    confusion_iou,
    fit_ground_plane,
    fit_height_band,
    height_above,
)
from visrep.data.pointcloud.io import (
    READERS,
    NpzArchive,
    PointCloud,
    describe_npz,
    npz_splits,
    point_suffix,
    read_off,
    read_points,
)
from visrep.data.pointcloud.mmdet3d_info import read_scene_boxes
from visrep.data.pointcloud.segmentation import RegionSplit, read_labelled_cloud
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
        with NpzArchive(path) as z:
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
        with NpzArchive(path) as z:
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
        if suffix == ".npz":  # label-boxes and predict write the class names beside the labels
            with NpzArchive(path) as z:
                if "class_names" in z.files:
                    kwargs["class_names"] = [str(n) for n in z["class_names"]]
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


def label_boxes(
    scan: str,
    info: str,
    *,
    out: str,
    sample: int = 0,
    classes: list[str] | None = None,
    mode: str = "classes",
    columns: list[str | int] | None = None,
) -> int:
    """Label every point of a LiDAR scan by the 3-D box it lies in (an .npz for segmentation).

    The boxes come from an mmdetection3d info pickle (KITTI camera boxes or nuScenes LiDAR
    boxes), read by an unpickler that only allows numpy's reconstruction globals. Prints the
    points found in each box beside the info's num_lidar_pts.

    Args:
        scan: the scan (.bin: KITTI 4 or nuScenes 5 float32 columns; any point-cloud file).
        info: the mmdetection3d info .pkl holding the scan's boxes.
        out: the .npz to write (points, point_labels, feature_names, class_names); -o for short.
        sample: which entry of the info's data_list.
        classes: dataset classes to keep, in label order (default: Car,Pedestrian,Cyclist for
            KITTI, every class for nuScenes); points of other boxes get the ignore label 255.
        mode: classes (background, then one label per kept class) or object (background /
            object).
        columns: column names of a .bin scan (x,y,z first), or its column count.
    """
    target = Path(out)
    if target.suffix.lower() != ".npz":
        raise ConfigError(f"-o {out}: expected a .npz file")
    if mode not in ("classes", "object"):
        raise ConfigError(f"--mode must be classes or object, got {mode!r}")
    path = _refuse_folder(scan)
    cloud = read_points(path, **_options(path, None, None, columns, None, 0))
    scene = read_scene_boxes(info, sample)
    if classes is None and scene.dataset == "kitti":
        classes = ["Car", "Pedestrian", "Cyclist"]  # the classes KITTI's benchmark evaluates
    result = label_points_in_boxes(cloud.xyz, scene, classes, mode)  # type: ignore[arg-type]
    np.savez(
        target,
        points=cloud.points,
        point_labels=result.labels,
        feature_names=np.array(cloud.feature_names, dtype=str),
        class_names=np.array(result.class_names),
    )
    if scene.lidar_path and Path(scene.lidar_path).name != path.name:
        print(f"note: the info names the scan {scene.lidar_path!r}, labelled {path.name!r}")
    for i in range(len(scene.boxes)):
        label = int(result.box_labels[i])
        name = result.class_names[label] if label < len(result.class_names) else "ignored"
        given = int(scene.num_lidar_pts[i])
        print(
            f"box {i} ({scene.class_names[scene.labels[i]] if scene.labels[i] >= 0 else '-'} -> "
            f"{name}): {int(result.box_points[i])} points"
            + (f" (info num_lidar_pts {given})" if given >= 0 else "")
        )
    counts = np.bincount(result.labels[result.labels < len(result.class_names)])
    ignored = int((result.labels == result.ignore_index).sum())
    summary = ", ".join(f"{n} {c:,}" for n, c in zip(result.class_names, counts, strict=False))
    print(
        f"{target}: {len(cloud):,} points ({summary}"
        + (f", ignored {ignored:,})" if ignored else ")")
    )
    return 0


def seg_baseline(
    file: str,
    *,
    by: str = "azimuth",
    test: list[float],
    val: list[float] | None = None,
    plane: str = "scan",
    threshold: float = 0.15,
    seed: int = 0,
) -> int:
    """Object / background baselines on the held-out region of a labelled scan.

    The regions are PointSegmentationDataModule's (data.region): test points have their ``by``
    value in [test[0], test[1]), validation points in val, training points the rest. Two
    baselines are scored on the test points, object = any class but background (label 0):
    all background, and a height band: a point is an object when its height above the ground
    plane (RANSAC, no labels) lies in (bottom, top], top the highest training object point and
    bottom the value that maximises the training points' object IoU.

    Args:
        file: a labelled scan (the .npz of label-boxes, or any file the data module reads).
        by: x, y, z, range or azimuth (degrees, 0 forward, positive left).
        test: the test interval [low, high).
        val: the validation interval (its points are neither trained on nor tested).
        plane: scan (one plane fit on all points of the scan) or region (the training and the
            test region each fit their own).
        threshold: RANSAC inlier distance of the ground plane (m).
        seed: RANSAC seed.
    """
    if len(test) != 2 or (val is not None and len(val) != 2):
        raise ConfigError("--test and --val take two numbers: [low, high)")
    region = RegionSplit(by, tuple(test), tuple(val) if val is not None else None)  # type: ignore[arg-type]
    points, _, labels = read_labelled_cloud(file)
    masks = region.masks(points[:, :3])
    valid = labels != 255
    obj = (labels > 0) & valid
    lines: dict[str, Any] = {"file": file}
    for s in ("train", "val", "test"):
        lines[f"{s} points"] = f"{int(masks[s].sum()):,} ({int((masks[s] & obj).sum()):,} object)"
    tr, te = masks["train"] & valid, masks["test"] & valid
    if not te.any() or not (tr & obj).any():
        raise DataError(f"{file}: the test region has no points or the training region no object")
    if plane not in ("scan", "region"):
        raise ConfigError(f"--plane must be scan or region, got {plane!r}")
    if plane == "scan":
        plane_tr = plane_te = fit_ground_plane(points, threshold, seed=seed)
    else:
        plane_tr = fit_ground_plane(points[masks["train"]], threshold, seed=seed)
        plane_te = fit_ground_plane(points[masks["test"]], threshold, seed=seed)
    h_tr = height_above(points[tr], plane_tr)
    top = float(h_tr[obj[tr]].max())
    bottom = fit_height_band(h_tr, obj[tr], top)
    h_te = height_above(points[te], plane_te)
    truth = obj[te].astype(np.int64)
    for name, pred in (
        ("all background", np.zeros_like(truth)),
        (
            f"height band ({bottom:.2f}, {top:.2f}] m",
            ((h_te > bottom) & (h_te <= top)).astype(np.int64),
        ),
    ):
        iou = confusion_iou(pred, truth, 2)
        miou = float(np.nanmean(iou))
        acc = float((pred == truth).mean())
        lines[name] = (
            f"background IoU {iou[0]:.4f}, object IoU {np.nan_to_num(iou[1]):.4f}, "
            f"mIoU {miou:.4f}, point accuracy {acc:.4f}"
        )
    _print(lines)
    return 0


COMMANDS = {
    "info": Command(info),
    "show": Command(show, aliases={"-o": "--out", "--output": "--out"}),
    "label-boxes": Command(label_boxes, aliases={"-o": "--out", "--output": "--out"}),
    "seg-baseline": Command(seg_baseline),
}


def main(argv: Sequence[str]) -> int:
    """Run ``visrep points ...``; returns the exit code."""
    return run_subcommands(
        COMMANDS, "visrep points", "point-cloud files: info, show, label-boxes, seg-baseline", argv
    )
