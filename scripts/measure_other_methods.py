"""Small-run measurements of the other methods (docs/methods.md): one trained model, then

* scorer informativeness: Spearman correlation, over the pool's superpixels, between each scorer's region
  score and the region's true cross-entropy / error rate (ground truth used for the measurement only);
* rotation-head accuracy on validation frames (4 rotations);
* pseudo-label precision / coverage per rule on the pool (and UPS negative-label precision);
* max-entropy STN: mean |θ − I| and entropy before/after for the seed's configuration and the remedies,
  and val mIoU of fine-tuning with the augmentation vs the same fine-tuning without it;
* PAL: frames / scenes covered by the picks with K = 1 vs K = 4 sub-queries.

Usage::

    NUMBA_THREADING_LAYER=omp .venv/bin/python scripts/measure_other_methods.py --data data/demo --quick \\
        --out docs/other_methods_measure.json
    .venv/bin/python scripts/measure_other_methods.py --render docs/other_methods_measure.json   # markdown tables

Timings are not reported (the machine is shared).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


def region_truth(probs: np.ndarray, gt: np.ndarray, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-region mean CE and error rate over pixels with known gt. probs (C,H,W), gt/sp (H,W)."""
    known = gt != 255
    g = np.where(known, gt, 0).astype(np.int64)
    p = np.take_along_axis(probs, g[None], 0)[0]
    ce = -np.log(np.clip(p, 1e-8, 1))
    err = (probs.argmax(0) != g).astype(np.float64)
    R = int(sp.max()) + 1
    cnt = np.bincount(sp.ravel(), weights=known.ravel().astype(float), minlength=R)
    with np.errstate(invalid="ignore"):
        ce_r = np.bincount(sp.ravel(), weights=(ce * known).ravel(), minlength=R) / cnt
        err_r = np.bincount(sp.ravel(), weights=(err * known).ravel(), minlength=R) / cnt
    return ce_r, err_r


def render(res: dict) -> str:
    """Markdown tables of a measurement JSON."""
    def f(v) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "n/a"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    L = [f"Command: `{res.get('command')}` — data `{res.get('data')}`, working size {res.get('size')}, "
         f"{res.get('labelled_frames')} fully labelled frames, {res.get('pool_frames')} pool frames, "
         f"{res.get('val_frames')} validation frames, {res.get('epochs')} epochs (lr {res.get('lr')}); "
         f"base model validation mIoU {f(res.get('base_val_miou'))}.", ""]
    if "scorer_spearman" in res:
        L += ["Scorer vs truth (Spearman over the pool's superpixels; truth = region cross-entropy / error rate "
              "of the model's MC-mean prediction, ground truth used for the measurement only):", "",
              "| scorer | ρ vs region CE | ρ vs region error | regions |", "|---|---|---|---|"]
        for n, v in res["scorer_spearman"].items():
            L.append(f"| {n} | {f(v['vs_region_ce'])} | {f(v['vs_region_error'])} | {v['regions']} |")
        L.append("")
    if "rotation_accuracy_val" in res:
        L += [f"Rotation head accuracy on the validation frames (4 rotations, chance 0.25): "
              f"{f(res['rotation_accuracy_val'])}.", ""]
    if "pseudo_labels" in res:
        L += ["Pseudo-labels on the pool:", "", "| rule | precision | coverage | negative precision | negatives |",
              "|---|---|---|---|---|"]
        for n, v in res["pseudo_labels"].items():
            L.append(f"| {n} | {f(v.get('precision'))} | {f(v.get('coverage'))} | {f(v.get('negative_precision'))} "
                     f"| {f(v.get('n_negative'))} |")
        L.append("")
    if "max_entropy" in res:
        L += ["Max-entropy STN (segmenter frozen; "
              f"{res.get('stn_steps', 40)} Adam steps, lr {res.get('stn_lr', 1e-3)}, "
              f"batches of 4 labelled frames):", "",
              "| configuration | mean abs(θ − I) | entropy, identity | entropy, warped | in-image fraction |",
              "|---|---|---|---|---|"]
        for n, v in res["max_entropy"].items():
            L.append(f"| {n} | {f(v['theta_dev'])} | {f(v['entropy_identity'])} | {f(v['entropy_warped'])} "
                     f"| {f(v['inside_fraction'])} |")
        L.append("")
    if "max_entropy_finetune" in res:
        L += ["Fine-tuning from the base model (same epochs):", "", "| fine-tuning | best validation mIoU |",
              "|---|---|"]
        for n, v in res["max_entropy_finetune"].items():
            L.append(f"| {n} | {f(v['val_miou'])} |")
        L.append("")
    if "pal" in res:
        L += [f"PAL picks under a budget of {res['pal']['budget_pixels']} pixels:", "",
              "| sub-queries | regions | frames | scenes |", "|---|---|---|---|"]
        for k, v in res["pal"].items():
            if k.startswith("K="):
                L.append(f"| {k} | {v['regions']} | {v['frames']} | {v['scenes']} |")
        L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--render":
        print(render(json.loads(Path(argv[1]).read_text())))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--out", default="docs/other_methods_measure.json")
    ap.add_argument("--quick", action="store_true", help="smaller run (smoke test)")
    ap.add_argument("--size", default="120x160")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-3, help="encoder lr (x10 for the decoder and heads)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epochs of the base fit")
    ap.add_argument("--stn-lr", type=float, default=1e-3, help="Adam lr of the STN")
    ap.add_argument("--stn-steps", type=int, default=None, help="override the STN steps")
    args = ap.parse_args(argv)

    from scipy.stats import spearmanr

    import viewal.scoring.scorers as scorers
    from viewal.core.superpixels import SuperpixelCache
    from viewal.datasets import open_dataset
    from viewal.nn import augment, heads, pseudo
    from viewal.nn.data import parse_size
    from viewal.nn.model import build_model, images_from_rgb
    from viewal.nn.train import TrainConfig, fit
    from viewal.scoring.needs import NeedContext, compute_needs
    from viewal.scoring.scorers import NEEDS, build_scene_inputs
    from viewal.scoring.scorers.pal import pal_select

    torch.set_num_threads(args.threads)
    size = parse_size(args.size)
    q = args.quick
    n_lab, n_pool, n_val = (16, 24, 12) if q else (32, 64, 40)
    epochs = args.epochs or (20 if q else 40)
    stn_steps = args.stn_steps or (40 if q else 150)
    ft_epochs = 3 if q else 8
    rng = np.random.default_rng(args.seed)
    ds = open_dataset(args.data)
    train = ds.split("train")
    idx = rng.permutation(len(train))
    labelled = [train[i] for i in idx[:n_lab]]
    pool = [train[i] for i in sorted(idx[n_lab:n_lab + n_pool])]
    val = ds.split("val")[:n_val]
    C = ds.num_classes
    out: dict = {"command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])), "data": str(args.data),
                 "size": list(size), "labelled_frames": n_lab, "pool_frames": n_pool, "val_frames": len(val),
                 "epochs": epochs, "lr": args.lr, "stn_steps": stn_steps, "stn_lr": args.stn_lr,
                 "python": platform.python_version(), "torch": torch.__version__}
    t0 = time.time()

    # ---- one model with both auxiliary heads
    torch.manual_seed(args.seed)
    model = build_model(C)
    heads.attach_loss_head(model)
    heads.attach_rotation_head(model)
    hook = heads.combine_extra_losses(heads.loss_prediction_extra_loss(region="auto"), heads.rotation_extra_loss())
    cache = SuperpixelCache(ds.root, "seeds", size=(ds.height, ds.width), num=40)
    items = [(f, np.asarray(f.labels), {"superpixels": cache.get(f)}) for f in labelled]
    cfg = TrainConfig(epochs=epochs, batch_size=6, lr=args.lr, size=size, seed=args.seed, num_threads=args.threads,
                      eval_every=max(1, epochs // 4))
    res = fit(model, items, val, cfg, extra_loss=hook, progress=False)
    out["base_val_miou"] = res.best_miou
    print(f"base model: val mIoU {res.best_miou:.4f} ({time.time() - t0:.0f} s)", flush=True)

    # ---- scorer informativeness on the pool
    by_scene: dict[str, list] = {}
    for f in pool:
        by_scene.setdefault(f.scene_id, []).append(f)
    names = ["entropy", "flip_consistency", "loss_prediction", "consistency_loss", "pal"]
    region_scores = {n: [] for n in names}
    truth_ce, truth_err = [], []
    for frames in by_scene.values():
        sp = np.stack([cache.get(f) for f in frames])
        ctx = NeedContext(model=model, frames=frames, mc_passes=8, batch_size=4,
                          options={"superpixels": sp, "size": size})
        needs = sorted(set().union(*[scorers.get(n).needs for n in names]) - {"views"})
        arrays = compute_needs(needs, ctx)
        core = {k: arrays.get(k) for k in ("probs", "mc_probs", "features")}
        extras = {k: v for k, v in arrays.items() if k not in NEEDS}
        for n in names:
            sc = scorers.get(n)
            inputs = build_scene_inputs(frames, sp, sc.needs, extras=extras, **core)
            pix = sc(inputs).pixel
            region_scores[n].append(np.concatenate([scorers.pool_regions(pix[i], sp[i]) for i in range(len(frames))]))
        for i, f in enumerate(frames):
            ce_r, err_r = region_truth(arrays["probs"][i], np.asarray(f.labels), sp[i])
            truth_ce.append(ce_r)
            truth_err.append(err_r)
    ce = np.concatenate(truth_ce)
    err = np.concatenate(truth_err)
    ok = np.isfinite(ce)
    out["scorer_spearman"] = {}
    for n in names:
        s = np.concatenate(region_scores[n])
        m = ok & np.isfinite(s)
        out["scorer_spearman"][n] = {"vs_region_ce": float(spearmanr(s[m], ce[m])[0]),
                                     "vs_region_error": float(spearmanr(s[m], err[m])[0]), "regions": int(m.sum())}
    print("spearman:", json.dumps(out["scorer_spearman"], indent=1), flush=True)

    # ---- rotation head accuracy on validation frames
    model.eval()
    from viewal.nn.data import resize_rgb

    with torch.no_grad():
        x = images_from_rgb(np.stack([resize_rgb(np.asarray(f.rgb), size) for f in val]))
        ks = torch.arange(4).repeat_interleave(len(val))
        acc = float((heads.rotation_logits(model, x.repeat(4, 1, 1, 1), ks).argmax(1) == ks).float().mean())
    out["rotation_accuracy_val"] = acc
    print(f"rotation accuracy {acc:.3f}", flush=True)

    # ---- pseudo-labels on the pool
    out["pseudo_labels"] = {}
    for mode, opts in (("confidence", {"threshold": 0.9}), ("classwise", {}), ("ups", {})):
        _, st = pseudo.pseudo_label_items(model, pool, mode, mc_passes=8, batch_size=4, size=size,
                                          with_precision=True, **opts)
        out["pseudo_labels"][mode] = {k: st.get(k) for k in ("precision", "coverage", "n_labelled",
                                                             "negative_precision", "n_negative", "thresholds")}
    # precision of the plain argmax, for reference
    _, st = pseudo.pseudo_label_items(model, pool, "confidence", threshold=0.0, mc_passes=8, batch_size=4, size=size,
                                      with_precision=True)
    out["pseudo_labels"]["argmax_all_pixels"] = {"precision": st["precision"], "coverage": st["coverage"]}
    print("pseudo:", json.dumps(out["pseudo_labels"], indent=1, default=str), flush=True)

    # ---- max-entropy STN: seed configuration and remedies
    out["max_entropy"] = {}
    imgs = augment.item_images(items, size)
    configs = {"seed (unbounded, discriminator)": dict(bound=None, discriminator=True),
               "unbounded, no discriminator": dict(bound=None, discriminator=False),
               "bounded 0.3, no discriminator": dict(bound=0.3, discriminator=False),
               "bounded 0.3, discriminator": dict(bound=0.3, discriminator=True),
               "unbounded, penalty 1.0, no discriminator": dict(bound=None, reg_weight=1.0, discriminator=False)}
    with torch.no_grad():
        h_id = float(augment.entropy_map(model.eval()(imgs[:16])).mean())
    augs = {}
    for name, kw in configs.items():
        aug = augment.max_entropy_augmenter(model, imgs, steps=stn_steps, batch_size=4, seed=args.seed,
                                            lr=args.stn_lr, **kw)
        with torch.no_grad():
            th = aug.theta(imgs[:16])
            m = augment.inside_mask(th, imgs.shape[-2:])
            h_w = float((augment.entropy_map(model(augment.warp_images(imgs[:16], th))) * m).sum() / m.sum())
        out["max_entropy"][name] = {"theta_dev": aug.theta_deviation(imgs), "entropy_identity": h_id,
                                    "entropy_warped": h_w, "inside_fraction": float(m.float().mean())}
        augs[name] = aug
        print(name, out["max_entropy"][name], flush=True)
    # fine-tuning with the augmentation vs the same fine-tuning without it
    cfg_ft = dataclasses.replace(cfg, epochs=ft_epochs, eval_every=1)
    state = copy.deepcopy(model.state_dict())
    ft = {}
    for name, extra in (("plain fine-tuning", None),
                        ("max-entropy fine-tuning (bounded 0.3, no discriminator)",
                         augs["bounded 0.3, no discriminator"].extra_loss(1.0))):
        model.load_state_dict(state)
        r = fit(model, items, val, cfg_ft, extra_loss=heads.combine_extra_losses(hook, extra), progress=False)
        ft[name] = {"val_miou": r.best_miou}
    out["max_entropy_finetune"] = ft
    print("fine-tune:", ft, flush=True)
    model.load_state_dict(state)

    # ---- PAL diversity: coverage of the picks with and without sub-queries
    sp_pool = np.stack([cache.get(f) for f in pool])
    budget = 8 * sp_pool.shape[1] * sp_pool.shape[2] // 10
    out["pal"] = {"budget_pixels": int(budget)}
    for K in (1, 4):
        sel, pl = pal_select(model, pool, sp_pool, budget, sub_queries=K, finetune_steps=10, mc_passes=8,
                             size=size, progress=False)
        fr = pl.frame_of(sel.ids)
        out["pal"][f"K={K}"] = {"regions": int(len(sel.ids)), "frames": int(len(np.unique(fr))),
                                "scenes": int(len({pl.scene_ids[i] for i in fr}))}
    print("pal:", out["pal"], flush=True)
    out["seconds_contended"] = time.time() - t0

    from viewal.core.io import write_json

    write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
