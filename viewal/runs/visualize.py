"""Pictures of an active-learning run: the selected regions and a 3D view-entropy point cloud.

* :func:`query_contact_sheet` — a grid of frame crops, one per selected region, the region outlined
  (its contour from ``cv2.findContours``), the outside dimmed, the title giving scene/frame, score and view
  score, and the ground-truth majority class of the region when the dataset has labels (marked "GT").
* :func:`view_entropy_point_cloud` — every valid pixel of a scene (every ``stride``-th row and column)
  back-projected to the world and coloured by its view entropy; written as PLY with Open3D.
  :func:`scene_view_entropy` computes the per-pixel view entropy of a scene with a model;
  :func:`render_point_cloud_png` draws the cloud with matplotlib (two views, no GL needed).

Command line (``viewal visualize``, :mod:`viewal.cli.visualize`)::

    viewal visualize --run OUT [--method view_entropy] [--seed 0] [--cycle N] [--ply SCENE]

reads ``OUT/ledgers/<method>-s<seed>.sqlite`` and the dataset recorded in it, and writes
``OUT/queries_<method>_c<N>.png``; with ``--ply SCENE`` it loads ``OUT/models/<method>-s<seed>-c<N>.pt``
(the model trained at the end of cycle N, i.e. on cycle N's labels) and writes
``OUT/view_entropy_<SCENE>.ply`` and ``OUT/view_entropy_<SCENE>.png``.

All drawing uses matplotlib's Agg canvas; every file is written atomically (:func:`viewal.core.io.atomic_path`).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.config import ALConfig
from viewal.core.geometry import backproject
from viewal.core.io import atomic_path
from viewal.datasets import IGNORE_INDEX
from viewal.datasets.base import stack_scene
from viewal.datasets.preview import class_palette
from viewal.kernels import view_entropy_divergence
from viewal.kernels.depth_test import DEPTH_TEST, DepthTest
from viewal.nn.model import predict_frames
from viewal.runs.layout import RunLayout
from viewal.runs.learner import pool_signature
from viewal.runs.ledger import Ledger
from viewal.scoring.propagation import ledger_propagation

__all__ = [
    "region_bbox", "crop_box", "mask_contours", "outline_mask", "majority_class", "query_contact_sheet",
    "scene_view_entropy", "view_entropy_points", "colorize_values", "view_entropy_point_cloud",
    "render_point_cloud_png", "write_query_sheets", "view_heatmaps", "run_view_entropy", "last_query_cycle",
    "label_sources_sheet", "run_propagation", "propagation_sheet",
]

OUTLINE_COLOR = (1.0, 0.15, 0.1)  # region outline on the crops (red)
HUMAN_COLOR = (0.15, 0.45, 1.0)  # pixels labelled by people (blue)
PROPAGATED_COLOR = (1.0, 0.6, 0.0)  # pixels labelled through 3D propagation (orange)


# --------------------------------------------------------------------------------------------- regions

def region_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(H, W) bool → ``(y0, y1, x0, x1)`` half-open bounding box of the True pixels.

    Raises ValueError when the mask is empty.
    """
    mask = np.asarray(mask, bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("region_bbox: empty mask")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_box(bbox: tuple[int, int, int, int], shape: tuple[int, int], *, pad: int = 6,
             min_frac: float = 0.5) -> tuple[int, int, int, int]:
    """A crop around ``bbox`` with the image's aspect ratio, inside the image.

    The box is padded by ``pad`` pixels, grown to at least ``min_frac`` of the image height (width in
    proportion) and to the image's aspect ratio, centred on the region and shifted back inside the
    image (never larger than the image).

    Args:
        bbox: ``(y0, y1, x0, x1)`` half-open. shape: image ``(H, W)``.
    Returns:
        ``(y0, y1, x0, x1)`` half-open crop box.
    """
    H, W = int(shape[0]), int(shape[1])
    y0, y1, x0, x1 = bbox
    need_h = max(y1 - y0 + 2 * pad, min_frac * H, (x1 - x0 + 2 * pad) * H / W)
    ch = int(min(H, round(need_h)))
    cw = int(min(W, round(ch * W / H)))
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    top = int(round(min(max(cy - ch / 2.0, 0), H - ch)))
    left = int(round(min(max(cx - cw / 2.0, 0), W - cw)))
    return top, top + ch, left, left + cw


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Outer and hole contours of a region: list of (K, 2) int arrays of ``(x, y)`` pixel coordinates.

    Every contour point is a pixel of the mask with a 4-neighbour outside it (or on the image border)
    (``cv2.findContours`` with ``RETR_LIST`` and ``CHAIN_APPROX_NONE``).
    """
    import cv2

    m = np.ascontiguousarray(np.asarray(mask, bool).astype(np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return [c.reshape(-1, 2).astype(np.int64) for c in contours]


def outline_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of :func:`mask_contours` (what the contact sheet draws)."""
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, bool)
    for c in mask_contours(mask):
        out[c[:, 1], c[:, 0]] = True
    return out


def majority_class(labels: np.ndarray | None, mask: np.ndarray) -> tuple[int, float] | None:
    """Most frequent ground-truth class inside ``mask`` and its share of the labelled pixels there.

    Args:
        labels: (H, W) int class ids (255 = ignore) or None. mask: (H, W) bool.
    Returns:
        ``(class_id, share)`` or None when there are no labels or no labelled pixel in the region.
    """
    if labels is None:
        return None
    inside = np.asarray(labels)[np.asarray(mask, bool)].astype(np.int64)
    inside = inside[(inside != IGNORE_INDEX) & (inside >= 0)]
    if inside.size == 0:
        return None
    counts = np.bincount(inside)
    c = int(counts.argmax())
    return c, float(counts[c] / inside.size)


# --------------------------------------------------------------------------------------------- contact sheet

def query_contact_sheet(dataset, queries: Sequence[Any], out_png: str | os.PathLike, *, max_queries: int = 24,
                        cols: int = 6, title: str | None = None, show_gt: bool = True, pad: int = 6,
                        min_frac: float = 0.5, dpi: int = 100) -> Path:
    """Draw the selected regions as a grid of frame crops and write a PNG.

    Args:
        dataset: the :class:`~viewal.datasets.RGBDDataset` the queries refer to, opened at the size the
            query masks have.
        queries: ``RegionQuery``-like objects (``scene_id``, ``frame_id``, ``mask`` (H, W) bool, ``score``,
            ``view_score`` or None); drawn in the given order (a ledger's rank order), the first
            ``max_queries``.
        out_png: output path. cols: crops per row.
        show_gt: write the region's ground-truth majority class ("GT: chair 92 %") when the frame has labels.
        pad, min_frac: crop padding and minimum crop height as a share of the frame (:func:`crop_box`).
    Returns:
        ``out_png`` as a Path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if max_queries < 1 or cols < 1:
        raise ValueError(f"query_contact_sheet: max_queries and cols must be >= 1, got {max_queries}, {cols}")
    out_png = Path(out_png)
    shown = list(queries)[:max_queries]
    n = len(shown)
    ncols = max(1, min(cols, n))
    nrows = max(1, -(-n // ncols))
    H, W = int(dataset.height), int(dataset.width)
    # layout in inches: each cell is an image (aspect H/W) under a two-line title
    img_w, gap, title_h, head_h, margin = 2.4, 0.08, 0.42, 0.36, 0.08
    img_h = img_w * H / W
    fig_w = 2 * margin + ncols * img_w + (ncols - 1) * gap
    fig_h = head_h + nrows * (title_h + img_h) + (nrows - 1) * gap + margin
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    palette = class_palette(dataset.num_classes)
    total_px = sum(int(np.count_nonzero(q.mask)) for q in queries)
    if title is None:
        title = f"{len(queries)} selected regions, {total_px} px"
    if n < len(queries):
        title += f" (first {n} shown)"
    fig.suptitle(title, fontsize=10, y=1 - 0.1 / fig_h, va="top")
    if n == 0:
        fig.text(0.5, 0.5, "no queries", ha="center", va="center", fontsize=12)

    def cell_rect(i: int) -> list[float]:
        r, c = divmod(i, ncols)
        left = margin + c * (img_w + gap)
        top = head_h + r * (title_h + img_h + gap) + title_h
        return [left / fig_w, 1 - (top + img_h) / fig_h, img_w / fig_w, img_h / fig_h]

    for i, q in enumerate(shown):
        frame = dataset.frame(q.scene_id, q.frame_id)
        rgb = frame.rgb
        mask = np.asarray(q.mask, bool)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"query {q.scene_id}/{q.frame_id}: mask is {mask.shape[0]}x{mask.shape[1]} but the "
                             f"frame is {rgb.shape[0]}x{rgb.shape[1]}; open the dataset at the run's size")
        y0, y1, x0, x1 = crop_box(region_bbox(mask), mask.shape, pad=pad, min_frac=min_frac)
        crop = rgb[y0:y1, x0:x1].astype(np.float32)
        inside = mask[y0:y1, x0:x1]
        crop[~inside] *= 0.55  # dim the context so the region stands out
        ax = fig.add_axes(cell_rect(i))
        ax.imshow(crop.astype(np.uint8), interpolation="nearest", extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
        for c in mask_contours(mask):
            pts = np.vstack([c, c[:1]])
            ax.plot(pts[:, 0], pts[:, 1], color=OUTLINE_COLOR, lw=1.2, solid_joinstyle="round")
        ax.set_xlim(x0 - 0.5, x1 - 0.5)
        ax.set_ylim(y1 - 0.5, y0 - 0.5)
        ax.set_aspect("auto")  # the crop has the frame's aspect ratio up to rounding
        ax.set_xticks([])
        ax.set_yticks([])
        score = f"score {q.score:.3g}"
        if getattr(q, "view_score", None) is not None and float(q.view_score) != float(q.score):
            score += f", view score {float(q.view_score):.3g}"
        ax.set_title(f"#{i + 1} {q.scene_id}/{q.frame_id}\n{score}  ({int(mask.sum())} px)", fontsize=6.5, pad=2)
        gt = majority_class(frame.labels, mask) if show_gt else None
        if gt is not None:
            c, share = gt
            name = dataset.class_names[c] if c < len(dataset.class_names) else str(c)
            ax.text(0.02, 0.03, f"GT: {name} {100 * share:.0f}%", transform=ax.transAxes, fontsize=6, color="white",
                    ha="left", va="bottom", bbox=dict(facecolor=palette[c] / 255 * 0.6, alpha=0.85, pad=1.2, lw=0))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return out_png


# --------------------------------------------------------------------------------------------- view entropy cloud

def scene_view_entropy(model, frames: Sequence, mc_passes: int, *, size: tuple[int, int] | None = None,
                       batch_size: int = 4, device: str = "cpu", depth_test: DepthTest = DEPTH_TEST,
                       seed: int | None = 0, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel view entropy and view divergence of one scene's frames under ``model``.

    MC-dropout mean softmax (:func:`viewal.nn.model.predict_frames`, ``mc_passes`` passes), then
    :func:`viewal.kernels.view_entropy_divergence` with ``depth_test`` (a run's: ``ALConfig.depth_test``).

    Returns:
        ve, vd: (N, H, W) float32.
    """
    frames = list(frames)
    probs = predict_frames(model, frames, passes=mc_passes, batch_size=batch_size, device=device, size=size,
                           seed=seed, progress=progress, desc="view entropy")
    geo = stack_scene(frames)
    return view_entropy_divergence(probs, geo["depths"], geo["Ks"], geo["world_T_cams"], depth_test=depth_test)


def view_entropy_points(frames: Sequence, ve: np.ndarray, stride: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """World points of every ``stride``-th row/column valid pixel of each frame, with their view entropy.

    Args:
        frames: N frames (``depth`` (H, W) metres, ``K``, ``world_T_cam``). ve: (N, H, W).
        stride: pixel step in both directions (1 = every pixel).
    Returns:
        points (M, 3) float64 world coordinates, values (M,) float64 view entropy; M = number of valid
        pixels on the strided grid (invalid depth dropped).
    """
    frames = list(frames)
    ve = np.asarray(ve)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if ve.ndim != 3 or ve.shape[0] != len(frames):
        raise ValueError(f"ve: expected ({len(frames)}, H, W), got {ve.shape}")
    pts, vals = [], []
    for f, v in zip(frames, ve):
        if v.shape != f.depth.shape:
            raise ValueError(f"ve of {f.key}: shape {v.shape} differs from its depth {f.depth.shape}")
        X = backproject(f.depth, f.K, f.world_T_cam)[::stride, ::stride].reshape(-1, 3)
        s = np.asarray(v, np.float64)[::stride, ::stride].reshape(-1)
        ok = np.isfinite(X).all(axis=1) & np.isfinite(s)
        pts.append(X[ok])
        vals.append(s[ok])
    return np.concatenate(pts), np.concatenate(vals)


def colorize_values(values: np.ndarray, colormap: str = "viridis", vmin: float | None = None,
                    vmax: float | None = None) -> np.ndarray:
    """(M,) values → (M, 3) float64 RGB in [0, 1] through ``colormap`` over [vmin, vmax] (default: data range)."""
    from matplotlib import colormaps

    v = np.asarray(values, np.float64)
    lo = float(np.min(v)) if vmin is None else float(vmin)
    hi = float(np.max(v)) if vmax is None else float(vmax)
    t = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(v)
    return np.asarray(colormaps[colormap](t))[..., :3].astype(np.float64)


def view_entropy_point_cloud(frames: Sequence, ve: np.ndarray, out_ply: str | os.PathLike, *, stride: int = 2,
                             colormap: str = "viridis", voxel_size: float | None = None,
                             vmin: float | None = None, vmax: float | None = None) -> dict:
    """Write a scene's view entropy as a coloured point cloud (PLY, Open3D).

    Args:
        frames, ve, stride: as :func:`view_entropy_points`.
        colormap: matplotlib colormap; the lowest VE maps to its bottom colour, the highest to its top
            (``vmin``/``vmax`` override the data range).
        voxel_size: metres; when given, ``voxel_down_sample`` (colours averaged per voxel).
    Returns:
        ``{"path", "points" (before downsampling), "written", "vmin", "vmax", "xyz" (M, 3), "values" (M,),
        "colors" (M, 3)}``, the arrays being the points before downsampling (for rendering; the PLY stores
        colours as 8-bit).
    """
    import open3d as o3d

    out_ply = Path(out_ply)
    if out_ply.suffix.lower() != ".ply":
        raise ValueError(f"out_ply: expected a .ply path, got {out_ply}")
    X, v = view_entropy_points(frames, ve, stride)
    if X.shape[0] == 0:
        raise ValueError("view_entropy_point_cloud: no valid depth pixel in these frames")
    lo = float(v.min()) if vmin is None else float(vmin)
    hi = float(v.max()) if vmax is None else float(vmax)
    pc = o3d.geometry.PointCloud()
    pc.points = o3d.utility.Vector3dVector(X)
    colors = colorize_values(v, colormap, lo, hi)
    pc.colors = o3d.utility.Vector3dVector(colors)
    if voxel_size:
        pc = pc.voxel_down_sample(float(voxel_size))
    with atomic_path(out_ply, suffix=".ply") as tmp:  # Open3D picks the writer from the extension
        if not o3d.io.write_point_cloud(str(tmp), pc, write_ascii=False):
            raise OSError(f"could not write point cloud {out_ply}")
    return {"path": out_ply, "points": int(X.shape[0]), "written": len(pc.points), "vmin": lo, "vmax": hi,
            "xyz": X, "values": v, "colors": colors}


def render_point_cloud_png(points: np.ndarray, values: np.ndarray, out_png: str | os.PathLike, *,
                           colormap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                           max_points: int = 60_000, up_axis: int = 2, cut_top: float = 0.12, cut_near: float = 0.15,
                           elev: float = 48.0, azim: float = -60.0, title: str | None = None,
                           label: str = "view entropy (bits)", seed: int = 0, dpi: int = 90) -> Path:
    """Draw a point cloud coloured by ``values`` from two viewpoints (oblique and top-down) with matplotlib.

    Args:
        points: (M, 3) world coordinates. values: (M,).
        max_points: random subsample drawn (seeded). up_axis: world axis pointing up (2 for z-up ScanNet and
            the synthetic scenes). cut_top: share of the height range removed from the top (the ceiling) so
            that the room's inside is visible from above. cut_near: share of the horizontal extent nearest
            the oblique viewpoint removed there (the near walls). elev, azim: oblique viewpoint (degrees).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    X = np.asarray(points, np.float64)
    v = np.asarray(values, np.float64)
    if X.ndim != 2 or X.shape[1] != 3 or v.shape != X.shape[:1]:
        raise ValueError(f"points (M, 3) and values (M,) expected, got {X.shape} and {v.shape}")
    lo = float(v.min()) if vmin is None else float(vmin)
    hi = float(v.max()) if vmax is None else float(vmax)
    up = X[:, up_axis]
    keep = up <= up.max() - cut_top * np.ptp(up)
    X, v = X[keep], v[keep]
    if X.shape[0] > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_points, replace=False))
        X, v = X[idx], v[idx]
    horiz = [a for a in range(3) if a != up_axis]
    xs, ys, zs = X[:, horiz[0]], X[:, horiz[1]], X[:, up_axis]
    cmap = colormaps[colormap]
    fig = Figure(figsize=(12, 5.6), dpi=dpi)
    FigureCanvasAgg(fig)
    # oblique view: drop the slab nearest the viewpoint (matplotlib's eye direction for azim/elev)
    eye = np.array([np.cos(np.radians(azim)), np.sin(np.radians(azim))])
    along = xs * eye[0] + ys * eye[1]
    near = along <= along.max() - cut_near * np.ptp(along)
    ax3 = fig.add_axes([0.0, 0.0, 0.56, 0.88], projection="3d")
    ax3.scatter(xs[near], ys[near], zs[near], c=v[near], cmap=cmap, vmin=lo, vmax=hi, s=1.2, linewidths=0,
                depthshade=False)
    ax3.view_init(elev=elev, azim=azim)
    span = [np.ptp(a) or 1.0 for a in (xs, ys, zs)]
    ax3.set_box_aspect(span, zoom=1.25)
    ax3.set_axis_off()
    fig.text(0.28, 0.875, "oblique view (ceiling and near walls cut)", fontsize=9, ha="center")
    ax2 = fig.add_axes([0.58, 0.06, 0.3, 0.8])
    order = np.argsort(zs)  # top-down: higher points drawn last (on top)
    ax2.scatter(xs[order], ys[order], c=v[order], cmap=cmap, vmin=lo, vmax=hi, s=1.5, linewidths=0)
    ax2.set_aspect("equal")
    ax2.set_xticks([])
    ax2.set_yticks([])
    ax2.set_title("top-down view (ceiling cut)", fontsize=9)
    cax = fig.add_axes([0.91, 0.14, 0.015, 0.64])
    fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap), cax=cax, label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return out_png


def view_heatmaps(rgbs: Sequence[np.ndarray], masks: Sequence[np.ndarray], ve: Sequence[np.ndarray],
                  vd: Sequence[np.ndarray], titles: Sequence[str], out_png: str | os.PathLike, *,
                  colormap: str = "magma", dpi: int = 90) -> Path:
    """One column per frame: the frame with its queried regions outlined, its view entropy, its view divergence
    (each heat-map with its own colour bar, in bits).

    Args:
        rgbs: F frames (H, W, 3) uint8. masks: F (H, W) bool, the union of the frame's queried regions.
        ve, vd: F (H, W) float view entropy and view divergence. titles: F column titles.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(rgbs)
    if not (len(masks) == len(ve) == len(vd) == len(titles) == n) or n == 0:
        raise ValueError(f"view_heatmaps: need as many (>= 1) masks, ve, vd and titles as frames ({n})")
    H, W = np.asarray(rgbs[0]).shape[:2]
    cell = 2.6
    fig = Figure(figsize=(cell * n + 0.6, 3 * cell * H / W + 0.9), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, n, squeeze=False)
    for j in range(n):
        img = np.asarray(rgbs[j], np.uint8).copy()
        img[outline_mask(masks[j])] = (np.array(OUTLINE_COLOR) * 255).astype(np.uint8)
        axes[0][j].imshow(img, interpolation="nearest")
        axes[0][j].set_title(titles[j], fontsize=7)
        for row, (vals, name) in enumerate(((ve[j], "view entropy"), (vd[j], "view divergence")), start=1):
            im = axes[row][j].imshow(np.asarray(vals, np.float64), cmap=colormap, interpolation="nearest")
            fig.colorbar(im, ax=axes[row][j], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            axes[row][j].set_title(name, fontsize=7)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return out_png


# --------------------------------------------------------------------------------------------- runs

def run_view_entropy(model, frames: Sequence, run_config: ALConfig, mc_passes: int, seed: int, *,
                     depth_test: DepthTest | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`scene_view_entropy` with a run's recorded settings (``run_config``: its ``ALConfig``, as
    ``ALConfig.from_json`` reads it from the ledger: working size, inference batch, depth test; ``depth_test``
    overrides the latter, e.g. another backend). Returns ve, vd: (N, H, W)."""
    return scene_view_entropy(model, frames, mc_passes, size=tuple(run_config.size) if run_config.size else None,
                              batch_size=int(run_config.infer_batch_size),
                              depth_test=run_config.depth_test if depth_test is None else depth_test, seed=seed,
                              progress=progress)


def label_sources_sheet(rgbs: Sequence[np.ndarray], human: Sequence[np.ndarray], propagated: Sequence[np.ndarray],
                        titles: Sequence[str], out_png: str | os.PathLike, *, title: str = "", cols: int = 4,
                        dpi: int = 90) -> Path:
    """Frames with their labelled pixels tinted by source: human labels blue, propagated labels orange.

    Args:
        rgbs: F frames (H, W, 3) uint8. human, propagated: F (H, W) bool each (disjoint). titles: F captions.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(rgbs)
    if not (len(human) == len(propagated) == len(titles) == n) or n == 0:
        raise ValueError(f"label_sources_sheet: need as many (>= 1) human and propagated masks and titles as frames "
                         f"({n})")
    H, W = np.asarray(rgbs[0]).shape[:2]
    cols = max(1, min(int(cols), n))
    rows = -(-n // cols)
    cell = 2.6
    fig = Figure(figsize=(cell * cols, rows * (cell * H / W + 0.35) + 0.7), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= n:
            ax.axis("off")
            continue
        img = np.asarray(rgbs[j], np.float64) * 0.55
        for mask, colour in ((human[j], HUMAN_COLOR), (propagated[j], PROPAGATED_COLOR)):
            m = np.asarray(mask, bool)
            img[m] = 0.35 * img[m] + 0.65 * 255 * np.asarray(colour)
        ax.imshow(img.astype(np.uint8), interpolation="nearest")
        ax.set_title(titles[j], fontsize=7)
    fig.legend(handles=[Patch(color=HUMAN_COLOR, label="human labels"),
                        Patch(color=PROPAGATED_COLOR, label="propagated labels")],
               loc="lower center", ncol=2, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return out_png


def run_propagation(dataset, ledger, run_config: ALConfig, max_cycle: int | None = None) -> dict | None:
    """The propagation of a run's ledger (``viewal.scoring.propagation.ledger_propagation``) under its recorded
    settings, with the labels as they stood after ``max_cycle`` (None: all). The pool is the train split at the run's
    frame step; None when ``dataset`` does not give the ledger's pool (another split, size or frame step)."""
    pool = dataset.every(int((ledger.meta("experiment") or {}).get("frame_step", 1))).split("train")
    if ledger.meta("pool") not in (None, pool_signature([f.key for f in pool])):
        return None
    return ledger_propagation(pool, ledger, run_config, (dataset.height, dataset.width), max_cycle=max_cycle)


def propagation_sheet(dataset, scenes: dict, out_png: str | os.PathLike, *, max_frames: int = 4,
                      title: str = "") -> dict:
    """:func:`label_sources_sheet` of the ``max_frames`` pool frames with the most propagated pixels (``scenes``:
    :func:`run_propagation`'s result). Returns ``{"frames", "propagated", "human"}`` (pixel counts over the pool);
    nothing is drawn when no pixel is propagated (``frames`` 0)."""
    ranked = []
    human_px = prop_px = 0
    for sid, sp in scenes.items():
        human_px += int(np.count_nonzero(sp.human & (sp.result.labels != IGNORE_INDEX)))
        for i, fid in enumerate(sp.frame_ids):
            k = int(np.count_nonzero(sp.result.propagated[i]))
            prop_px += k
            if k:
                ranked.append((-k, sid, fid, i))
    ranked.sort()
    shown = ranked[:max_frames]
    if shown:
        label_sources_sheet([dataset.frame(f"{s}/{f}").rgb for _, s, f, _ in shown],
                            [scenes[s].human[i] for _, s, _, i in shown],
                            [scenes[s].result.propagated[i] for _, s, _, i in shown],
                            [f"{s}/{f}: {-k} px propagated" for k, s, f, _ in shown], out_png, title=title)
    return {"frames": len(shown), "propagated": prop_px, "human": human_px}


def last_query_cycle(ledger) -> int | None:
    """The last cycle with recorded queries in ``ledger`` (None when it holds none)."""
    cycles = sorted({q.cycle for q in ledger.queries()})
    return cycles[-1] if cycles else None


def write_query_sheets(dataset, run_dir: str | os.PathLike, methods: Sequence[str], seed: int,
                       cycle: int | None = None, strict: bool = False, **kw) -> list[Path]:
    """Contact sheets ``run_dir/queries_<method>_c<cycle>.png`` of one seed's queries (default: last cycle).

    Methods without a ledger or without queries are skipped. A sheet that cannot be drawn (e.g. masks of
    another size than ``dataset``'s) is a warning unless ``strict`` — the experiment's results must not be
    lost to a picture. Returns the written paths.
    """
    out = []
    for method in methods:
        layout = RunLayout(Path(run_dir))
        path = layout.ledger(method, seed)
        if not path.is_file():
            continue
        with Ledger(path) as led:
            c = last_query_cycle(led) if cycle is None else int(cycle)
            qs = led.queries(c) if c is not None else []
        if not qs:
            continue
        png = layout.query_sheet(method, c)
        try:
            out.append(query_contact_sheet(dataset, qs, png, title=f"{method}, seed {seed}, cycle {c}: {len(qs)} "
                                           f"regions, {sum(q.n_pixels for q in qs)} px", **kw))
        except (ValueError, KeyError, OSError) as e:
            if strict:
                raise
            warnings.warn(f"contact sheet of {path} not written: {e}", stacklevel=2)
    return out
