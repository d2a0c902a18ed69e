"""Results of active-learning experiments: CSV rows, label-efficiency curves, terminal tables.

A result row is ``(method, seed, cycle, labelled_fraction, miou, regions, frames)``: ``labelled_fraction``
is the share of the training pool's pixels that carry a label (0..1); the annotation cost is also counted
as ``regions`` (labelled regions so far, each ≈ one click-and-label, a seed frame counting as one, as
Cai et al. CVPR 2021 count cost) and ``frames`` (frames touched by a label); -1 when unknown.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from viewal.core.io import atomic_path, write_text

__all__ = ["ResultRow", "read_results", "write_results", "aggregate", "fraction_to_reach", "format_table",
           "plot_curves"]


@dataclass(frozen=True)
class ResultRow:
    method: str
    seed: int
    cycle: int
    labelled_fraction: float
    miou: float
    regions: int = -1
    frames: int = -1

#: the cost axes a curve can be drawn against: row attribute, axis label, scale
COSTS = {"pixels": ("labelled_fraction", "% of training pixels labelled", 100.0),
         "regions": ("regions", "regions labelled (clicks)", 1.0),
         "frames": ("frames", "frames touched", 1.0)}


def write_results(path: str | Path, rows: Iterable[ResultRow]) -> None:
    """Write rows as CSV (header ``method,seed,cycle,labelled_fraction,miou``), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([f.name for f in fields(ResultRow)])
    for r in sorted(rows, key=lambda r: (r.method, r.seed, r.cycle)):
        w.writerow([r.method, r.seed, r.cycle, f"{r.labelled_fraction:.6f}", f"{r.miou:.6f}", r.regions, r.frames])
    write_text(path, buf.getvalue())


def read_results(path: str | Path) -> list[ResultRow]:
    with open(path, newline="") as fh:
        return [ResultRow(r["method"], int(r["seed"]), int(r["cycle"]), float(r["labelled_fraction"]),
                          float(r["miou"]), int(r.get("regions") or -1), int(r.get("frames") or -1))
                for r in csv.DictReader(fh)]


def aggregate(rows: Sequence[ResultRow]) -> dict[str, dict[str, np.ndarray]]:
    """Per method and cycle: mean/std of labelled fraction and mIoU over seeds.

    Returns ``{method: {"cycle", "fraction", "fraction_std", "miou", "miou_std", "n", "regions",
    "frames"}}`` (arrays over cycles; regions/frames are means over seeds).
    """
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r.method][r.cycle].append(r)
    out = {}
    for m, cycles in by.items():
        cs = sorted(cycles)
        frac = [np.mean([r.labelled_fraction for r in cycles[c]]) for c in cs]
        fstd = [np.std([r.labelled_fraction for r in cycles[c]]) for c in cs]
        miou = [np.mean([r.miou for r in cycles[c]]) for c in cs]
        mstd = [np.std([r.miou for r in cycles[c]]) for c in cs]
        out[m] = {"cycle": np.array(cs), "fraction": np.array(frac), "fraction_std": np.array(fstd),
                  "miou": np.array(miou), "miou_std": np.array(mstd), "n": np.array([len(cycles[c]) for c in cs]),
                  "regions": np.array([np.mean([r.regions for r in cycles[c]]) for c in cs]),
                  "frames": np.array([np.mean([r.frames for r in cycles[c]]) for c in cs])}
    return out


def fraction_to_reach(fractions: np.ndarray, mious: np.ndarray, target: float) -> float:
    """Smallest labelled fraction at which the curve reaches ``target`` mIoU (linear interpolation
    between cycles); ``nan`` when it never does within the run."""
    fractions = np.asarray(fractions, float)
    mious = np.asarray(mious, float)
    for i in range(len(mious)):
        if mious[i] >= target:
            if i == 0:
                return float(fractions[0])
            f0, f1, m0, m1 = fractions[i - 1], fractions[i], mious[i - 1], mious[i]
            return float(f0 + (target - m0) / (m1 - m0) * (f1 - f0)) if m1 > m0 else float(f1)
    return float("nan")


def format_table(rows: Sequence[ResultRow], full_miou: float | None = None, target_share: float = 0.95) -> str:
    """Terminal table: mIoU (mean ± std over seeds) per method and cycle, plus labels to reach the target."""
    agg = aggregate(rows)
    methods = sorted(agg)
    n_cycles = max(len(a["cycle"]) for a in agg.values()) if agg else 0
    lines = []
    w = max([18, *(len(m) + 1 for m in methods)])  # the method column fits the longest spec
    head = f"{'method':<{w}}" + "".join(f"{'cycle ' + str(c):>20}" for c in range(n_cycles))
    if full_miou is not None:
        head += f"{'% to ' + format(100 * target_share, '.0f') + '% full':>16}"
    lines.append(head)
    lines.append("-" * len(head))
    for m in methods:
        a = agg[m]
        cells = "".join(f"{100 * a['miou'][i]:>8.1f}±{100 * a['miou_std'][i]:<4.1f}@{100 * a['fraction'][i]:>5.1f}%"
                        for i in range(len(a["cycle"])))
        line = f"{m:<{w}}" + cells
        if full_miou is not None:
            f = fraction_to_reach(a["fraction"], a["miou"], target_share * full_miou)
            line += f"{'not reached' if np.isnan(f) else format(100 * f, '.1f') + ' %':>16}"
        lines.append(line)
    lines.append("cells: mIoU % (mean ± std over seeds) @ % of training pixels labelled")
    if full_miou is not None:
        lines.append(f"full-data mIoU: {100 * full_miou:.1f} %")
    return "\n".join(lines)


def plot_curves(rows: Sequence[ResultRow], out: str | Path, full_miou: float | None = None,
                title: str = "Label efficiency", target_share: float = 0.95,
                groups: Sequence[tuple[str, Sequence[str]]] | None = None, cost: str = "pixels",
                noise_floor: float | None = None) -> Path:
    """mIoU against annotation cost, mean and spread (±1 std) over seeds; full-data mIoU as a line.

    ``groups``: [(panel title, [methods])] draws one panel per group side by side (shared y axis, one
    colour per method across panels), e.g. scorers in one panel and training aids in another.
    ``cost``: x axis, a key of :data:`COSTS` (``pixels``, ``regions``, ``frames``); a list of keys
    draws one panel per cost (every method in each). ``noise_floor``: mIoU std of retraining the same
    labels (0..1), drawn as a band under the full-data line's 95 % target.
    """
    costs = [cost] if isinstance(cost, str) else list(cost)
    for c in costs:
        if c not in COSTS:
            raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {c!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(rows)
    if len(costs) > 1:
        panels = [(COSTS[c][1], sorted(agg), c) for c in costs]
    elif groups:
        panels = [(t, [m for m in ms if m in agg], costs[0]) for t, ms in groups]
    else:
        panels = [(title, sorted(agg), costs[0])]
    multi = len(panels) > 1
    names = list(dict.fromkeys(m for _, ms, _ in panels for m in ms))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")  # one distinct colour per method
    colours = {m: cmap(k % cmap.N) for k, m in enumerate(names)}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), dpi=120, sharey=True, squeeze=False)
    for ax, (panel_title, methods, c) in zip(axes[0], panels):
        key, xlabel, scale = COSTS[c]
        src = {"labelled_fraction": "fraction"}.get(key, key)
        for m in methods:
            a = agg[m]
            x, y, s = scale * a[src], 100 * a["miou"], 100 * a["miou_std"]
            ax.plot(x, y, marker="o", lw=2 if m == "view_entropy" else 1.4, color=colours[m],
                    label=f"{m} (n={a['n'].max()})")
            ax.fill_between(x, y - s, y + s, color=colours[m], alpha=0.15)
        if full_miou is not None:
            ax.axhline(100 * full_miou, color="k", ls="--", lw=1, label=f"full data ({100 * full_miou:.1f})")
            ax.axhline(100 * target_share * full_miou, color="gray", ls=":", lw=1,
                       label=f"{100 * target_share:.0f}% of full data")
            if noise_floor:
                t = 100 * target_share * full_miou
                ax.axhspan(t - 100 * noise_floor, t + 100 * noise_floor, color="gray", alpha=0.12,
                           label=f"noise floor ±{100 * noise_floor:.1f}")
        if c != "pixels":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(panel_title if multi else title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylabel("test mIoU (%)")
    if multi:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out
