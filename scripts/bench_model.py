#!/usr/bin/env python
"""Benchmarks of viewal.nn.model / viewal.nn.train / viewal.nn.simsiam (CPU).

Parts:
  mc       MC-dropout speed-up: ``mc_predict`` (encoder once, dropout + decoder T times) against T full
           passes drawing the same masks, side by side in one run (interleaved repeats, medians), plus
           the max |difference| of the two results (same seed -> same masks).
  simsiam  Does SimSiam pretraining raise val mIoU at a small labelled fraction? SimSiam on the train
           frames (no labels), then the same training (same epochs, same labelled frames, same seed) from
           random init and from the SimSiam encoder.

Examples:
  python scripts/bench_model.py --part mc --quick
  python scripts/bench_model.py --part mc --encoders mobilenet_v2,resnet18,resnet34 --size 120x160 --repeats 5
  python scripts/bench_model.py --part simsiam --data data/demo --fraction 0.05 --epochs 30 --ss-epochs 30

Timings on a shared machine are contended: the script prints the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

import numpy as np
import torch


def header(threads: int) -> None:
    import segmentation_models_pytorch as smp

    print(f"# python {platform.python_version()}, torch {torch.__version__}, smp {smp.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {threads}, load avg {os.getloadavg()}")


def bench_mc(encoders: list[str], size: tuple[int, int], batch: int, passes: int, repeats: int, classes: int,
             chunk: int) -> list[dict]:
    from viewal.nn.model import build_model, mc_predict

    rows = []
    for enc in encoders:
        torch.manual_seed(0)
        model = build_model(classes, enc).eval()
        x = torch.randn(batch, 3, *size)

        def full_passes(seed: int, model=model, x=x) -> torch.Tensor:
            model.mc_dropout, model.generator = True, torch.Generator().manual_seed(seed)
            try:
                with torch.no_grad():
                    acc = None
                    for _ in range(passes):
                        p = torch.softmax(model(x), 1)
                        acc = p if acc is None else acc + p
                return acc / passes
            finally:
                model.mc_dropout, model.generator = False, None

        def mc(seed: int, model=model, x=x) -> torch.Tensor:
            return mc_predict(model, x, passes, seed=seed, chunk=chunk)

        # warm-up (allocator, oneDNN primitive caches), reported apart
        t0 = time.perf_counter()
        a, b = mc(0), full_passes(0)
        warm = time.perf_counter() - t0
        diff = float((a - b).abs().max())
        t_mc, t_full = [], []
        for r in range(repeats):
            for _name, fn, acc in (("mc", mc, t_mc), ("full", full_passes, t_full)) if r % 2 == 0 else \
                    (("full", full_passes, t_full), ("mc", mc, t_mc)):
                t0 = time.perf_counter()
                fn(r + 1)
                acc.append(time.perf_counter() - t0)
        with torch.no_grad():
            t_enc = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                feats = model.encode(x)
                t_enc.append(time.perf_counter() - t0)
            t_dec = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                model.decode(feats)
                t_dec.append(time.perf_counter() - t0)
        row = {"encoder": enc, "size": f"{size[0]}x{size[1]}", "batch": batch, "T": passes,
               "mc_s": statistics.median(t_mc), "full_s": statistics.median(t_full),
               "encoder_s": statistics.median(t_enc), "decoder_s": statistics.median(t_dec),
               "max_abs_diff": diff, "warmup_s": warm}
        row["speedup"] = row["full_s"] / row["mc_s"]
        e, d = row["encoder_s"], row["decoder_s"]
        row["bound"] = passes * (e + d) / (e + passes * d)  # T(E+D)/(E+TD): the ideal speed-up
        rows.append(row)
        print(f"{enc:14s} {row['size']:>8s} B={batch} T={passes}: mc_predict {row['mc_s']:.3f} s, "
              f"{passes} full passes {row['full_s']:.3f} s -> speed-up {row['speedup']:.2f}x "
              f"(encoder {e * 1e3:.0f} ms, decoder {d * 1e3:.0f} ms per batch: ideal T(E+D)/(E+TD) = "
              f"{row['bound']:.2f}x); max |mc - full| = {diff:.2e}", flush=True)
    return rows


def bench_simsiam(data: str, fraction: float, epochs: int, lr: float, ss_epochs: int, size: tuple[int, int],
                  ss_size: tuple[int, int], seeds: list[int], threads: int, encoder: str, ss_batch: int,
                  ss_lr: float, eval_every: int, ss_weights: str | None = None,
                  inits: tuple[str, ...] = ("random", "simsiam")) -> dict:
    from viewal.datasets import open_dataset
    from viewal.nn.model import build_model
    from viewal.nn.simsiam import SimSiamConfig, pretrain
    from viewal.nn.train import TrainConfig, evaluate, fit, train_subset

    ds = open_dataset(data)
    train_all = ds.split("train")
    val = ds.split("val")
    t0 = time.perf_counter()
    hist, ss_secs, enc_state = [], float("nan"), None
    if "simsiam" not in inits:
        pass
    elif ss_weights:  # weights from 'viewal pretrain'
        obj = torch.load(ss_weights, map_location="cpu", weights_only=True)
        enc_state, hist = obj["encoder_state"], obj.get("meta", {}).get("history", [])
        ss_secs = float(obj.get("meta", {}).get("seconds", float("nan")))
        print(f"SimSiam weights from {ss_weights} ({obj.get('meta', {}).get('frames')} frames, "
              f"{len(hist)} epochs, {ss_secs:.0f} s)", flush=True)
    else:
        ss_cfg = SimSiamConfig(encoder=encoder, epochs=ss_epochs, batch_size=ss_batch, lr=ss_lr, size=ss_size,
                               seed=0, num_threads=threads)
        ss_model, hist = pretrain(train_all, ss_cfg, progress=False)
        ss_secs = time.perf_counter() - t0
        enc_state = {k: v.clone() for k, v in ss_model.encoder.state_dict().items()}
    if hist:
        print(f"SimSiam: {len(train_all)} train frames (no labels), {len(hist)} epochs: loss "
              f"{hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}, z std {hist[-1]['std']:.4f}, {ss_secs:.0f} s",
              flush=True)
    out = {"ss_seconds": ss_secs, "ss_history": hist, "runs": []}
    for seed in seeds:
        labelled = train_subset(train_all, fraction, seed)
        for init in inits:
            torch.manual_seed(seed)
            model = build_model(ds.num_classes, encoder)
            if init == "simsiam":
                model.net.encoder.load_state_dict(enc_state)
            cfg = TrainConfig(epochs=epochs, size=size, seed=seed, num_threads=threads, eval_every=eval_every, lr=lr)
            t1 = time.perf_counter()
            res = fit(model, labelled, val, cfg, progress=False)
            m = evaluate(model, val, ds.num_classes, 8, size=size)
            run = {"seed": seed, "init": init, "labelled_frames": len(labelled), "val_miou": m["miou"],
                   "best_epoch": res.best_epoch, "seconds": time.perf_counter() - t1}
            out["runs"].append(run)
            print(f"  seed {seed} {init:8s}: {len(labelled)} labelled frames, {epochs} epochs -> val mIoU "
                  f"{m['miou']:.4f} (best epoch {res.best_epoch}, {run['seconds']:.0f} s)", flush=True)
    for init in inits:
        v = [r["val_miou"] for r in out["runs"] if r["init"] == init]
        print(f"mean val mIoU {init:8s}: {np.mean(v):.4f} over seeds {seeds}")
    return out


def main(argv=None) -> int:
    from viewal.nn.data import parse_size

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="mc", choices=["mc", "simsiam", "all"])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes and counts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    g = ap.add_argument_group("mc")
    g.add_argument("--encoders", default="mobilenet_v2,resnet18")
    g.add_argument("--size", default="120x160", help="HxW of the images")
    g.add_argument("--batch", type=int, default=4)
    g.add_argument("--passes", type=int, default=20)
    g.add_argument("--repeats", type=int, default=3)
    g.add_argument("--classes", type=int, default=17)
    g.add_argument("--chunk", type=int, default=1, help="passes decoded together by mc_predict")
    g = ap.add_argument_group("simsiam")
    g.add_argument("--data", default="data/demo")
    g.add_argument("--fraction", type=float, default=0.05, help="labelled fraction of the train frames")
    g.add_argument("--epochs", type=int, default=30, help="supervised epochs (both inits)")
    g.add_argument("--eval-every", type=int, default=5)
    g.add_argument("--ss-epochs", type=int, default=30)
    g.add_argument("--ss-size", default="96x128")
    g.add_argument("--ss-batch", type=int, default=32)
    g.add_argument("--ss-lr", type=float, default=0.05)
    g.add_argument("--seeds", default="0,1")
    g.add_argument("--lr", type=float, default=4e-3, help="supervised lr (encoder; head x10)")
    g.add_argument("--ss-weights", default=None,
                   help="use encoder weights from 'viewal pretrain' instead of pretraining")
    g.add_argument("--train-size", default="120x160", help="working size of the supervised runs")
    g.add_argument("--encoder", default="mobilenet_v2")
    g.add_argument("--inits", default="random,simsiam", help="which initialisations to train")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    header(torch.get_num_threads())
    results: dict = {"argv": sys.argv}
    if args.part in ("mc", "all"):
        if args.quick:
            results["mc"] = bench_mc(["mobilenet_v2"], (64, 64), 2, args.passes, 1, args.classes, args.chunk)
        else:
            results["mc"] = bench_mc(args.encoders.split(","), parse_size(args.size), args.batch, args.passes,
                                     args.repeats, args.classes, args.chunk)
    if args.part in ("simsiam", "all"):
        if args.quick:
            results["simsiam"] = bench_simsiam(args.data, args.fraction, 1, args.lr, 1, (64, 80), (48, 64), [0],
                                               args.threads, args.encoder, 8, args.ss_lr, 1, args.ss_weights)
        else:
            results["simsiam"] = bench_simsiam(args.data, args.fraction, args.epochs, args.lr, args.ss_epochs,
                                               parse_size(args.train_size), parse_size(args.ss_size),
                                               [int(s) for s in args.seeds.split(",")], args.threads, args.encoder,
                                               args.ss_batch, args.ss_lr, args.eval_every, args.ss_weights,
                                               tuple(args.inits.split(",")))
    print(f"# load avg after: {os.getloadavg()} (timings contended when it exceeds the {os.cpu_count()} CPUs)")
    if args.json:
        from viewal.core.io import write_json

        write_json(args.json, json.loads(json.dumps(results, default=float)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
