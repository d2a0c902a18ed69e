"""Mask encodings of the labelling tools: COCO RLE (``pycocotools``) and Label Studio brush RLE
(``label-studio-sdk``), plus the split of a cycle's queries between annotators.

Pure functions on arrays; the files around them (exports, imports) live in :mod:`viewal.labelling.hitl` and
:mod:`viewal.labelling.labelstudio`.

* COCO RLE is **column-major** (Fortran order): the runs walk down each column, then to the next column.
  :func:`coco_encode` hands ``pycocotools.mask.encode`` a Fortran-ordered ``uint8`` array, as it requires;
  a C-ordered array would silently encode the transposed mask's runs.
* Label Studio's brush RLE encodes the RGBA image of the brush layer **row-major**; the SDK's
  ``mask2rle`` writes the mask into all four channels and ``decode_rle`` gives them back; the alpha
  channel (> 0) is the painted area, as the SDK's own ``decode_from_annotation`` reads it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["coco_encode", "coco_decode", "brush_encode", "brush_decode", "annotator_batches", "RleError",
           "LabelImportError", "IGNORE_INDEX"]

#: class id of a pixel that is not labelled, in every label file
IGNORE_INDEX = 255


class LabelImportError(ValueError):
    """A labelled mask (or the queries file) is missing or invalid; the message names the file."""


class RleError(ValueError):
    """An encoded mask is malformed or has another size than expected."""


# --------------------------------------------------------------------------------------------- COCO RLE

def coco_encode(mask: np.ndarray) -> dict:
    """(H, W) bool → COCO RLE ``{"size": [H, W], "counts": str}`` (compressed counts, JSON-ready).

    >>> coco_encode(np.array([[1, 0, 0], [1, 1, 0]], bool))
    {'size': [2, 3], 'counts': '021O1'}
    """
    from pycocotools import mask as cocomask

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"coco_encode: mask must be (H, W), got shape {m.shape}")
    rle = cocomask.encode(np.asfortranarray(m.astype(bool).astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def coco_decode(rle: dict, shape: tuple[int, int] | None = None, what: str = "mask") -> np.ndarray:
    """COCO RLE → (H, W) bool; accepts compressed (``counts`` a string) and uncompressed (``counts`` a list
    of run lengths, as tools write for ``iscrowd=1``) RLE.

    Args:
        rle: ``{"size": [H, W], "counts": ...}``.
        shape: expected ``(H, W)``; a different ``size`` raises :class:`RleError`.
        what: names the mask in error messages (e.g. ``"coco.json: annotation 7"``).
    """
    from pycocotools import mask as cocomask

    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise RleError(f"{what}: not a COCO RLE (a dict with 'size' and 'counts'), got {str(rle)[:80]}")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise RleError(f"{what}: COCO RLE size must be [height, width], got {size!r}")
    h, w = int(size[0]), int(size[1])
    if shape is not None and (h, w) != tuple(int(v) for v in shape):
        raise RleError(f"{what}: COCO RLE size {h}x{w} (HxW) differs from the frame's {shape[0]}x{shape[1]}")
    counts = rle["counts"]
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != h * w or any(int(c) < 0 for c in counts):
            raise RleError(f"{what}: uncompressed COCO RLE counts must be non-negative and add up to {h}*{w} "
                           f"pixels, got {sum(int(c) for c in counts)}")
        obj = cocomask.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    elif isinstance(counts, (str, bytes)):
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise RleError(f"{what}: COCO RLE counts must be a string or a list of run lengths, got {type(counts)}")
    try:
        m = cocomask.decode(obj)
    except Exception as e:  # pycocotools raises plain Exception/ValueError on garbage counts
        raise RleError(f"{what}: undecodable COCO RLE counts ({e})") from None
    return m.astype(bool)


# --------------------------------------------------------------------------------------------- brush RLE

def _brush_converter():
    """``label_studio_sdk.converter.brush`` (its ``mask2rle`` and ``decode_rle`` need numpy alone). The SDK's
    ``converter`` package prints a missing optional module of its other converters on import (when installed
    with ``--no-deps``, see docs/labelling.md); that line is kept off viewal's output."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from label_studio_sdk.converter import brush
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"the Label Studio format needs label-studio-sdk ({e}); see docs/labelling.md "
                                  f"(pip install --no-deps label-studio-sdk)") from None
    return brush


def brush_encode(mask: np.ndarray) -> list[int]:
    """(H, W) bool → Label Studio brush RLE (a list of byte values) with the SDK's ``mask2rle``
    (255 inside, 0 outside, in all four RGBA channels)."""
    mask2rle = _brush_converter().mask2rle
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"brush_encode: mask must be (H, W), got shape {m.shape}")
    return [int(v) for v in mask2rle(m.astype(bool).astype(np.uint8) * np.uint8(255))]


def brush_decode(rle: Sequence[int], shape: tuple[int, int], what: str = "brush") -> np.ndarray:
    """Label Studio brush RLE → (H, W) bool (alpha channel > 0) with the SDK's ``decode_rle``.

    Args:
        rle: the ``value.rle`` list of a ``brushlabels`` result. shape: ``(original_height, original_width)``.
        what: names the result in error messages.
    """
    decode_rle = _brush_converter().decode_rle
    h, w = int(shape[0]), int(shape[1])
    if not isinstance(rle, (list, tuple)) or not rle or not all(isinstance(v, int) and 0 <= v <= 255 for v in rle):
        raise RleError(f"{what}: brush RLE must be a non-empty list of byte values")
    try:
        flat = decode_rle(list(rle))
    except Exception as e:  # the SDK's bit reader runs off the end on truncated data
        raise RleError(f"{what}: undecodable brush RLE ({type(e).__name__}: {e})") from None
    if flat.size != h * w * 4:
        raise RleError(f"{what}: brush RLE holds {flat.size} values, the {h}x{w} RGBA image needs {h * w * 4}")
    return flat.reshape(h, w, 4)[..., 3] > 0


# --------------------------------------------------------------------------------------------- annotators

def annotator_batches(n_queries: int, k: int) -> list[np.ndarray]:
    """Split query ranks ``0..n_queries-1`` into ``k`` disjoint batches, round-robin by rank: batch ``b``
    gets ranks ``b, b + k, b + 2k, ...``. Deterministic; sizes differ by at most one; every batch holds a
    share of the most and of the least informative regions.

    >>> [b.tolist() for b in annotator_batches(5, 2)]
    [[0, 2, 4], [1, 3]]
    """
    if k < 1:
        raise ValueError(f"annotators must be >= 1, got {k}")
    if n_queries < 0:
        raise ValueError(f"n_queries must be >= 0, got {n_queries}")
    ranks = np.arange(int(n_queries))
    return [ranks[b::k] for b in range(int(k))]
