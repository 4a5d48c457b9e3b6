"""``visrep features IMAGE --ckpt RUN_OR_CKPT [--num 1000] [--out DIR]``: local features of an
image by a trained LIFT run (score map -> non-maximum suppression -> top-k keypoints ->
orientations -> descriptors), or by OpenCV's SIFT / ORB (``--method sift|orb``, the baselines),
written as an ``.npz`` and a drawing (PNG)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from visrep.analysis.runs import load_run
from visrep.commands._common import Command, Which, check_positive, resolve_device, run_command
from visrep.data.correspondence.sift import opencv
from visrep.errors import ConfigError, DataError
from visrep.models.correspondence.lift import LIFT, lift_features
from visrep.models.correspondence.repeatability import opencv_features
from visrep.plots.features import plot_features
from visrep.runs import atomic_write_bytes


def features(
    image: str,
    *,
    ckpt: str | None = None,
    method: Literal["lift", "sift", "orb"] = "lift",
    num: int = 1000,
    out: str | None = None,
    nms_radius: int | None = None,
    device: str = "cpu",
    which: Which = "best",
) -> int:
    """Detect and describe the keypoints of an image: LIFT (a run) or OpenCV's SIFT / ORB.

    Writes ``OUT/<image stem>_<method>.npz`` with ``keypoints`` (float32 ``(N, 5)``: x, y in
    pixels, scale (pixels), angle (radians, x right / y down), score; strongest first),
    ``descriptors`` (``(N, D)``: float32 for LIFT and SIFT, uint8 bits for ORB), ``method``,
    ``image`` and ``size`` (w, h), and ``OUT/<image stem>_<method>.png`` (the keypoints drawn).

    Args:
        image: the image file (read as grey).
        ckpt: a LIFT run directory or checkpoint (needed by --method lift).
        method: lift (the run), sift or orb (OpenCV's, the baselines).
        num: keypoints at most.
        out: the folder to write into (default: the image's folder).
        nms_radius: LIFT's non-maximum suppression radius (default: the run's).
        device: auto, cpu, cuda or cuda:N (LIFT).
        which: the checkpoint of the run (best or last).
    """
    check_positive(num=num, nms_radius=nms_radius)
    cv2 = opencv()
    src = Path(image)
    if not src.is_file():
        raise DataError(f"{image}: no such image file")
    grey = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise DataError(f"{image}: not an image OpenCV reads")
    if method == "lift":
        if ckpt is None:
            raise ConfigError("--method lift needs --ckpt RUN_OR_CKPT (a LIFT run)")
        task = load_run(ckpt, which, with_data=False).task
        net = getattr(task, "net", None)
        if not isinstance(net, LIFT):
            raise ConfigError(f"--ckpt {ckpt}: not a LIFT run (its task is {type(task).__name__})")
        radius = nms_radius if nms_radius is not None else int(task.hparams.get("nms_radius", 4))
        kp, desc = lift_features(net.to(resolve_device(device)), grey, num, radius)
    else:
        kp, desc = opencv_features(grey, method, num)
    folder = Path(out) if out is not None else src.parent
    stem = f"{src.stem}_{method}"
    buf = io.BytesIO()
    np.savez(buf, keypoints=kp.astype(np.float32), descriptors=desc, method=np.asarray(method),
             image=np.asarray(str(src)), size=np.asarray([grey.shape[1], grey.shape[0]]))  # fmt: skip
    target = folder / f"{stem}.npz"
    atomic_write_bytes(target, lambda f: f.write(buf.getvalue()))
    png = plot_features(
        grey, kp, folder / f"{stem}.png", f"{src.name}: {len(kp)} {method} keypoints"
    )
    print(
        f"wrote {target} ({len(kp)} keypoints, descriptors {desc.shape[1] if desc.ndim == 2 else 0}-D) and {png}"
    )
    return 0


def main(argv: Sequence[str]) -> int:
    """Run ``visrep features ...``; returns the exit code."""
    return run_command(Command(features, aliases={"-o": "--out"}), "visrep features", argv)
