"""Contact sheet of dataset frames: RGB, depth (colour map), labels (class palette + legend), superpixels.

``viewal preview DATA -o out.png [--scene S] [--frames k]``: with ``--scene``, ``k`` frames evenly spaced
through that scene; without, one frame from each of ``k`` scenes spread over the dataset. Drawn with
matplotlib's Agg canvas (no GUI) and written atomically.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from viewal.core.io import atomic_path

from .base import IGNORE_INDEX, Frame, RGBDDataset

__all__ = ["class_palette", "colorize_labels", "colorize_depth", "superpixel_boundaries", "pick_frames",
           "draw_contact_sheet"]


def class_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: matplotlib's tab20 (then hsv) — distinct for up to 20 classes."""
    from matplotlib import colormaps

    tab = colormaps["tab20"]
    cols = [tab(i % 20)[:3] for i in range(min(num_classes, 20))]
    if num_classes > 20:
        hsv = colormaps["hsv"]
        cols += [hsv((i - 20) / max(1, num_classes - 20))[:3] for i in range(20, num_classes)]
    return (np.array(cols).reshape(-1, 3) * 255).round().astype(np.uint8)


def colorize_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class ids → (H, W, 3) uint8; ignore (255) and unknown ids are black."""
    lab = np.asarray(labels).astype(np.int64)
    out = np.zeros(lab.shape + (3,), np.uint8)
    ok = (lab >= 0) & (lab < len(palette)) & (lab != IGNORE_INDEX)
    out[ok] = palette[lab[ok]]
    return out


def colorize_depth(depth: np.ndarray, vmax: float, cmap: str = "turbo") -> np.ndarray:
    """(H, W) metres → (H, W, 3) uint8 through ``cmap`` over [0, vmax]; invalid depth is black."""
    from matplotlib import colormaps

    d = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(d) & (d > 0)
    rgb = (colormaps[cmap](np.clip(np.where(valid, d, 0) / vmax, 0, 1))[..., :3] * 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def superpixel_boundaries(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour belongs to another superpixel."""
    b = np.zeros(ids.shape, bool)
    b[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    b[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return b


def pick_frames(ds: RGBDDataset, k: int, scene: str | None = None) -> list[Frame]:
    """``k`` evenly spaced frames of ``scene``, or one frame from each of ``k`` scenes spread over the dataset."""
    if k < 1:
        raise ValueError(f"preview: --frames must be >= 1, got {k}")
    if scene is not None:
        frames = ds.frames(scene)
        idx = np.unique(np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int))
        return [frames[i] for i in idx]
    scenes = ds.scene_ids
    if len(scenes) >= k:
        chosen = [scenes[i] for i in np.unique(np.linspace(0, len(scenes) - 1, k).round().astype(int))]
        out = []
        for j, s in enumerate(chosen):
            fr = ds.frames(s)
            out.append(fr[(j * 7 + len(fr) // 3) % len(fr)])
        return out
    frames = list(ds.all_frames())
    idx = np.unique(np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int))
    return [frames[i] for i in idx]


def draw_contact_sheet(ds: RGBDDataset, frames: Sequence[Frame], out: str | Path, superpixels=None,
                       title: str | None = None, dpi: int = 100) -> Path:
    """Draw rows of RGB | depth | labels | superpixels for ``frames`` and write a PNG to ``out``.

    Args:
        superpixels: callable frame → (H, W) ids (e.g. ``SuperpixelCache.get``); column omitted if None.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    out = Path(out)
    palette = class_palette(ds.num_classes)
    depths = [f.depth for f in frames]
    valid = np.concatenate([d[d > 0].ravel() for d in depths]) if depths else np.array([1.0])
    vmax = float(np.percentile(valid, 99)) if valid.size else 1.0
    cols = ["RGB", f"depth (0-{vmax:.1f} m)", "labels"] + (["superpixels"] if superpixels is not None else [])
    n, m = len(frames), len(cols)
    h, w = frames[0].rgb.shape[:2]
    cell = 3.2
    fig = Figure(figsize=(cell * m, cell * h / w * n * 1.08 + 1.1), dpi=dpi)
    FigureCanvasAgg(fig)
    top = 1 - 0.35 / fig.get_figheight()
    bottom = 0.5 / fig.get_figheight()
    gs = fig.add_gridspec(n, m, left=0.025, right=0.99, top=top - 0.3 / fig.get_figheight(), bottom=bottom,
                          wspace=0.02, hspace=0.12)
    present: set[int] = set()
    for r, f in enumerate(frames):
        rgb = f.rgb
        lab = f.labels
        panels = [rgb, colorize_depth(f.depth, vmax)]
        if lab is not None:
            present.update(int(c) for c in np.unique(lab) if c != IGNORE_INDEX)
            panels.append(colorize_labels(lab, palette))
        else:
            panels.append(np.zeros_like(rgb))
        if superpixels is not None:
            ids = superpixels(f)
            over = rgb.copy()
            over[superpixel_boundaries(ids)] = (255, 230, 0)
            panels.append(over)
        for c, img in enumerate(panels):
            ax = fig.add_subplot(gs[r, c])
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(f.key, fontsize=7)
            if c == 3 and superpixels is not None:
                ax.text(0.98, 0.02, f"{int(ids.max()) + 1} regions", transform=ax.transAxes, fontsize=6,
                        ha="right", va="bottom", color="white",
                        bbox=dict(facecolor="black", alpha=0.5, pad=1, lw=0))
    handles = [Patch(facecolor=palette[i] / 255, edgecolor="k", linewidth=0.3,
                     label=ds.class_names[i] + ("" if i in present else " (not shown)"))
               for i in range(ds.num_classes)]
    fig.legend(handles=handles, loc="lower center", ncol=min(9, ds.num_classes), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 0.0), handlelength=1.2, columnspacing=1.0)
    fig.suptitle(title or f"{ds.root.name}: {len(ds.scene_ids)} scenes, {len(ds)} frames, "
                 f"{ds.num_classes} classes ({ds.format} format)", fontsize=10, y=1 - 0.05 / fig.get_figheight(),
                 va="top")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return out
