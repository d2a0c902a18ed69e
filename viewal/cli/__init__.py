"""``viewal`` command line: one entry point, one module per subcommand in this package.

Each subcommand module (``viewal.cli.<command>``) holds the command's argparse definition,
``configure_parser(parser)``, and a thin ``run(args) -> int | None`` that calls the library; it is imported
only when its command runs, so ``viewal --help`` stays fast. The library (every other module of ``viewal``,
``viewal.kernels`` and ``viewal.datasets``) knows nothing of argparse: this package is the top layer.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Open3D bundles an old TBB that makes Numba warn; OpenMP threading avoids it.
os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("viewal.cli.generate",
                 "generate the synthetic multi-view RGB-D scene dataset (Open3D raycasting)"),
    "preview": ("viewal.cli.preview", "draw a contact sheet of frames: RGB, depth, labels, superpixels"),
    "superpixels": ("viewal.cli.superpixels",
                    "compute and cache SEEDS/SLIC superpixels for every frame of a dataset"),
    "train": ("viewal.cli.train", "train DeepLabv3+ on all labels of the train split (the full-data reference)"),
    "pretrain": ("viewal.cli.pretrain", "SimSiam self-supervised pretraining of the encoder on unlabelled frames"),
    "experiment": ("viewal.cli.experiment",
                   "active-learning experiment: methods x seeds x cycles -> results.csv, curves.png"),
    "loop": ("viewal.cli.loop", "the labelling loop with people: start a run on unlabelled data, then one cycle at "
                                "a time (fit on the team's labels, select, export)"),
    "query": ("viewal.cli.query",
              "human in the loop: export region queries (PNG, COCO RLE, Label Studio), import labels"),
    "label-studio": ("viewal.cli.labelstudio",
                     "serve a loop run to Label Studio as an ML backend: pre-annotations, answers into the ledger "
                     "as they are saved, the next cycle's tasks"),
    "visualize": ("viewal.cli.visualize",
                  "pictures of a run: contact sheet of the selected regions, view-entropy point cloud (PLY)"),
    "report": ("viewal.cli.report", "one self-contained HTML page of a run's cycles: queries, heat-maps, scores, "
                                      "learning curve, view-entropy point cloud"),
}

DESCRIPTION = """\
viewal: 3D-aware active learning for semantic segmentation of RGB-D sequences.

Typical session:
  viewal generate data/demo                      # synthetic RGB-D scenes (exact depth, poses, labels)
  viewal preview data/demo -o docs/preview.png   # look at them
  viewal experiment --data data/demo --methods view_entropy,random,entropy --out runs/demo
Run 'viewal <command> --help' for the options of a command.
"""


def _user_errors() -> tuple[type[BaseException], ...]:
    import pickle
    import sqlite3

    return (FileNotFoundError, ValueError, KeyError, OSError, AttributeError, sqlite3.DatabaseError,
            pickle.UnpicklingError, NotImplementedError)


#: errors a command reports as one line (``VIEWAL_DEBUG=1`` shows the traceback instead)
USER_ERRORS = _user_errors()


def error_text(e: BaseException) -> str:
    """One-line message of a reported error: KeyError's quotes dropped, the type named where the message
    alone would not say what went wrong, never torch's advice to load a file with ``weights_only=False``."""
    from viewal.core.io import unpickle_reason

    if isinstance(e, KeyError) and len(e.args) == 1:
        return str(e.args[0])
    text = str(e)
    if "weights_only" in text:
        return unpickle_reason(e)
    if isinstance(e, (AttributeError, NotImplementedError)) or not text:
        return f"{type(e).__name__}: {text}"
    import sqlite3

    if isinstance(e, sqlite3.DatabaseError):
        return f"SQLite: {text}"
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="viewal", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"viewal: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module_name, help_ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            print(f"viewal {name}: not available in this build ({module_name} missing)", file=sys.stderr)
            return 2
        raise
    sub = argparse.ArgumentParser(prog=f"viewal {name}", description=help_,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.configure_parser(sub)
    args = sub.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except USER_ERRORS as e:
        if os.environ.get("VIEWAL_DEBUG"):
            raise
        print(f"viewal {name}: error: {error_text(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
