"""Seeded fuzz of the image, label and checkpoint readers with corrupt versions of tiny files.

Each reader gets a sample file written here, then truncated, zero-length, bit-flipped,
overwritten, random and foreign-format (wrong extension) versions of it, plus hand-made
"semantic" mutants (negative labels, NaN images, an empty test split, overflowing IDX
dimensions). Every case must end in a :class:`VisrepError` whose one-line message names the
file, or in a read that keeps the documented invariants. :func:`mutants` and :func:`run_cases`
are shared with ``tests/events/test_event_reader_fuzz.py``.
"""

from __future__ import annotations

import gzip
import io
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import write_idx
from visrep.data import IDXDataModule, ImageFolderDataModule, NpzDataModule, load_image, read_idx
from visrep.data.base import LoaderConfig, SplitConfig
from visrep.errors import VisrepError

try:  # the checkpoint reader may move to visrep.runs
    from visrep.runs import load_checkpoint
except ImportError:
    from visrep.trainer.checkpoint_io import load_checkpoint

Check = Callable[[object], str | None]
SLOW_S = 5.0  # a case slower than this on a tiny file is reported as bad


def mutants(data: bytes, rng: np.random.Generator, n: int = 24) -> list[tuple[str, bytes]]:
    """About ``n`` corrupt versions of ``data``: empty, truncated, bit-flipped, overwritten, random.

    Half of the bit flips and overwrites hit the first 64 bytes, where the headers are.
    """
    size = len(data)
    out = [("empty", b"")]
    cuts = {1, min(8, size - 1), size // 2, size - 1, *rng.integers(1, size, n // 6).tolist()}
    out += [(f"trunc{c}", data[:c]) for c in sorted(cuts)]
    for i in range(n // 3):
        b = bytearray(data)
        hi = min(size, 64) if i % 2 else size
        for pos in rng.integers(0, hi, rng.integers(1, 4)):
            b[pos] ^= 1 << int(rng.integers(0, 8))
        out.append((f"flip{i}", bytes(b)))
    for i in range(n // 4):
        b = bytearray(data)
        start = int(rng.integers(0, min(size, 64) if i % 2 else size))
        span = len(b[start : start + int(rng.integers(1, 17))])
        b[start : start + span] = rng.bytes(span)
        out.append((f"over{i}", bytes(b)))
    out += [(f"random{i}", rng.bytes(size)) for i in range(2)]
    return out


def outcome(path: Path, read: Callable[[Path], object], check: Check) -> tuple[str, str | None]:
    """``("refused" | "read", None)`` if reading ``path`` ends well, else ``("bad", why)``."""
    try:
        result = read(path)
    except VisrepError as err:
        msg = str(err)
        if path.name not in msg:
            return "bad", f"{type(err).__name__} not naming the file: {msg[:160]}"
        if "\n" in msg:
            return "bad", f"{type(err).__name__} on several lines: {msg[:160]!r}"
        return "refused", None
    except Exception as err:  # any other type is what this test hunts
        return "bad", f"{type(err).__name__}: {str(err)[:160]}"
    try:
        problem = check(result)
    except Exception as err:  # a read too odd for the checks is a wrong read too
        problem = f"{type(err).__name__} in the checks: {str(err)[:160]}"
    return ("read", None) if problem is None else ("bad", f"wrong read: {problem}")


def run_cases(
    name: str,
    cases: list[tuple[str, Callable[[], Path]]],
    read: Callable[[Path], object],
    check: Check,
) -> None:
    """Run every case (``make`` writes the file and returns its path); fail listing the bad ones."""
    bad, counts = [], {"read": 0, "refused": 0, "bad": 0}
    for case, make in cases:
        path = make()
        start = time.perf_counter()
        kind, problem = outcome(path, read, check)
        seconds = time.perf_counter() - start
        if kind != "bad" and seconds > SLOW_S:  # tiny inputs: this long is a near-hang
            kind, problem = "bad", f"took {seconds:.1f} s"
        counts[kind] += 1
        if problem is not None:
            bad.append(f"{case}: {problem}")
    print(f"\n{name}: {len(cases)} mutants, " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    assert not bad, f"{name}: {len(bad)} of {len(cases)} bad cases:\n" + "\n".join(bad)


def file_cases(
    folder: Path, name: str, items: list[tuple[str, bytes]]
) -> list[tuple[str, Callable[[], Path]]]:
    """Cases writing each ``(case, content)`` to ``folder/<case>-<name>`` (``<case>`` if no name)."""
    folder.mkdir(parents=True, exist_ok=True)

    def writer(case: str, content: bytes) -> Callable[[], Path]:
        def make() -> Path:
            path = folder / (f"{case}-{name}" if name else case)
            path.write_bytes(content)
            return path

        return make

    return [(case, writer(case, content)) for case, content in items]


def byte_cases(
    folder: Path, name: str, data: bytes, seed: int, foreign: dict[str, bytes]
) -> list[tuple[str, Callable[[], Path]]]:
    """The mutants of ``data`` and the foreign formats' bytes, as ``folder/<case>-<name>``."""
    items = mutants(data, np.random.default_rng(seed))
    return file_cases(folder, name, items + [(f"as-{k}", v) for k, v in foreign.items()])


# -- sample files ---------------------------------------------------------------------------------
def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    head = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


def png_bytes(fmt: str = "PNG") -> bytes:
    img = np.random.default_rng(5).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def npz_bytes(compress: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def ckpt_bytes() -> bytes:
    buf = io.BytesIO()
    sd = {"w": torch.arange(6.0).reshape(3, 2), "b": torch.zeros(2)}
    torch.save({"state_dict": sd, "hyper_parameters": {"lr": 0.1}, "epoch": 1}, buf)
    return buf.getvalue()


IMAGES = np.random.default_rng(0).integers(0, 255, (6, 4, 4), dtype=np.uint8)
LABELS = (np.arange(6) % 2).astype(np.uint8)


def foreign_formats() -> dict[str, bytes]:
    """One small file of every format, for the wrong-extension cases."""
    return {
        "idx": idx_bytes(IMAGES),
        "idxgz": gzip.compress(idx_bytes(IMAGES)),
        "npz": npz_bytes(x=IMAGES, y=LABELS),
        "png": png_bytes(),
        "jpg": png_bytes("JPEG"),
        "ckpt": ckpt_bytes()[:4096],
        "text": b"% evt 2.0\nhello\n",
    }


def others(skip: str) -> dict[str, bytes]:
    return {k: v for k, v in foreign_formats().items() if k != skip}


# -- checks of a correct read ---------------------------------------------------------------------
IDX_TYPES = {np.dtype(t) for t in (">u1", ">i1", ">i2", ">i4", ">f4", ">f8")}


def check_idx(a: object) -> str | None:
    if not isinstance(a, np.ndarray) or a.dtype not in IDX_TYPES or a.ndim < 1:
        return f"not an IDX array: {type(a).__name__} {getattr(a, 'dtype', '')}"
    return None


def check_image(x: object, channels: int = 3) -> str | None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 3:
        return f"not a float (C, H, W) tensor: {getattr(x, 'shape', type(x))}"
    if x.shape[0] != channels or not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        return f"shape {tuple(x.shape)} or values outside [0, 1]"
    return None


def check_module(dm: object) -> str | None:
    """A set-up image DataModule: finite images in [0, 1], labels in [0, num_classes)."""
    for split in (dm.train_set, dm.val_set, dm.test_set):
        if split is None or len(split) == 0:
            continue
        sample = split[len(split) - 1]
        x, y = sample["image"], sample["label"]
        problem = check_image(x, dm.image_shape[0])
        if problem or tuple(x.shape) != dm.image_shape:
            return problem or f"image {tuple(x.shape)} != {dm.image_shape}"
        if not 0 <= y < dm.num_classes:
            return f"label {y} outside [0, {dm.num_classes})"
    if not (np.isfinite(dm.mean).all() and np.isfinite(dm.std).all()):
        return f"statistics not finite: {dm.mean}, {dm.std}"
    return None


def check_ckpt(c: object) -> str | None:
    return None if isinstance(c, dict) and "state_dict" in c else f"not a checkpoint: {type(c)}"


# -- readers --------------------------------------------------------------------------------------
def idx_semantic(folder: Path) -> list[tuple[str, Callable[[], Path]]]:
    """Headers a byte fuzzer rarely builds: too many dimensions, overflowing products."""
    one = bytes([0, 0, 8, 255]) + struct.pack(">255I", *([1] * 255)) + b"\x07"
    wrap = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 2**31, 4)  # product 2**64 -> 0
    big = bytes([0, 0, 8, 2]) + struct.pack(">2I", 2**32 - 1, 2**32 - 1) + bytes(16)
    ten = bytes([0, 0, 8, 3]) + struct.pack(">3I", 10**6, 10**6, 28) + bytes(16)
    items = [("ndim255", one), ("wrap64", wrap), ("dims-huge", big), ("dims-past-size", ten)]
    return file_cases(folder, "images-idx3-ubyte", items)


def test_fuzz_read_idx(tmp_path: Path) -> None:
    cases = byte_cases(tmp_path, "images-idx3-ubyte", idx_bytes(IMAGES), 1, others("idx"))
    cases += idx_semantic(tmp_path / "semantic")
    run_cases("read_idx", cases, read_idx, check_idx)


def test_fuzz_read_idx_gz(tmp_path: Path) -> None:
    data = gzip.compress(idx_bytes(IMAGES), mtime=0)
    cases = byte_cases(tmp_path, "images-idx3-ubyte.gz", data, 2, others("idxgz"))
    inner = mutants(idx_bytes(IMAGES), np.random.default_rng(3), 12)  # valid gzip, bad IDX
    inner = [(f"inner-{c}", gzip.compress(b, mtime=0)) for c, b in inner]
    cases += file_cases(tmp_path / "inner", "images-idx3-ubyte.gz", inner)
    run_cases("read_idx .gz", cases, read_idx, check_idx)


def _idx_folder(root: Path, test_images: bytes | None = None, test_labels: bytes | None = None):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    for split, n in (("train", 12), ("t10k", 6)):
        write_idx(root / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 4, 4)))
        write_idx(root / f"{split}-labels-idx1-ubyte", np.arange(n) % 3)
    if test_images is not None:
        (root / "t10k-images-idx3-ubyte").write_bytes(test_images)
    if test_labels is not None:
        (root / "t10k-labels-idx1-ubyte").write_bytes(test_labels)
    return root


def idx_module(path: Path) -> IDXDataModule:
    dm = IDXDataModule(
        root=str(path.parent),
        loader=LoaderConfig(batch_size=4),
        split=SplitConfig(val_fraction=0.25),
    )
    dm.setup()
    return dm


def test_fuzz_idx_datamodule(tmp_path: Path) -> None:
    """One mutated file (test images or labels) in an MNIST-layout folder."""
    rng = np.random.default_rng(6)
    images, labels = idx_bytes(IMAGES), idx_bytes(LABELS)
    items = [("img-" + c, b, None) for c, b in mutants(images, rng, 12)]
    items += [("lab-" + c, None, b) for c, b in mutants(labels, rng, 12)]
    nan = np.full((6, 4, 4), np.nan, ">f4")
    items += [
        ("empty-split", idx_bytes(IMAGES[:0]), idx_bytes(LABELS[:0])),
        ("neg-labels", None, idx_bytes(np.array([0, -1, 1, 0, 1, 0], ">i1"), 0x09)),
        ("float-labels", None, idx_bytes(np.array([0, 1.5, 1, 0, 1, 0], ">f4"), 0x0D)),
        ("huge-labels", None, idx_bytes(np.array([0, 2**31 - 1, 1, 0, 1, 0], ">i4"), 0x0C)),
        ("nan-images", idx_bytes(nan, 0x0D), None),
        ("int-images", idx_bytes(IMAGES.astype(">i2") * 100, 0x0B), None),
        ("flat-images", idx_bytes(IMAGES.reshape(6, 16)), None),
    ]

    def writer(i: int, images: bytes | None, labels: bytes | None) -> Callable[[], Path]:
        def make() -> Path:
            root = _idx_folder(tmp_path / f"c{i}", images, labels)
            kind = "images-idx3" if images is not None else "labels-idx1"
            return root / f"t10k-{kind}-ubyte"

        return make

    cases = [(c, writer(i, a, b)) for i, (c, a, b) in enumerate(items)]
    run_cases("IDXDataModule", cases, idx_module, check_module)


def npz_module(train: Path, test: Path | None = None, labels: Path | None = None):
    dm = NpzDataModule(
        train_path=str(train),
        test_path=str(test) if test else None,
        train_labels_path=str(labels) if labels else None,
        loader=LoaderConfig(batch_size=4),
        split=SplitConfig(val_fraction=0.25),
    )
    dm.setup()
    return dm


def test_fuzz_npz_images(tmp_path: Path) -> None:
    """Train archive (compressed) and test archive (stored) of images and labels."""
    rng = np.random.default_rng(7)
    x = np.random.default_rng(8).integers(0, 255, (12, 4, 4), dtype=np.uint8)
    y = np.arange(12) % 3
    train = npz_bytes(True, x=x, y=y)
    test = npz_bytes(x=x[:6], y=y[:6])
    items = [("train-" + c, b, test) for c, b in mutants(train, rng, 16)]
    items += [("test-" + c, train, b) for c, b in mutants(test, rng, 16)]
    items += [("train-as-" + k, v, test) for k, v in others("npz").items()]
    xf = x.astype(np.float32) / 255
    semantic = {
        "empty-test": npz_bytes(x=x[:0], y=y[:0]),
        "neg-labels": npz_bytes(x=x[:6], y=np.array([0, 1, -2, 0, 1, 2])),
        "huge-labels": npz_bytes(x=x[:6], y=np.array([0, 1, 2**40, 0, 1, 2])),
        "float-labels": npz_bytes(x=x[:6], y=y[:6] + 0.5),
        "nan-images": npz_bytes(x=np.full((6, 4, 4), np.nan, np.float32), y=y[:6]),
        "some-nan": npz_bytes(x=np.where(xf[:6] > 0.5, np.nan, xf[:6]), y=y[:6]),
        "inf-images": npz_bytes(x=np.where(xf[:6] > 0.5, np.inf, xf[:6]), y=y[:6]),
        "count-mismatch": npz_bytes(x=x[:6], y=y[:5]),
        "zero-height": npz_bytes(x=x[:6, :0], y=y[:6]),
        "npy-not-npz": _npy_bytes(x),
    }
    items += [("test-" + k, train, v) for k, v in semantic.items()]

    def writer(i: int, case: str, a: bytes, b: bytes) -> Callable[[], Path]:
        def make() -> Path:
            folder = tmp_path / f"c{i}"
            folder.mkdir()
            (folder / "train.npz").write_bytes(a)
            (folder / "test.npz").write_bytes(b)
            return folder / ("train.npz" if case.startswith("train-") else "test.npz")

        return make

    cases = [(c, writer(i, c, a, b)) for i, (c, a, b) in enumerate(items)]
    run_cases(
        "NpzDataModule images",
        cases,
        lambda p: npz_module(p.parent / "train.npz", p.parent / "test.npz"),
        check_module,
    )


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_fuzz_npz_labels(tmp_path: Path) -> None:
    """The KMNIST layout: a single-array label archive beside a single-array image archive."""
    x = np.random.default_rng(9).integers(0, 255, (12, 4, 4), dtype=np.uint8)
    labels = npz_bytes(arr_0=np.arange(12) % 3)
    cases = byte_cases(tmp_path, "labels.npz", labels, 10, others("npz"))
    semantic = {
        "neg": npz_bytes(arr_0=np.arange(12) % 3 - 1),
        "empty": npz_bytes(arr_0=np.zeros(0, np.int64)),
        "2d": npz_bytes(arr_0=np.zeros((12, 2), np.int64)),
        "short": npz_bytes(arr_0=np.arange(11) % 3),
    }
    cases += file_cases(tmp_path / "semantic", "labels.npz", list(semantic.items()))
    images = tmp_path / "imgs.npz"
    np.savez(images, x)
    run_cases("NpzDataModule labels", cases, lambda p: npz_module(images, labels=p), check_module)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
def test_fuzz_load_image(tmp_path: Path, fmt: str) -> None:
    ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp"}[fmt]
    seed = {"PNG": 11, "JPEG": 12, "BMP": 13}[fmt]
    cases = byte_cases(tmp_path, f"image.{ext}", png_bytes(fmt), seed, others(ext))
    for channels in (1, 3):
        run_cases(
            f"load_image {fmt} channels={channels}",
            cases,
            lambda p, c=channels: load_image(p, c, (4, 4)),
            lambda x, c=channels: check_image(x, c),
        )


def test_fuzz_image_folder(tmp_path: Path) -> None:
    """A class-folder tree with one mutated image (the first one, probed for size and mode)."""
    rng = np.random.default_rng(14)
    items = mutants(png_bytes(), rng, 12) + list(others("png").items())

    def writer(i: int, content: bytes) -> Callable[[], Path]:
        def make() -> Path:
            root = tmp_path / f"c{i}"
            for c in ("a", "b"):
                (root / c).mkdir(parents=True)
                for j in range(3):
                    (root / c / f"{j}.png").write_bytes(png_bytes())
            (root / "a" / "0.png").write_bytes(content)
            return root / "a" / "0.png"

        return make

    def read(path: Path) -> ImageFolderDataModule:
        dm = ImageFolderDataModule(
            str(path.parents[1]), cache=True, split=SplitConfig(val_fraction=0.2, test_fraction=0.2)
        )
        dm.setup()
        return dm

    cases = [(c, writer(i, b)) for i, (c, b) in enumerate(items)]
    run_cases("ImageFolderDataModule", cases, read, check_module)


def test_fuzz_load_checkpoint(tmp_path: Path) -> None:
    cases = byte_cases(tmp_path, "model.ckpt", ckpt_bytes(), 15, others("ckpt"))
    run_cases("load_checkpoint", cases, load_checkpoint, check_ckpt)


def test_mutants_are_seeded() -> None:
    data = bytes(range(200))
    a = mutants(data, np.random.default_rng(0))
    b = mutants(data, np.random.default_rng(0))
    assert a == b and len({m for _, m in a}) == len(a)


def test_load_checkpoint_corrupt_storage_id(tmp_path: Path) -> None:
    data = bytearray(ckpt_bytes())
    at = data.find(b"h\x08K\x02t")  # BININT1 2 inside the second tensor's storage id tuple
    if at < 0:
        pytest.skip("this torch pickles storage ids differently")
    data[at + 2] ^= 1  # BININT1 -> BININT: the tuple's bytes are read as one int
    path = tmp_path / "model.ckpt"
    path.write_bytes(bytes(data))
    with pytest.raises(VisrepError, match=r"model\.ckpt"):
        load_checkpoint(path)
