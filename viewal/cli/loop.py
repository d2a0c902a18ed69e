"""``viewal loop``: the labelling loop a team drives, one cycle at a time (:mod:`viewal.labelling.loop`).

::

    viewal loop start --data SCANS --run RUN [--method view_entropy --budget 4 ...]   # asks the seed set
    viewal query import ANSWERS --run RUN                                           # people's labels in
    viewal loop next --run RUN [--format label-studio --annotators 2] [--force]     # fit, select, export
    viewal loop status --run RUN
    viewal report --run RUN
"""
from __future__ import annotations

import argparse
from pathlib import Path

from viewal.cli.experiment import (
    add_budget_argument,
    add_recipe_arguments,
    check_experiment_args,
    config_from_args,
)
from viewal.labelling.hitl import FORMATS
from viewal.labelling.loop import (
    PendingQueriesError,
    advance,
    cycle_progress,
    default_export_dir,
    export_for_people,
    open_learner,
    read_loop,
    run_ledger_path,
    start_run,
)
from viewal.runs.experiment import parse_budgets
from viewal.runs.ledger import Ledger

__all__ = ["configure_parser", "run"]


def _add_export_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export", "the cycle's queries for people (as 'viewal query export')")
    g.add_argument("--export", type=Path, default=None, metavar="DIR",
                   help="where the queries are written (default RUN/queries/cycle-<N>)")
    g.add_argument("--format", dest="export_format", choices=FORMATS, default="png",
                   help="png: region masks, labels back as PNG; coco: COCO RLE, labels back as a COCO file; "
                        "label-studio: a labelling config and tasks with the regions pre-drawn")
    g.add_argument("--annotators", type=int, default=1, metavar="K",
                   help="split the queries into K disjoint batches, one folder DIR/annotator-<k> each")
    g.add_argument("--image-url", default=None, metavar="PREFIX",
                   help="label-studio: tasks refer to frame images as PREFIX/images/... instead of embedding them")
    g.add_argument("--no-previews", action="store_true", help="skip the RGB crop previews")


def configure_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="<action>", required=True)
    st = sub.add_parser("start", help="start a run on a dataset (no labels needed): store its settings and ask the "
                                      "seed set", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    st.add_argument("--data", required=True, help="dataset directory (any format open_dataset reads)")
    st.add_argument("--run", required=True, type=Path, help="run folder (ledger, checkpoints, exports)")
    st.add_argument("--method", default="view_entropy",
                    help="one method spec of 'viewal experiment' (e.g. view_entropy:random_share=0.5)")
    st.add_argument("--seed", type=int, default=0, help="run seed (seed set, training, random draws)")
    st.add_argument("--seed-set", choices=("ask", "labels"), default="ask",
                    help="ask: people label the seed set's whole frames (cycle 0); labels: the pool frames the "
                         "dataset already labels are the seed set")
    st.add_argument("--probabilities", type=Path, default=None, metavar="DIR",
                    help="score with a network of yours: its class probabilities, one file per frame, "
                         "DIR/<scene>/<frame>.npz (docs/own_model.md); viewal then never trains a network")
    add_budget_argument(st)
    add_recipe_arguments(st, format_flag="--data-format")
    _add_export_arguments(st)
    nx = sub.add_parser("next", help="close the cycle (fit on the labels so far, evaluate), select the next "
                                     "cycle's queries and export them",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    nx.add_argument("--run", required=True, type=Path, help="run folder of 'viewal loop start'")
    nx.add_argument("--force", action="store_true",
                    help="close the cycle although some of its queries are unanswered")
    nx.add_argument("--threads", type=int, default=None, help="torch threads")
    nx.add_argument("--probabilities", type=Path, default=None, metavar="DIR",
                    help="a run started with --probabilities: this cycle's files (your network retrained on the "
                         "labels so far); default: the folder stored with the run")
    _add_export_arguments(nx)
    ss = sub.add_parser("status", help="per-cycle progress: queries answered and pending, labels, mIoU")
    ss.add_argument("--run", required=True, type=Path, help="run folder of 'viewal loop start'")


def _export(run: Path, learner, queries: list, args) -> None:
    if not queries:
        return
    cycle = queries[0].cycle
    out = args.export or default_export_dir(run, cycle)
    ds = learner.dataset
    paths = export_for_people(queries, out, dataset=ds, format=args.export_format, annotators=args.annotators,
                              previews=not args.no_previews, image_url=args.image_url)
    pixels = sum(int(q.mask.sum()) for q in queries)
    print(f"cycle {cycle}: {len(queries)} queries ({pixels} pixels, "
          f"{100 * pixels / learner.pool_pixels:.2f} % of the pool) exported ({args.export_format}):")
    for p in paths:
        print(f"  {p.parent}")
    print(f"import the answers with: viewal query import <labels> --run {run}")


def _status(run: Path) -> int:
    doc = read_loop(run)
    with Ledger(run_ledger_path(run)) as led:
        rows = cycle_progress(led)
        print(f"run {run}: {doc['method']}, seed {doc['seed']}, data {doc['data']}; cycle {led.cycle()} open")
        print(f"{'cycle':>5} {'queries':>8} {'answered':>9} {'pending':>8} {'labels':>7} {'pixels':>9}  mIoU")
        for r in rows:
            miou = f"{100 * r['miou']:.1f}" if r["miou"] is not None else ("-" if not r["closed"] else "n/a")
            print(f"{r['cycle']:>5} {r['queries']:>8} {r['answered']:>9} {r['pending']:>8} {r['labels']:>7} "
                  f"{r['labelled_pixels']:>9}  {miou}")
        last = next((r for r in reversed(led.results()) if "miou" in r), None)
        if last is not None and last.get("miou") is None:
            print("no labelled test frames: no mIoU; the last cycle's labels per class and the model's predicted "
                  "class shares are in the ledger's results (viewal report shows them)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "status":
        return _status(args.run)
    if args.annotators < 1:
        raise ValueError(f"--annotators must be >= 1, got {args.annotators}")
    if args.action == "start":
        check_experiment_args(args)
        config = config_from_args(args)
        from dataclasses import replace

        config = replace(config, seed=args.seed, seed_set=args.seed_set)
        queries = start_run(args.data, args.run, config, method=args.method, budgets=parse_budgets(args.budget),
                            data_format=args.format, frame_step=args.frame_step, probabilities=args.probabilities)
        learner = open_learner(args.run)
        try:
            if queries:
                print(f"started {args.run}: the seed set is {len(queries)} whole frames for people to label")
            else:
                print(f"started {args.run}: the seed set is the {len(learner.ledger.labelled_frames())} frames the "
                      f"dataset already labels; run 'viewal loop next --run {args.run}'")
            _export(args.run, learner, queries, args)
        finally:
            learner.close()
        return 0
    overrides = {"num_threads": args.threads} if args.threads is not None else {}
    learner = open_learner(args.run, probabilities=args.probabilities, **overrides)
    try:
        try:
            queries = advance(args.run, force=args.force, learner=learner, probabilities=args.probabilities)
        except PendingQueriesError:
            # a step stopped after it recorded the cycle's queries and before it exported them: export them now
            led = learner.ledger
            c = led.cycle()
            out = args.export or default_export_dir(args.run, c)
            if led.labels(c) or any(Path(out).rglob("queries.json")):
                raise
            queries = led.pending_queries(c)
            print(f"cycle {c}'s queries were recorded but not exported (an interrupted step): exporting them")
        _export(args.run, learner, queries, args)
    finally:
        learner.close()
    return 0
