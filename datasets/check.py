"""Up-front check of every frame a run will read, so that a corrupt file fails before any training.

:func:`check_frames` loads each frame's arrays once (colour, depth, intrinsics, pose, and labels when the
frame has them: a frame without labels passes) through the dataset's own loaders, which refuse truncated
or undecodable images naming the file (``viewal.core.io.read_image``). Frames whose image files kept their size
and modification time since they last passed are skipped (cache: a small JSON file), so a resumed run
re-checks only what changed.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from viewal.core.io import record_reads, write_json
from viewal.core.progress import progress_bar

from .base import DatasetError

__all__ = ["check_frames", "file_stamps"]


def file_stamps(paths: Sequence[str | os.PathLike]) -> list[list]:
    """``[[path, size, mtime_ns], ...]`` of existing files (sorted by path)."""
    out = []
    for p in sorted({str(p) for p in paths}):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        out.append([p, int(st.st_size), int(st.st_mtime_ns)])
    return out


def _load_all(frame) -> list[str]:
    """Load every array of ``frame`` (then drop them); returns the image files read."""
    with record_reads() as reads:
        try:
            for name in ("rgb", "depth", "K", "world_T_cam"):
                _ = getattr(frame, name)  # loading it is the check
            if frame.has_labels:
                _ = frame.labels
        finally:
            frame.release()
    return reads


def check_frames(frames: Sequence, cache: str | os.PathLike | None = None, progress: bool = True) -> int:
    """Load every frame once; raise :class:`DatasetError` listing the frames that fail (first five, with
    the file and the reason). Returns the number of frames actually loaded (the others were cached).

    Args:
        frames: ``viewal.datasets.Frame`` objects (e.g. the pool and the evaluation splits).
        cache: JSON file remembering the frames that passed, by the size and mtime of their image files.
    """
    cache = Path(cache) if cache is not None else None
    known: dict = {}
    if cache is not None and cache.is_file():
        try:
            known = json.loads(cache.read_text())
        except (json.JSONDecodeError, OSError):
            known = {}
    passed, failed, loaded = {}, [], 0
    for f in progress_bar(frames, desc="check frames", unit="frame", disable=not progress, leave=False):
        stamps = known.get(f.key)
        if stamps and file_stamps([s[0] for s in stamps]) == stamps:
            passed[f.key] = stamps
            continue
        loaded += 1
        try:
            reads = _load_all(f)
        except (OSError, ValueError) as e:
            failed.append(f"{f.key}: {e}")
            continue
        passed[f.key] = file_stamps(reads)
    if cache is not None:
        with contextlib.suppress(OSError):  # a read-only dataset folder: the check simply runs again next time
            write_json(cache, {**known, **passed})
    if failed:
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise DatasetError(f"{len(failed)} of {len(frames)} frames cannot be read{more}:\n  " + "\n  ".join(failed[:5]))
    return loaded
