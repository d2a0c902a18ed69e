"""``viewal pretrain``: SimSiam self-supervised pretraining of the encoder (:func:`viewal.nn.simsiam.pretrain`),
written with :func:`viewal.nn.simsiam.save_encoder` for ``build_model(..., encoder_weights=FILE)`` and
``viewal train --init FILE``."""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict

import torch

from viewal.datasets import open_dataset
from viewal.nn.data import parse_size
from viewal.nn.simsiam import SimSiamConfig, pretrain, save_encoder

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output file for the encoder weights (e.g. runs/simsiam.pt)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--encoder", default="efficientnet-lite0")
    p.add_argument("--size", default="96x128", help="working size HxW of the augmented views ('full' = dataset size)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--proj-dim", type=int, default=512)
    p.add_argument("--splits", default="train",
                   help="comma-separated splits whose frames are used (labels are never read); "
                        "'all' = every frame. Default: the train split (the active-learning pool), so that "
                        "val/test images stay unseen")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    ds = open_dataset(args.data)
    if args.splits.strip() == "all":
        frames = list(ds.all_frames())
    else:
        frames = [f for name in args.splits.split(",") for f in ds.split(name.strip())]
    cfg = SimSiamConfig(encoder=args.encoder, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        size=parse_size(args.size), proj_dim=args.proj_dim, pred_dim=max(8, args.proj_dim // 4),
                        seed=args.seed, num_threads=args.threads, device=args.device)
    print(f"viewal pretrain: {ds!r}\n  {len(frames)} frames ({args.splits}), {args.encoder}, "
          f"size {cfg.size}, {cfg.epochs} epochs, batch {cfg.batch_size}, threads {torch.get_num_threads()}",
          flush=True)
    t0 = time.perf_counter()
    model, hist = pretrain(frames, cfg, progress=not args.no_progress, log_epochs=True)
    secs = time.perf_counter() - t0
    meta = {"data": str(args.data), "frames": len(frames), "splits": args.splits, "seconds": round(secs, 1),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "history": hist}
    save_encoder(args.out, model.encoder, args.encoder, meta)
    print(f"viewal pretrain: loss {hist[0]['loss']:.4f} -> {hist[-1]['loss']:.4f}, z std {hist[-1]['std']:.4f} "
          f"(collapse = 0, ideal ~{1 / math.sqrt(cfg.proj_dim):.4f}); {secs:.0f} s; wrote {args.out}")
    return 0
