"""Options shared by several subcommands (one definition each)."""
from __future__ import annotations

import argparse
from pathlib import Path

from viewal.kernels import AGGREGATIONS, MODES, DepthTest
from viewal.kernels.depth_test import BACKENDS, DEPTH_TEST, FLAGS
from viewal.nn.model import DEFAULT_ENCODER, DEFAULT_INIT

__all__ = ["add_network_arguments", "add_depth_test_arguments", "depth_test_from_args", "add_run_arguments",
           "resolve_run_arguments"]


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """``--encoder`` and ``--init`` with the package defaults, for every command that builds a network."""
    parser.add_argument("--encoder", default=DEFAULT_ENCODER,
                        help="efficientnet-lite0 (offline ImageNet start), mobilenet_v2 (ViewAL's), resnet18, resnet34")
    parser.add_argument("--init", default=DEFAULT_INIT,
                        help="encoder start: imagenet (efficientnet-lite0 only), random, or a file from "
                             "'viewal pretrain' or a 'viewal train' checkpoint")


# --------------------------------------------------------------------------------------------- the depth test

def add_depth_test_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the run's one depth test (``viewal.kernels.DepthTest``; :func:`depth_test_from_args`).
    Absent flags are absent from the namespace and take ``DepthTest()``'s values."""
    d = DEPTH_TEST
    g = p.add_argument_group("depth test", "one setting for view entropy, the overlap table and viewal visualize, "
                                           "stored with the run (docs/methods.md)")
    g.add_argument(FLAGS["mode"], dest="depth_test_mode", choices=tuple(MODES), default=argparse.SUPPRESS,
                   help=f"z: |depth difference| <= abs + rel x depth (--depth-tol); viewal: ViewAL's test, the "
                        f"back-projected points closer than --depth-distance (default {d.mode})")
    g.add_argument("--overlap-mode", dest="overlap_mode", choices=tuple(MODES), default=argparse.SUPPRESS,
                   help="deprecated alias of --depth-test (it now sets view entropy's test too)")
    g.add_argument(FLAGS["depth_tol"], dest="depth_tol", default=argparse.SUPPRESS, metavar="ABS,REL",
                   help=f"mode z's tolerances: metres, share of the depth "
                        f"(default {d.depth_tol[0]:g},{d.depth_tol[1]:g})")
    g.add_argument(FLAGS["world_distance"], dest="depth_distance", type=float, default=argparse.SUPPRESS, metavar="M",
                   help=f"mode viewal's distance in metres (default {d.world_distance:g}, ViewAL's published "
                        f"constant; its shipped coverage tables match 0.1)")
    g.add_argument(FLAGS["aggregation"], dest="aggregation", choices=tuple(AGGREGATIONS), default=argparse.SUPPRESS,
                   help="view entropy: gather (one pixel per view) or splat (ViewAL's: every point that lands on "
                        "the pixel); default: the mode's own, gather for z, splat for viewal")
    g.add_argument(FLAGS["backend"], dest="kernel_backend", choices=BACKENDS, default=argparse.SUPPRESS,
                   help=f"kernels' backend (default {d.backend}); changes no number, a resume may change it")


def depth_test_from_args(args: argparse.Namespace):
    """The :class:`~viewal.kernels.DepthTest` of :func:`add_depth_test_arguments`' flags; ValueError naming the
    flag on a bad value. ``--overlap-mode`` (deprecated) is ``--depth-test``, with a warning."""
    import warnings

    mode = getattr(args, "depth_test_mode", None)
    alias = getattr(args, "overlap_mode", None)
    if alias is not None:
        warnings.warn("--overlap-mode is deprecated, use --depth-test (one depth test for view entropy and the "
                      "overlap table)", FutureWarning, stacklevel=1)
        if mode is not None and mode != alias:
            raise ValueError(f"--overlap-mode {alias} and --depth-test {mode} disagree; pass --depth-test alone")
        mode = alias
    kw: dict = {"mode": mode, "world_distance": getattr(args, "depth_distance", None),
                "aggregation": getattr(args, "aggregation", None), "backend": getattr(args, "kernel_backend", None)}
    tol = getattr(args, "depth_tol", None)
    if tol is not None:
        try:
            kw["depth_tol"] = tuple(float(t) for t in str(tol).split(","))
        except ValueError:
            raise ValueError(f"--depth-tol must be two numbers ABS,REL (e.g. 0.05,0.02), got {tol!r}") from None
    return DepthTest(**{k: v for k, v in kw.items() if v is not None})


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The run a picture or page is made of (``viewal visualize``, ``viewal report``): folder, method, seed, data."""
    p.add_argument("--run", required=True, type=Path, help="experiment output directory (viewal experiment --out)")
    p.add_argument("--method", default=None,
                   help="method (ledger OUT/ledgers/<method>-s<seed>.sqlite); default: a loop run's own, else "
                        "view_entropy")
    p.add_argument("--seed", type=int, default=None, help="seed of the run (default: a loop run's own, else 0)")
    p.add_argument("--data", type=Path, default=None, help="dataset directory (default: the one in the ledger)")


def resolve_run_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Fill ``--method`` and ``--seed`` left out: a loop run's own (its ``loop.json``), else view_entropy and 0."""
    from viewal.labelling.loop import (  # the learner and its kernels: not for every command's --help
        LOOP_FILE,
        read_loop,
    )

    doc = read_loop(args.run) if (Path(args.run) / LOOP_FILE).is_file() else {}
    if args.method is None:
        args.method = doc.get("method", "view_entropy")
    if args.seed is None:
        args.seed = int(doc.get("seed", 0))
    return args
