"""An HTML page of a run's cycles: one static, self-contained file (images embedded as base64 PNG, no server).

It reads top-down, for one method and seed (``OUT/ledgers/<method>-s<seed>.sqlite``):

* at the top, the run's whole curve once (:func:`run_curve_plot`): test mIoU against the share of pixels
  labelled, each point marked with its cycle (the full-data line when ``full_data.json`` exists); without
  labelled test frames, each class's share of the labelled pixels and of the model's predicted pixels against
  the share labelled;
* then one section per cycle, in order: what was asked (the queried regions on their frames,
  :func:`viewal.runs.visualize.query_contact_sheet`); view entropy and view divergence heat-maps of the queried frames
  under the model that chose the queries (the checkpoint of the cycle before;
  :func:`viewal.runs.visualize.view_heatmaps`) and the rendered point cloud of view entropy of the scene of the top
  query (:func:`viewal.runs.visualize.render_point_cloud_png`); a propagating run's human and propagated labels;
  then the numbers: the cycle's result and every query's rank, frame, region, score, view score, size and who
  labelled it.

Command line::

    viewal report --run OUT [--method view_entropy] [--seed 0] [--out OUT/report.html]

Pictures that need a checkpoint are left out (with a note on the page) when it is missing.
"""
from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.config import ALConfig
from viewal.core.io import atomic_path, write_text
from viewal.core.progress import progress_bar
from viewal.datasets import open_dataset
from viewal.nn.train import load_checkpoint
from viewal.runs.layout import RunLayout
from viewal.runs.ledger import Ledger
from viewal.runs.visualize import (
    propagation_sheet,
    query_contact_sheet,
    render_point_cloud_png,
    run_propagation,
    run_view_entropy,
    view_entropy_points,
    view_heatmaps,
)

__all__ = ["png_data_uri", "rendered_png", "scores_table", "write_cycle_report", "run_curve_plot"]

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
section.run, section.cycle { border-top: 2px solid #888; margin-top: 1.5em; }
figure { margin: 0.8em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; border: 1px solid #ddd; }
table.scores { border-collapse: collapse; font-size: 0.85em; }
table.scores td, table.scores th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
p.note { color: #a60; }
"""


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes (refuses anything that is not a PNG)."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("png_data_uri: not PNG bytes")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def rendered_png(draw: Callable[[Path], Any]) -> bytes:
    """The PNG that ``draw(path)`` (a writer of :mod:`viewal.runs.visualize` or :mod:`viewal.runs.curves`) writes, as
    bytes; the file lives in a temporary folder only."""
    with tempfile.TemporaryDirectory(prefix="viewal-report-") as d:
        path = Path(d) / "figure.png"
        draw(path)
        return path.read_bytes()


def _img(png: bytes, cls: str, alt: str, caption: str) -> str:
    return (f'<figure class="{cls}"><img class="{cls}" alt="{html.escape(alt)}" src="{png_data_uri(png)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def run_curve_plot(results: Sequence[dict], out: str | Path, *, full_miou: float | None = None,
                   class_names: Sequence[str] = (), title: str = "", top_classes: int = 8) -> Path:
    """The run's whole curve, one point per cycle (marked with its number), against the share of the pool's
    pixels labelled.

    results: the ledger's results (``[{"cycle", "labelled_fraction", "miou" | "class_pixels" and
    "predicted_class_shares"}, ...]``). With an mIoU: test mIoU (%), and the full-data line when ``full_miou``.
    Without (no labelled test frames): two panels, each class's share of the labelled pixels and of the model's
    predicted pixels (the ``top_classes`` largest by name, the others as thin grey lines). Raises ValueError
    when the results hold neither."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    miou = [r for r in results if r.get("miou") is not None]
    shares = [r for r in results if r.get("miou") is None and r.get("predicted_class_shares") is not None]
    if not miou and not shares:
        raise ValueError("run_curve_plot: no result with an mIoU or class shares")

    def name(k: int) -> str:
        return str(class_names[k]) if k < len(class_names) else str(k)

    def mark(ax, xs, ys, cycles):
        for x, y, c in zip(xs, ys, cycles):
            ax.annotate(str(c), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)

    if miou:
        x = [100 * float(r.get("labelled_fraction", float("nan"))) for r in miou]
        y = [100 * float(r["miou"]) for r in miou]
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        ax.plot(x, y, marker="o", lw=2, label="test mIoU")
        mark(ax, x, y, [int(r["cycle"]) for r in miou])
        if full_miou is not None:
            ax.axhline(100 * full_miou, color="k", ls="--", lw=1, label=f"full data ({100 * full_miou:.1f})")
        ax.set_ylabel("test mIoU (%)")
        ax.set_xlabel("% of the pool's pixels labelled (cycle number at each point)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    else:
        x = np.array([100 * float(r.get("labelled_fraction", float("nan"))) for r in shares])
        counts = np.array([np.asarray(r.get("class_pixels", []), np.float64) for r in shares])
        labelled = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        predicted = 100 * np.array([np.asarray(r["predicted_class_shares"], np.float64) for r in shares])
        top = np.argsort(-np.maximum(labelled.max(axis=0), predicted.max(axis=0)), kind="stable")[:top_classes]
        fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0), dpi=100, sharey=True)
        cmap = plt.get_cmap("tab10")
        for ax, ys, what in ((axes[0], labelled, "labelled pixels"), (axes[1], predicted, "predicted pixels")):
            for k in range(ys.shape[1]):
                if k not in top and ys[:, k].max() > 0:
                    ax.plot(x, ys[:, k], color="0.75", lw=0.8)
            for j, k in enumerate(top):
                ax.plot(x, ys[:, k], marker="o", ms=3, color=cmap(j % cmap.N), lw=1.5, label=name(int(k)))
            mark(ax, x, ys.max(axis=1), [int(r["cycle"]) for r in shares])
            ax.set_title(f"share of the {what} per class", fontsize=10)
            ax.set_xlabel("% of the pool's pixels labelled (cycle number above)")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("% of pixels")
        axes[1].legend(fontsize=7, loc="upper right")
        fig.suptitle(f"{title} (no labelled test frames: no mIoU)".strip(), fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(out)


def scores_table(queries: Sequence[Any], labelled_by: dict[int, str]) -> str:
    """HTML table of queries (rank order): rank, scene/frame, region, score, view score, pixels, labelled by."""
    head = ("rank", "frame", "region", "score", "view score", "pixels", "labelled by")
    rows = []
    for k, q in enumerate(queries):
        vs = "" if q.view_score is None else f"{float(q.view_score):.4g}"
        cells = (str(k), f"{q.scene_id}/{q.frame_id}", str(q.region_id), f"{float(q.score):.4g}", vs,
                 str(int(np.count_nonzero(q.mask))), labelled_by.get(q.query_id, "pending"))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return ('<table class="scores"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _frames_to_show(queries: Sequence[Any], max_frames: int) -> list[tuple[str, str]]:
    """Distinct (scene, frame) of the queries in rank order, the first ``max_frames``."""
    return list(dict.fromkeys((q.scene_id, q.frame_id) for q in queries))[:max_frames]


def write_cycle_report(run_dir: str | Path, method: str = "view_entropy", seed: int = 0, *,
                       out: str | Path | None = None, data: str | Path | None = None, max_frames: int = 4,
                       max_queries: int = 24, stride: int = 4, mc_passes: int | None = None,
                       progress: bool = True) -> Path:
    """Write the HTML page of a run (see module docstring); returns its path (default ``OUT/report.html``).

    Args:
        run_dir: ``viewal experiment --out``. method, seed: which ledger.
        data: dataset directory (default: the one recorded in the ledger).
        max_frames: queried frames with heat-maps per cycle. max_queries: regions on the contact sheet.
        stride: pixel step of the point cloud. mc_passes: MC-dropout passes (default: the run's).
    """
    layout = RunLayout(Path(run_dir))
    lpath = layout.ledger(method, seed)
    if not lpath.is_file():
        raise FileNotFoundError(f"no ledger {lpath} (ledgers in {layout.ledgers}: {layout.ledger_names() or 'none'})")
    with Ledger(lpath) as led:
        cfg = led.config()
        al = cfg.get("al", {})
        queries = led.queries()
        results = led.results()
        labels = led.labels()
    labelled_by = {r["query_id"]: r["origin"] or r["source"] for r in labels if r["query_id"] is not None}
    unasked: dict[int, list[dict]] = {}                  # labels without a query: the seed set, free-form labels
    for r in labels:
        if r["query_id"] is None:
            unasked.setdefault(int(r["cycle"]), []).append(r)
    data = data or cfg.get("dataset")
    if not data:
        raise ValueError(f"{lpath}: no dataset path in the ledger config; pass --data")
    size = tuple(queries[0].mask.shape) if queries else (tuple(al["size"]) if al.get("size") else None)
    dataset = open_dataset(data, **({"height": size[0], "width": size[1]} if size else {}))
    mc = int(mc_passes or al.get("mc_passes", 8))
    run_cfg = ALConfig.from_json({**al, "seed": seed}) if al else None
    by_cycle: dict[int, list] = {}
    for q in queries:
        by_cycle.setdefault(int(q.cycle), []).append(q)
    cycles = sorted(set(by_cycle) | {int(r["cycle"]) for r in results})
    full = None
    if layout.full_data.is_file():
        full = json.loads(layout.full_data.read_text()).get("miou")
    run_part = _run_part(results, full, dataset.class_names, f"{method}, seed {seed}: cycles {_span(cycles)}")
    sections = []
    bar = progress_bar(total=len(cycles), desc="report", unit="cycle", disable=not progress)
    for c in cycles:
        qs = by_cycle.get(c, [])
        res = next((r for r in results if int(r["cycle"]) == c), None)
        pictures, numbers = [], [_result_line(res, dataset.class_names)] if res is not None else []
        if qs or c in unasked:
            pictures.append("<h3>What was asked</h3>")
        if c in unasked:
            ls = unasked[c]
            sources = html.escape(", ".join(sorted({r["source"] for r in ls})))
            pictures.append(f"<p>{len(ls)} labels without a query ({sources}): "
                            f"{len({(r['scene_id'], r['frame_id']) for r in ls})} frames, "
                            f"{sum(int(r['n_pixels']) for r in ls)} px</p>")
        if qs:
            px = sum(int(np.count_nonzero(q.mask)) for q in qs)
            png = rendered_png(partial(query_contact_sheet, dataset, qs, max_queries=max_queries,
                                       title=f"cycle {c}: {len(qs)} regions, {px} px"))
            pictures.append(_img(png, "queries", f"queried regions of cycle {c}",
                                 f"{len(qs)} queried regions ({px} px) on their frames, in rank order"))
            ckpt = layout.checkpoint(method, run_cfg, c - 1) if run_cfg is not None and c > 0 else None
            if ckpt is None or not ckpt.is_file():
                pictures.append(f'<p class="note">no checkpoint {ckpt} of the model that chose these queries: '
                                f"no heat-maps or point cloud</p>")
            else:
                pictures.append("<h3>Why: the model that chose them</h3>")
                pictures += _heatmap_parts(dataset, qs, load_checkpoint(ckpt, num_classes=dataset.num_classes),
                                           ckpt.name, run_cfg, c, mc, seed, max_frames, stride)
        if run_cfg is not None and run_cfg.propagate:
            prop_numbers, prop_pictures = _propagation_parts(dataset, lpath, run_cfg, c, res, max_frames)
            pictures += prop_pictures
            numbers += prop_numbers
        if qs:
            numbers.append(scores_table(qs, labelled_by))
        parts = [f'<section class="cycle" id="cycle-{c}"><h2>Cycle {c}</h2>', *pictures]
        if numbers:
            parts += ["<h3>Numbers</h3>", *numbers]
        parts.append("</section>")
        sections.append("\n".join(parts))
        bar.update(1)
    bar.close()
    title = f"viewal run {layout.root.name}: {method}, seed {seed}"
    nav = " · ".join(['<a href="#run">the run</a>'] + [f'<a href="#cycle-{c}">cycle {c}</a>' for c in cycles])
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n"
            f"<p>ledger {html.escape(str(lpath))}, dataset {html.escape(str(data))}; {len(queries)} queries in "
            f"{len(by_cycle)} cycles</p>\n<nav>{nav}</nav>\n{run_part}\n" + "\n".join(sections)
            + "\n</body></html>\n")
    dest = Path(out) if out is not None else layout.report
    write_text(dest, page)
    return dest


def _span(cycles: Sequence[int]) -> str:
    return f"{cycles[0]}..{cycles[-1]}" if len(cycles) > 1 else (str(cycles[0]) if cycles else "none")


def _run_part(results: Sequence[dict], full: float | None, class_names: Sequence[str], title: str) -> str:
    """The section at the top: the run's whole curve (:func:`run_curve_plot`), or a note when no cycle has a
    result yet."""
    parts = ['<section class="run" id="run"><h2>The run</h2>']
    if any(r.get("miou") is not None for r in results):
        png = rendered_png(partial(run_curve_plot, results, full_miou=full, class_names=class_names, title=title))
        parts.append(_img(png, "curve", "the run's learning curve",
                          "test mIoU after each cycle against the share of the pool's pixels labelled; the number at "
                          "each point is the cycle, its section below"))
    elif any(r.get("predicted_class_shares") is not None for r in results):
        png = rendered_png(partial(run_curve_plot, results, class_names=class_names, title=title))
        parts.append(_img(png, "curve", "the run's class shares",
                          "no labelled test frames, so no mIoU: each class's share of the labelled pixels (left) and "
                          "of the pixels the model predicts (right) after each cycle, against the share of the "
                          "pool's pixels labelled; the number above each point is the cycle"))
    else:
        parts.append('<p class="note">no cycle has a result yet: no curve</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _result_line(res: dict, class_names: Sequence[str], top: int = 5) -> str:
    """The cycle's result in one paragraph: mIoU and share labelled, or without ground truth the share labelled,
    the classes seen and the largest classes' shares of labelled and predicted pixels."""
    frac = 100 * float(res.get("labelled_fraction", float("nan")))
    if res.get("miou") is not None:
        return (f"<p>test mIoU after the cycle: {100 * float(res['miou']):.1f} %, labelled {frac:.2f} % of the "
                "pool's pixels</p>")
    text = f"<p>no labelled test frames, so no mIoU; labelled {frac:.2f} % of the pool's pixels"
    if res.get("class_pixels") is not None:
        counts = np.asarray(res["class_pixels"], np.float64)
        shares = 100 * counts / max(counts.sum(), 1.0)
        pred = 100 * np.asarray(res.get("predicted_class_shares") or np.zeros_like(counts), np.float64)
        big = [int(k) for k in np.argsort(-shares, kind="stable")[:top] if shares[k] > 0]
        names = [html.escape(str(class_names[k]) if k < len(class_names) else str(k)) for k in big]
        text += (f", {len(res.get('classes_seen', []))} classes seen; largest classes, % of the labelled / predicted "
                 "pixels: " + ", ".join(f"{n} {shares[k]:.1f} / {pred[k]:.1f}" for n, k in zip(names, big)))
    return text + "</p>"


def _heatmap_parts(dataset, qs: Sequence[Any], model, ckpt_name: str, run_cfg, cycle: int, mc: int, seed: int,
                   max_frames: int, stride: int) -> list[str]:
    """View entropy and divergence heat-maps of the first ``max_frames`` queried frames, and the view entropy
    point cloud of the top query's scene, under ``model`` (the one that chose the queries)."""
    shown = _frames_to_show(qs, max_frames)
    ve_of: dict[str, tuple] = {}
    for scene in dict.fromkeys(s for s, _ in shown):
        frames = dataset.frames(scene)
        ve_of[scene] = (frames, *run_view_entropy(model, frames, run_cfg, mc, seed, progress=False))
    rgbs, masks, ves, vds, titles = [], [], [], [], []
    for s, f in shown:
        frames, ve, vd = ve_of[s]
        j = [fr.frame_id for fr in frames].index(f)
        rgbs.append(frames[j].rgb)
        masks.append(np.any([q.mask for q in qs if (q.scene_id, q.frame_id) == (s, f)], axis=0))
        ves.append(ve[j])
        vds.append(vd[j])
        titles.append(f"{s}/{f}")
    out = [_img(rendered_png(partial(view_heatmaps, rgbs, masks, ves, vds, titles)), "heatmaps",
                f"view entropy and divergence, cycle {cycle}",
                f"view entropy and view divergence (bits) of the queried frames under {ckpt_name} ({mc} MC passes); "
                "queried regions outlined")]
    scene = shown[0][0]
    frames, ve, _ = ve_of[scene]
    pts, vals = view_entropy_points(frames, ve, stride)
    png = rendered_png(partial(render_point_cloud_png, pts, vals, title=f"view entropy of {scene} under {ckpt_name}"))
    out.append(_img(png, "cloud", f"view entropy point cloud, cycle {cycle}",
                    f"view entropy of scene {scene} ({len(frames)} frames, every {stride}th pixel)"))
    return out


def _propagation_parts(dataset, ledger_path: str | Path, run_cfg, cycle: int, res: dict | None,
                      max_frames: int = 4) -> tuple[list[str], list[str]]:
    """HTML of a propagating run's cycle as (numbers, pictures): what propagation added beside the human labels
    (the cycle's metrics), and the frames it added most to, human labels and propagated ones in two colours
    (:func:`viewal.runs.visualize.propagation_sheet` on the labels as they stood after ``cycle``)."""
    out = []
    if res is not None and "propagated_pixels" in res:
        acc = res.get("propagation_accuracy")
        out.append(f"<p>3D propagation: {int(res['propagated_pixels'])} pixels beside the human labels "
                   f"(&times;{float(res.get('propagation_multiplier', float('nan'))):.2f}), "
                   f"{int(res.get('propagated_regions', 0))} regions no longer asked"
                   + (f", {100 * float(acc):.1f} % agreeing with the pool's ground truth" if acc is not None else "")
                   + "; the costs count human labels only</p>")
    with Ledger(ledger_path) as led:
        scenes = run_propagation(dataset, led, run_cfg, max_cycle=cycle)
    if scenes is None:
        return out, ['<p class="note">the dataset does not give the run\'s pool: no propagation picture</p>']
    if not any(sp.n_propagated for sp in scenes.values()):
        return out, []
    shown: dict = {}
    png = rendered_png(lambda path: shown.update(propagation_sheet(dataset, scenes, path, max_frames=max_frames,
                                                                   title=f"labels after cycle {cycle}")))
    return out, [_img(png, "propagation", f"human and propagated labels after cycle {cycle}",
                      f"labels after cycle {cycle} on the {shown['frames']} pool frames propagation added most to: "
                      f"human (blue) and propagated (orange)")]
