"""``viewal query``: human in the loop against a run's ledger: ``export`` its pending region queries
(:func:`viewal.hitl.export_queries`), ``import`` labelled masks (:func:`viewal.hitl.import_labels`), ``status``."""
from __future__ import annotations

import argparse
from pathlib import Path

from viewal.hitl import QUERIES_FILE, LabelImportError, export_queries, import_labels

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="<action>", required=True)
    ex = sub.add_parser("export", help="write the ledger's unlabelled queries as PNG masks + queries.json")
    ex.add_argument("--ledger", required=True, help="SQLite ledger of the run")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--data", help="dataset directory (RGB previews, class names, size checks)")
    ex.add_argument("--cycle", type=int, default=None, help="cycle whose queries to export (default: all pending)")
    ex.add_argument("--no-previews", action="store_true", help="skip the RGB crop previews")
    im = sub.add_parser("import", help="read labelled masks of an export into the ledger (source=human)")
    im.add_argument("--ledger", required=True, help="SQLite ledger of the run")
    im.add_argument("--dir", required=True, help="export directory holding queries.json and labels/")
    im.add_argument("--data", help="dataset directory (frame sizes, class count)")
    im.add_argument("--skip-missing", action="store_true", help="ignore queries without a labelled mask yet")
    im.add_argument("--allow-overlap", action="store_true",
                    help="accept labels overlapping already-labelled pixels (corrections; later labels win)")
    st = sub.add_parser("status", help="summary of the ledger: cycle, queries, labels")
    st.add_argument("--ledger", required=True, help="SQLite ledger of the run")


def _open_ledger(path: str):
    from viewal.ledger import Ledger

    if not Path(path).is_file():
        raise FileNotFoundError(f"ledger file does not exist: {path}")
    return Ledger(path)


def _dataset(path: str | None, ledger=None):
    """The dataset at ``path`` as the ledger's run saw it: resized to the run's working size (``--size``),
    so that exported masks and frames agree."""
    if not path:
        return None
    from viewal.datasets import open_dataset

    size = ((ledger.config().get("al") or {}).get("size") if ledger is not None else None)
    kw = {"height": int(size[0]), "width": int(size[1])} if size else {}
    return open_dataset(path, **kw)


def run(args: argparse.Namespace) -> int:
    led = _open_ledger(args.ledger)
    try:
        if args.action == "status":
            c = led.counts()
            print(f"ledger {args.ledger}: cycle {c['cycle']}, {c['queries']} queries "
                  f"({c['labelled_queries']} labelled, {len(led.pending_queries())} pending), {c['labels']} labels, "
                  f"{led.labelled_pixels()} labelled pixels")
            return 0
        ds = _dataset(args.data, led)
        if args.action == "export":
            qs = led.pending_queries(args.cycle)
            if not qs:
                print("no pending queries to export")
                return 0
            cfg = led.config()
            names = cfg.get("class_names")
            path = export_queries(qs, args.out, dataset=ds, previews=not args.no_previews,
                                  num_classes=cfg.get("num_classes"), class_names=names)
            print(f"exported {len(qs)} queries to {path} (save labelled masks under {Path(args.out) / 'labels'})")
            return 0
        if args.action == "import":
            items = import_labels(args.dir, dataset=ds, missing="skip" if args.skip_missing else "error",
                                  num_classes=led.config().get("num_classes"))
            pending = {q.query_id for q in led.pending_queries()}
            known = {q.query_id for q in led.queries()}
            unknown = sorted({it.query_id for it in items if it.query_id is not None and it.query_id not in known})
            if unknown:
                raise LabelImportError(f"{Path(args.dir) / QUERIES_FILE}: query_id {', '.join(map(str, unknown[:5]))} "
                                       f"{'is' if len(unknown) == 1 else 'are'} not in the ledger {args.ledger} "
                                       f"(an export of another run?); nothing imported")
            fresh = [it for it in items if it.query_id is None or it.query_id in pending]
            if len(fresh) < len(items):
                print(f"skipping {len(items) - len(fresh)} queries that are already labelled")
            if not fresh:
                print("nothing to import")
                return 0
            led.record_labels(led.cycle(), fresh, overlap="allow" if args.allow_overlap else "error")
            print(f"imported {len(fresh)} labelled regions ({sum(int(i.mask.sum()) for i in fresh)} pixels) "
                  f"into {args.ledger}")
            return 0
        raise ValueError(f"unknown action {args.action!r}")
    finally:
        led.close()
