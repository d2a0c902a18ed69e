"""Atomic file writes: nothing half-written is ever visible on disk.

Every writer in viewal goes through :func:`atomic_path`: it yields a temporary path in the same
directory, and renames it over the destination only if the body finished without an exception.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_path", "write_json", "write_text", "write_image", "write_npz", "read_image", "record_reads",
           "check_complete", "load_torch_file", "unpickle_reason"]

_READS: list[list[str]] = []  # open record_reads() collectors


@contextlib.contextmanager
def record_reads() -> Iterator[list[str]]:
    """Collect the paths :func:`read_image` reads inside the block (e.g. the files of one frame)."""
    log: list[str] = []
    _READS.append(log)
    try:
        yield log
    finally:
        _READS.remove(log)


def check_complete(path: str | os.PathLike) -> None:
    """Raise ``OSError`` naming ``path`` when a JPEG lacks its end-of-image marker or a PNG its IEND
    chunk: a truncated file that OpenCV would decode with a warning only, its missing part grey."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".jpg", ".jpeg", ".png"):
        return
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 64))
        tail = fh.read()
    if ext == ".png" and b"IEND" not in tail[-12:]:
        raise OSError(f"truncated PNG image (no IEND chunk at its end): {path}")
    if ext in (".jpg", ".jpeg") and b"\xff\xd9" not in tail:
        raise OSError(f"truncated JPEG image (no end-of-image marker): {path}")


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` on success, delete it on error.

    ``suffix`` defaults to ``dest``'s own suffix so that writers that infer the format from the
    extension (OpenCV, NumPy, matplotlib) write the right format.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix if suffix is not None else dest.suffix,
                               dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600; the file gets the mode a plain open() would give it
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def write_json(dest: str | os.PathLike, obj: Any) -> None:
    write_text(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_npz(dest: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(dest, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def write_image(dest: str | os.PathLike, img: np.ndarray, rgb: bool = True, params: list[int] | None = None) -> None:
    """Write an image with OpenCV, atomically. ``rgb=True`` means ``img`` is (H, W, 3) RGB order."""
    import cv2

    img = np.asarray(img)
    if rgb and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    with atomic_path(dest) as tmp:
        if not cv2.imwrite(str(tmp), img, params or []):
            raise OSError(f"could not write image {dest}")


def read_image(path: str | os.PathLike, flags: int | None = None, rgb: bool = True) -> np.ndarray:
    """Read an image with OpenCV (unchanged bit depth by default); RGB order for colour images.

    Raises ``FileNotFoundError`` naming the file when it is missing or unreadable.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing image file: {path}")
    for log in _READS:
        log.append(str(path))
    check_complete(path)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED if flags is None else flags)
    if img is None:
        raise OSError(f"could not decode image file: {path}")
    if rgb and img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def unpickle_reason(e: BaseException) -> str:
    """One line saying why ``torch.load(..., weights_only=True)`` refused a file, without torch's advice to
    retry with ``weights_only=False`` (that would run whatever code the file carries)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    keep = [ln for ln in lines
            if "weights_only" not in ln and "Re-running" not in ln and "torch.serialization" not in ln
            and not ln.startswith(("(1)", "(2)", "Check the documentation"))]
    best = next((ln for ln in keep if "Unsupported global" in ln or "WeightsUnpickler" in ln), None)
    reason = best or (keep[0] if keep else type(e).__name__)
    return f"{type(e).__name__}: {reason}"


def load_torch_file(path: str | os.PathLike, map_location: str = "cpu"):
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    A missing file raises ``FileNotFoundError``; anything else that fails (pickled code, truncation,
    not a torch file) raises ``ValueError`` naming the file and the reason, never suggesting to load it
    unrestricted."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors have many types
        raise ValueError(f"{path}: not a loadable weights file (refused: {unpickle_reason(e)})") from None
