"""An HTML page of a run's cycles: one static, self-contained file (images embedded as base64 PNG, no server).

For each cycle of one method and seed (``OUT/ledgers/<method>-s<seed>.sqlite``) the page shows

* the queried regions on their frames (:func:`viewal.visualize.query_contact_sheet`);
* view entropy and view divergence heat-maps of the queried frames under the model that chose the
  queries (the checkpoint of the cycle before; :func:`viewal.visualize.view_heatmaps`);
* the rendered point cloud of view entropy of the scene of the top query
  (:func:`viewal.visualize.render_point_cloud_png`);
* the learning curve so far (:func:`viewal.report.plot_curves` on the ledger's results up to the cycle);
* the scores: every query's rank, frame, region, score, view score, size and who labelled it.

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

from viewal.io import write_text
from viewal.layout import RunLayout

__all__ = ["png_data_uri", "rendered_png", "scores_table", "write_cycle_report", "class_shares_plot"]

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
section.cycle { border-top: 2px solid #888; margin-top: 1.5em; }
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
    """The PNG that ``draw(path)`` (a writer of :mod:`viewal.visualize` or :mod:`viewal.report`) writes, as
    bytes; the file lives in a temporary folder only."""
    with tempfile.TemporaryDirectory(prefix="viewal-report-") as d:
        path = Path(d) / "figure.png"
        draw(path)
        return path.read_bytes()


def _img(png: bytes, cls: str, alt: str, caption: str) -> str:
    return (f'<figure class="{cls}"><img class="{cls}" alt="{html.escape(alt)}" src="{png_data_uri(png)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def class_shares_plot(class_names: Sequence[str], class_pixels: Sequence[int], predicted: Sequence[float],
                      out: str | Path, title: str = "") -> Path:
    """Bar chart of what can be said without ground truth: each class's share of the labelled pixels beside its
    share of the model's predicted pixels (classes with neither left out). class_pixels: (C,) counts; predicted:
    (C,) shares summing to 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from viewal.io import atomic_path

    counts = np.asarray(class_pixels, dtype=np.float64)
    labelled = counts / max(counts.sum(), 1.0)
    predicted = np.asarray(predicted, dtype=np.float64)
    keep = np.flatnonzero((labelled > 0) | (predicted > 0.001))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(keep) + 1.5), 3.2), dpi=100)
    x = np.arange(len(keep))
    ax.bar(x - 0.2, 100 * labelled[keep], width=0.4, label="labelled pixels")
    ax.bar(x + 0.2, 100 * predicted[keep], width=0.4, label="predicted pixels")
    ax.set_xticks(x, [str(class_names[k]) if k < len(class_names) else str(k) for k in keep], rotation=60,
                  ha="right", fontsize=8)
    ax.set_ylabel("% of pixels")
    ax.set_title(f"classes without ground truth {title}".strip(), fontsize=9)
    ax.legend(fontsize=8)
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
    from viewal.datasets import open_dataset
    from viewal.learner import ALConfig
    from viewal.ledger import Ledger
    from viewal.progress import progress_bar
    from viewal.report import ResultRow, plot_curves
    from viewal.train import load_checkpoint
    from viewal.visualize import (
        query_contact_sheet,
        render_point_cloud_png,
        run_view_entropy,
        view_entropy_points,
        view_heatmaps,
    )

    layout = RunLayout(Path(run_dir))
    lpath = layout.ledger(method, seed)
    if not lpath.is_file():
        raise FileNotFoundError(f"no ledger {lpath} (ledgers in {layout.ledgers}: {layout.ledger_names() or 'none'})")
    with Ledger(lpath) as led:
        cfg = led.config()
        al = cfg.get("al", {})
        queries = led.queries()
        results = led.results()
        labelled_by = {r["query_id"]: r["origin"] or r["source"] for r in led.labels() if r["query_id"] is not None}
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
    sections = []
    bar = progress_bar(total=len(cycles), desc="report", unit="cycle", disable=not progress)
    for c in cycles:
        parts = [f'<section class="cycle" id="cycle-{c}"><h2>Cycle {c}</h2>']
        qs = by_cycle.get(c, [])
        res = next((r for r in results if int(r["cycle"]) == c), None)
        if res is not None and res.get("miou") is not None:
            parts.append(f"<p>test mIoU after the cycle: {100 * float(res['miou']):.1f} %, labelled "
                         f"{100 * float(res.get('labelled_fraction', float('nan'))):.2f} % of the pool's pixels</p>")
        elif res is not None and res.get("predicted_class_shares") is not None:
            parts.append(f"<p>no labelled test frames, so no mIoU; labelled "
                         f"{100 * float(res.get('labelled_fraction', float('nan'))):.2f} % of the pool's pixels, "
                         f"{len(res.get('classes_seen', []))} classes seen</p>")
            png = rendered_png(partial(class_shares_plot, dataset.class_names, res["class_pixels"],
                                       res["predicted_class_shares"], title=f"after cycle {c}"))
            parts.append(_img(png, "curve", f"class shares after cycle {c}",
                              "share of the labelled pixels per class, and of the pixels the model predicts per class "
                              f"on the {res.get('eval_split', 'test')} frames"))
        if run_cfg is not None and run_cfg.propagate:
            parts += _propagation_parts(dataset, lpath, run_cfg, c, res, max_frames)
        if qs:
            px = sum(int(np.count_nonzero(q.mask)) for q in qs)
            png = rendered_png(partial(query_contact_sheet, dataset, qs, max_queries=max_queries,
                                       title=f"cycle {c}: {len(qs)} regions, {px} px"))
            parts.append(_img(png, "queries", f"queried regions of cycle {c}",
                              f"{len(qs)} queried regions ({px} px) on their frames, in rank order"))
            ckpt = layout.checkpoint(method, run_cfg, c - 1) if run_cfg is not None and c > 0 else None
            if ckpt is None or not ckpt.is_file():
                parts.append(f'<p class="note">no checkpoint {ckpt} of the model that chose these queries: '
                             f"no heat-maps or point cloud</p>")
            else:
                model = load_checkpoint(ckpt, num_classes=dataset.num_classes)
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
                png = rendered_png(partial(view_heatmaps, rgbs, masks, ves, vds, titles))
                parts.append(_img(png, "heatmaps", f"view entropy and divergence, cycle {c}",
                                  f"view entropy and view divergence (bits) of the queried frames under {ckpt.name} "
                                  f"({mc} MC passes); queried regions outlined"))
                scene = shown[0][0]
                frames, ve, _ = ve_of[scene]
                pts, vals = view_entropy_points(frames, ve, stride)
                png = rendered_png(partial(render_point_cloud_png, pts, vals,
                                           title=f"view entropy of {scene} under {ckpt.name}"))
                parts.append(_img(png, "cloud", f"view entropy point cloud, cycle {c}",
                                  f"view entropy of scene {scene} ({len(frames)} frames, every {stride}th pixel)"))
        rows = [ResultRow(method, seed, int(r["cycle"]), float(r.get("labelled_fraction", 0.0)), float(r["miou"]),
                          int(r.get("regions", -1)), int(r.get("frames", -1)))
                for r in results if int(r["cycle"]) <= c and r.get("miou") is not None]
        if rows:
            png = rendered_png(partial(plot_curves, rows, full_miou=full,
                                       title=f"{method}, seed {seed}: up to cycle {c}"))
            parts.append(_img(png, "curve", f"learning curve up to cycle {c}",
                              "test mIoU against the share of pixels labelled, cycles 0.." + str(c)))
        if qs:
            parts.append(scores_table(qs, labelled_by))
        parts.append("</section>")
        sections.append("\n".join(parts))
        bar.update(1)
    bar.close()
    title = f"viewal run {layout.root.name}: {method}, seed {seed}"
    nav = " · ".join(f'<a href="#cycle-{c}">cycle {c}</a>' for c in cycles)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n"
            f"<p>ledger {html.escape(str(lpath))}, dataset {html.escape(str(data))}; {len(queries)} queries in "
            f"{len(by_cycle)} cycles</p>\n<nav>{nav}</nav>\n" + "\n".join(sections) + "\n</body></html>\n")
    dest = Path(out) if out is not None else layout.report
    write_text(dest, page)
    return dest


def _propagation_parts(dataset, ledger_path: str | Path, run_cfg, cycle: int, res: dict | None,
                      max_frames: int = 4) -> list[str]:
    """HTML of a propagating run's cycle: what propagation added beside the human labels (the cycle's metrics)
    and the frames it added most to, human labels and propagated ones in two colours
    (:func:`viewal.visualize.propagation_sheet` on the labels as they stood after ``cycle``)."""
    from viewal.ledger import Ledger
    from viewal.visualize import propagation_sheet, run_propagation

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
        return out + ['<p class="note">the dataset does not give the run\'s pool: no propagation picture</p>']
    if not any(sp.n_propagated for sp in scenes.values()):
        return out
    shown: dict = {}
    png = rendered_png(lambda path: shown.update(propagation_sheet(dataset, scenes, path, max_frames=max_frames,
                                                                   title=f"labels after cycle {cycle}")))
    out.append(_img(png, "propagation", f"human and propagated labels after cycle {cycle}",
                    f"labels after cycle {cycle} on the {shown['frames']} pool frames propagation added most to: "
                    f"human (blue) and propagated (orange)"))
    return out
