#!/usr/bin/env python
"""How fast the full-data model learns on 2 CPU cores: test mIoU against SGD steps, and seconds per step,
for several training recipes measured side by side in one run.

Each recipe trains the full-data model (every label of the train split) and validates on the *test*
split after every ``--eval-every`` steps, so one run gives the whole learning curve. Recipes are given
as ``name:key=value,key=value`` (keys: lr, head_lr_mult, decoder_channels, init, encoder, batch_size,
threads, channels_last, output_stride, sampling). Prints a table and writes ``OUT.csv``, ``OUT.json`` and ``OUT.png``.

Example (the run in docs/model.md)::

    python scripts/bench_training.py --data data/bench --steps 600 --eval-every 150 --out docs/training \\
        --recipe "scratch-4e-3:init=random,lr=4e-3" --recipe "imagenet-4e-3:lr=4e-3" \\
        --recipe "imagenet-4e-4:lr=4e-4" --recipe "imagenet-1e-3:lr=1e-3" \\
        --recipe "imagenet-1e-3-dec64:lr=1e-3,decoder_channels=64"

Nothing else should share the cores while it runs (seconds per step are part of the result).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")


def parse_recipe(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    opts = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        opts[k.strip()] = v.strip()
    return name.strip(), opts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--size", default="96x128")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--recipe", action="append", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output prefix (OUT.csv, OUT.json, OUT.png)")
    args = p.parse_args(argv)

    import torch

    from viewal.datasets import open_dataset
    from viewal.nn.data import parse_size
    from viewal.nn.model import build_model
    from viewal.nn.train import TrainConfig, fit

    size = parse_size(args.size)
    ds = open_dataset(args.data, height=size[0], width=size[1])
    train, test = ds.split("train"), ds.split("test")
    print(f"{ds!r}: train {len(train)} frames, test {len(test)}; {args.steps} steps, test mIoU every {args.eval_every}")
    rows, summary = [], {}
    for spec in args.recipe:
        name, o = parse_recipe(spec)
        bs = int(o.get("batch_size", 8))
        threads = int(o.get("threads", 2))
        torch.set_num_threads(threads)
        torch.manual_seed(args.seed)
        model = build_model(ds.num_classes, o.get("encoder", "efficientnet-lite0"),
                            encoder_weights=o.get("init", "imagenet"),
                            decoder_channels=int(o.get("decoder_channels", 256)),
                            output_stride=int(o.get("output_stride", 16)))
        if o.get("channels_last", "0") == "1":
            model = model.to(memory_format=torch.channels_last)
        cfg = TrainConfig(epochs=1, steps=args.steps, steps_per_epoch=args.eval_every, batch_size=bs,
                          lr=float(o.get("lr", 1e-3)), head_lr_mult=float(o.get("head_lr_mult", 10)),
                          size=size, seed=args.seed, num_threads=threads, eval_every=1,
                          sampling=o.get("sampling", "uniform"))
        t0 = time.perf_counter()
        res = fit(model, train, test, cfg, progress=False, log_epochs=True, desc=name)
        total = time.perf_counter() - t0
        train_s = sum(h["train_seconds"] for h in res.history)
        step_s = train_s / args.steps
        curve = [(h["step"], h["val_miou"]) for h in res.history]
        for st, m in curve:
            rows.append({"recipe": name, "step": st, "test_miou": round(m, 4)})
        summary[name] = {"options": o, "seconds_per_step": round(step_s, 4), "total_seconds": round(total, 1),
                         "curve": curve, "best": round(max(m for _, m in curve), 4)}
        print(f"{name:28s} {step_s:.3f} s/step  " + "  ".join(f"{st}:{m:.3f}" for st, m in curve), flush=True)
        write(args, rows, summary, len(train), len(test))
    return 0


def write(args, rows: list[dict], summary: dict, n_train: int, n_test: int) -> None:
    """CSV, JSON and plot of the recipes measured so far (rewritten after each recipe)."""
    import numpy as np

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["recipe", "step", "test_miou"])
        w.writeheader()
        w.writerows(rows)
    out.with_suffix(".json").write_text(json.dumps({"data": args.data, "size": args.size, "steps": args.steps,
                                                    "train_frames": n_train, "test_frames": n_test,
                                                    "recipes": summary}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in summary.items():
        xs, ys = zip(*s["curve"])
        ax.plot(xs, np.asarray(ys) * 100, marker="o", label=f"{name} ({s['seconds_per_step']:.2f} s/step)")
    ax.set_xlabel("SGD steps")
    ax.set_ylabel("test mIoU (%)")
    ax.set_title(f"full-data model, {n_train} train frames, {args.size}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)
    print(f"wrote {out.with_suffix('.csv')}, {out.with_suffix('.json')}, {out.with_suffix('.png')}")


if __name__ == "__main__":
    raise SystemExit(main())
