"""``viewal train``: DeepLabv3+ on every label of the train split (the full-data reference), with
:func:`viewal.nn.train.fit`; writes ``OUT/model.pt`` (best-validation checkpoint) and ``OUT/metrics.json``.

The reference needs ground truth: a train frame without labels is refused (the error names the first one and
how many lack labels) unless ``--skip-unlabelled`` trains on the labelled ones. Val/test frames without labels
are left out of validation and of the mIoU (``metrics.json`` counts them); with no labelled val frame the
final weights are kept."""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from viewal.cli.options import add_network_arguments
from viewal.core.io import write_json
from viewal.datasets import open_dataset
from viewal.datasets.base import MissingLabelsError, frames_without_labels
from viewal.nn.data import parse_size
from viewal.nn.distributed import finish, init_from_env
from viewal.nn.model import build_model
from viewal.nn.train import TrainConfig, evaluate, fit, save_checkpoint, set_threads, train_subset

__all__ = ["configure_parser", "run", "labelled_train_frames"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset directory (any format viewal.datasets.open_dataset reads)")
    p.add_argument("--out", required=True, help="output directory: model.pt (best-val checkpoint) + metrics.json")
    p.add_argument("--epochs", type=int, default=50, help="training epochs (ViewAL: 50)")
    add_network_arguments(p)
    p.add_argument("--size", default=None, help="working size HxW (e.g. 120x160); default: the dataset's resolution")
    p.add_argument("--batch-size", type=int, default=6)
    p.add_argument("--lr", type=float, default=4e-4, help="encoder lr (ASPP + decoder: x10)")
    p.add_argument("--dropout", type=float, default=0.25, help="MC Dropout2d p")
    p.add_argument("--train-fraction", type=float, default=1.0,
                   help="use a random fraction of the train frames (label-efficiency / pretraining comparisons)")
    p.add_argument("--skip-unlabelled", action="store_true",
                   help="train on the train frames that have labels (default: refuse a train split with frames "
                        "without labels)")
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """``viewal train``; under ``torchrun --nproc_per_node N`` data-parallel (``viewal.nn.distributed``), with
    only rank 0 printing and writing the checkpoint and metrics."""
    w = init_from_env(args.device)
    try:
        return _run(args, w)
    finally:
        finish()  # every rank leaves the process group before it exits


def labelled_train_frames(frames: list, skip_unlabelled: bool = False) -> list:
    """The train frames of the full-data reference: all of ``frames``, which must have labels, or with
    ``skip_unlabelled`` those that have. Raises :class:`viewal.datasets.MissingLabelsError` naming the first
    frame without labels and how many lack them (always when none has labels)."""
    missing = frames_without_labels(frames)
    if not frames:
        raise MissingLabelsError("viewal train: the train split has no frames")
    if missing and (not skip_unlabelled or len(missing) == len(frames)):
        hint = ("; label them, or pass --skip-unlabelled to train on the "
                f"{len(frames) - len(missing)} that have labels") if len(missing) < len(frames) else ""
        raise MissingLabelsError(f"viewal train (the full-data reference) trains on ground-truth labels, but train "
                                 f"frame {missing[0].key} has none ({len(missing)} of {len(frames)} train frames "
                                 f"have no labels){hint}")
    return [f for f in frames if f.has_labels]


def _run(args: argparse.Namespace, w) -> int:
    main = w.rank == 0
    ds = open_dataset(args.data)
    train = labelled_train_frames(ds.split("train"), args.skip_unlabelled)
    train = train_subset(train, args.train_fraction, args.seed)
    unlabelled = {s: len(ds.unlabelled(s)) if s in ds.splits else 0 for s in ("train", "val", "test")}
    val = ds.labelled("val") if "val" in ds.splits else []
    test = ds.labelled("test") if "test" in ds.splits else []
    device = args.device
    if device.startswith("cuda") and w.distributed:
        device = f"cuda:{torch.cuda.current_device()}"  # each rank its own GPU (LOCAL_RANK)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, size=parse_size(args.size),
                      seed=args.seed, num_threads=args.threads, device=device, eval_every=args.eval_every)
    set_threads(cfg.num_threads)
    torch.manual_seed(args.seed)
    model = build_model(ds.num_classes, args.encoder, dropout=args.dropout, encoder_weights=args.init)
    size_txt = "x".join(map(str, cfg.size)) if cfg.size else f"{ds.height}x{ds.width}"
    if main:
        skipped = ", ".join(f"{n} {s}" for s, n in unlabelled.items() if n)
        if unlabelled["val"] and not val:
            skipped += "; no labelled val frame: no validation, the final weights are kept"
        print(f"viewal train: {ds!r}\n  train {len(train)} frames, val {len(val)}, test {len(test)}"
              + (f" (without labels, left out: {skipped})" if skipped else "") + "; "
              f"{args.encoder}, size {size_txt}, {cfg.epochs} epochs, threads {torch.get_num_threads()}"
              + (f", init {args.init}" if args.init else "")
              + (f", {w.size} processes (global batch {cfg.batch_size})" if w.distributed else ""), flush=True)
    res = fit(model, train, val, cfg, progress=main and not args.no_progress, log_epochs=main)
    if not main:
        return 0  # rank 0 evaluates and writes
    out = Path(args.out)
    t0 = time.perf_counter()
    val_m = evaluate(model, val, ds.num_classes, cfg.eval_batch_size, cfg.device, size=cfg.size) if val else None
    test_m = evaluate(model, test, ds.num_classes, cfg.eval_batch_size, cfg.device, size=cfg.size) if test else None
    eval_s = time.perf_counter() - t0

    def per_class(m):
        return None if m is None else {n: (None if not np.isfinite(v) else round(float(v), 4))
                                       for n, v in zip(ds.class_names, m["per_class_iou"])}

    metrics = {
        "data": str(args.data), "encoder": args.encoder, "init": args.init, "size": size_txt,
        "train_frames": len(train), "val_frames": len(val), "test_frames": len(test),
        **{f"{s}_frames_without_labels": n for s, n in unlabelled.items()},
        "train_fraction": args.train_fraction,
        "val_miou": None if val_m is None else val_m["miou"], "test_miou": None if test_m is None else test_m["miou"],
        "val_per_class_iou": per_class(val_m), "test_per_class_iou": per_class(test_m),
        "best_epoch": res.best_epoch, "train_seconds": round(res.seconds, 1), "eval_seconds": round(eval_s, 1),
        "threads": torch.get_num_threads(), "processes": w.size, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                                      for k, v in asdict(cfg).items()},
        "history": res.history,
        "miou_convention": "IoU=TP/(TP+FP+FN) over non-ignore GT pixels; "
                           "classes absent from GT and prediction excluded",
    }
    save_checkpoint(out / "model.pt", model, meta={k: metrics[k] for k in ("data", "size", "val_miou", "test_miou",
                                                                           "best_epoch", "init")})
    write_json(out / "metrics.json", metrics)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"viewal train: best epoch {res.best_epoch}; val mIoU {fmt(metrics['val_miou'])}, "
          f"test mIoU {fmt(metrics['test_miou'])}; train {res.seconds:.0f} s; wrote {out / 'model.pt'} and "
          f"{out / 'metrics.json'}")
    return 0
