"""``viewal query``: human in the loop against a run's ledger: ``export`` its pending region queries
(:func:`viewal.labelling.hitl.export_queries`; PNG masks, COCO RLE or Label Studio tasks, split among ``--annotators``),
``import`` labels (:func:`viewal.labelling.hitl.import_labels`, :func:`viewal.labelling.hitl.import_label_studio`),
``status``."""
from __future__ import annotations

import argparse
from pathlib import Path

from viewal.core.io import write_image
from viewal.datasets import open_dataset
from viewal.labelling.answer import answer_export
from viewal.labelling.hitl import (
    FORMATS,
    QUERIES_FILE,
    LabelImportError,
    import_label_studio,
    import_labels,
    read_queries_json,
)
from viewal.runs.ledger import Ledger

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="<action>", required=True)
    ex = sub.add_parser("export", help="write the unlabelled queries for labellers (PNG, COCO or Label Studio)")
    _add_ledger_arguments(ex)
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--data", help="dataset directory (RGB previews and frame images, class names, size checks)")
    ex.add_argument("--cycle", type=int, default=None, help="cycle whose queries to export (default: all pending)")
    ex.add_argument("--no-previews", action="store_true", help="skip the RGB crop previews")
    ex.add_argument("--format", choices=FORMATS, default="png",
                    help="png: PNG region masks, labels back as PNG; coco: COCO RLE regions, labels back as a COCO "
                         "file; label-studio: a Label Studio labelling config and tasks with the regions pre-drawn")
    ex.add_argument("--annotators", type=int, default=1, metavar="K",
                    help="split the queries into K disjoint batches (round-robin by rank), one folder "
                         "OUT/annotator-<k> each")
    ex.add_argument("--image-url", default=None, metavar="PREFIX",
                    help="label-studio: tasks refer to frame images as PREFIX/images/... (e.g. a storage URL) "
                         "instead of embedding them as data URIs")
    im = sub.add_parser("import", help="read labels of an export into the ledger (source=human)")
    im.add_argument("source", nargs="?", default=None,
                    help="export directory, or Label Studio's JSON export file (--format label-studio)")
    _add_ledger_arguments(im)
    im.add_argument("--dir", default=None, help="export directory holding queries.json (same as SOURCE)")
    im.add_argument("--format", choices=("auto", *FORMATS), default="auto",
                    help="auto: the export's own format (queries.json); label-studio: SOURCE is Label Studio's "
                         "JSON export")
    im.add_argument("--labels", default=None, help="coco: the labeller's COCO file (default DIR/labels.json)")
    im.add_argument("--data", help="dataset directory (frame sizes, class count and names)")
    im.add_argument("--skip-missing", action="store_true", help="ignore queries without labels yet")
    im.add_argument("--allow-overlap", action="store_true",
                    help="accept labels overlapping already-labelled pixels (corrections; later labels win)")
    an = sub.add_parser("answer", help="a scripted labeller: answer an export from a labelled copy of the dataset "
                                       "(to try the loop before anyone labels)")
    an.add_argument("source", help="export directory (with queries.json)")
    _add_ledger_arguments(an)
    an.add_argument("--truth", required=True, help="the labelled copy of the run's dataset whose labels answer")
    st = sub.add_parser("status", help="summary of the ledger: cycle, queries, labels")
    _add_ledger_arguments(st)
    lb = sub.add_parser("labels", help="write the ledger's labels as label maps, to train a network of yours on "
                                       "them: OUT/<scene>/<frame>.png, class ids, 255 = unlabelled")
    _add_ledger_arguments(lb)
    lb.add_argument("--out", required=True, help="output directory")


def _add_ledger_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ledger", help="SQLite ledger of the run")
    g.add_argument("--run", help="run folder of 'viewal loop start' (its ledger)")


def _ledger_path(args: argparse.Namespace) -> str:
    if args.run is not None:
        from viewal.labelling.loop import run_ledger_path

        return str(run_ledger_path(args.run))
    return args.ledger


def _open_ledger(path: str):
    if not Path(path).is_file():
        raise FileNotFoundError(f"ledger file does not exist: {path}")
    return Ledger(path)


def _dataset(path: str | None, ledger=None):
    """The dataset at ``path`` as the ledger's run saw it: resized to the run's working size (``--size``),
    so that exported masks and frames agree."""
    if not path:
        return None
    size = ((ledger.config().get("al") or {}).get("size") if ledger is not None else None)
    kw = {"height": int(size[0]), "width": int(size[1])} if size else {}
    return open_dataset(path, **kw)


def run(args: argparse.Namespace) -> int:
    args.ledger = _ledger_path(args)
    led = _open_ledger(args.ledger)
    try:
        if args.action == "status":
            from viewal.labelling.loop import cycle_progress

            c = led.counts()
            print(f"ledger {args.ledger}: cycle {c['cycle']}, {c['queries']} queries "
                  f"({c['labelled_queries']} labelled, {len(led.pending_queries())} pending), {c['labels']} labels, "
                  f"{led.labelled_pixels()} labelled pixels")
            for r in cycle_progress(led):
                miou = f", mIoU {100 * r['miou']:.1f}" if r["miou"] is not None else ""
                print(f"  cycle {r['cycle']}: {r['answered']}/{r['queries']} queries answered, {r['pending']} pending, "
                      f"{r['labels']} labels, {r['labelled_pixels']} pixels{miou}"
                      f"{'' if r['closed'] else ' (open)'}")
            return 0
        if args.action == "labels":
            paths = write_label_maps(led, args.out)
            print(f"wrote the label maps of {len(paths)} frames ({led.labelled_pixels()} labelled pixels) to "
                  f"{args.out}")
            return 0
        if args.action == "answer":
            path = answer_export(args.source, _dataset(args.truth, led))
            print(f"answered the queries of {args.source}: {path}")
            return 0
        if args.data is None and args.run is not None:
            from viewal.labelling.loop import read_loop

            args.data = read_loop(args.run)["data"]
        ds = _dataset(args.data, led)
        if args.action == "export":
            return _export(led, ds, args)
        if args.action == "import":
            return _import(led, ds, args)
        raise ValueError(f"unknown action {args.action!r}")
    finally:
        led.close()


def write_label_maps(led, out: str | Path) -> list[Path]:
    """Every labelled frame of the ledger as an 8-bit PNG label map ``out/<scene>/<frame>.png`` (class ids, 255 =
    unlabelled; later labels win on overlap), each written atomically. Returns the paths."""
    import numpy as np

    paths = []
    for key in led.labelled_frames():
        lab = led.label_map(key)
        if lab.max() > 255:
            raise ValueError(f"{key}: class ids above 255 do not fit an 8-bit label map")
        scene, frame = key.rsplit("/", 1)
        path = Path(out) / scene / f"{frame}.png"
        write_image(path, lab.astype(np.uint8), rgb=False)
        paths.append(path)
    return paths


def _export(led, ds, args) -> int:
    from viewal.labelling.loop import export_for_people

    qs = led.pending_queries(args.cycle)
    if not qs:
        print("no pending queries to export")
        return 0
    cfg = led.config()
    paths = export_for_people(qs, args.out, dataset=ds, format=args.format, annotators=args.annotators,
                              previews=not args.no_previews, image_url=args.image_url,
                              num_classes=cfg.get("num_classes"), class_names=cfg.get("class_names"))
    if args.annotators == 1:
        print(f"exported {len(qs)} queries ({args.format}) to {paths[0]}")
        return 0
    for path in paths:
        n = len(read_queries_json(path.parent)["queries"])
        print(f"{path.parent.name.replace('-', ' ')}: {n} queries ({args.format}) in {path}")
    return 0


def _import(led, ds, args) -> int:
    src = args.source or args.dir
    if src is None or (args.source and args.dir and Path(args.source) != Path(args.dir)):
        raise ValueError("give the export to import once: SOURCE or --dir")
    cfg = led.config()
    fmt = args.format
    if fmt == "auto":
        fmt = "label-studio" if Path(src).is_file() else "export"
    if fmt == "label-studio":
        if ds is None and not cfg.get("class_names") and cfg.get("dataset"):
            ds = _dataset(cfg["dataset"], led)  # brush labels are class names: the run's dataset has them
        names = list(ds.class_names) if ds is not None else cfg.get("class_names")
        items = import_label_studio(src, class_names=names, dataset=ds, num_classes=cfg.get("num_classes"),
                                    missing="skip" if args.skip_missing else "error")
        where = Path(src)
    else:
        if not Path(src).is_dir():
            what = "Label Studio export file" if str(src).endswith(".json") else "export directory"
            raise FileNotFoundError(f"{what} does not exist: {src}")
        doc = read_queries_json(src)
        if fmt != "export" and doc.get("label_format", "png") != fmt:
            raise LabelImportError(f"{Path(src) / QUERIES_FILE}: an export in {doc.get('label_format', 'png')} "
                                   f"format, not {fmt}")
        items = import_labels(src, dataset=ds, missing="skip" if args.skip_missing else "error",
                              num_classes=cfg.get("num_classes"), labels_file=args.labels)
        where = Path(src) / QUERIES_FILE
    known = {q.query_id for q in led.queries()}
    unknown = sorted({it.query_id for it in items if it.query_id is not None and it.query_id not in known})
    if unknown:
        raise LabelImportError(f"{where}: query_id {', '.join(map(str, unknown[:5]))} "
                               f"{'is' if len(unknown) == 1 else 'are'} not in the ledger {args.ledger} "
                               f"(an export of another run?); nothing imported")
    if not items:
        print("nothing to import")
        return 0
    # one transaction; the same file imported again is skipped, a label of another origin refused
    n = led.record_labels(led.cycle(), items, overlap="allow" if args.allow_overlap else "error",
                          relabel="skip-same-origin")
    if n < len(items):
        print(f"skipping {len(items) - n} queries that are already labelled from this source")
    if n:
        print(f"imported {n} labelled regions into {args.ledger}")
    else:
        print("nothing to import")
    return 0
