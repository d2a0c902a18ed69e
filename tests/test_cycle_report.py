"""viewal report: the static HTML page of a run's cycles (images embedded, tables of scores), on a hand-made run."""
import base64
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from viewal.selection import RegionQuery


class Page(HTMLParser):
    """Sections with their images (class, decoded size), score tables (row counts) and what they show in page
    order (``seq``: image classes, "table", and the text of the headings and paragraphs)."""

    def __init__(self):
        super().__init__()
        self.sections, self.cur, self.in_tbody, self.cells, self.row, self.text = [], None, False, [], None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.cur = {"id": a["id"], "imgs": [], "rows": [], "seq": []}
            self.sections.append(self.cur)
        elif tag in ("h2", "h3", "p") and self.cur is not None:
            self.cur["seq"].append("")
            self.text = True
        elif tag == "img":
            head, b64 = a["src"].split(",", 1)
            assert head == "data:image/png;base64"
            img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
            self.cur["imgs"].append((a["class"], img.shape))
            self.cur["seq"].append(a["class"])
        elif tag == "table":
            self.cur["seq"].append("table")
        elif tag == "tbody":
            self.in_tbody = True
        elif tag == "tr" and self.in_tbody:
            self.row = []
        elif tag == "td":
            self.row.append("")

    def handle_data(self, data):
        if self.row is not None and self.row:
            self.row[-1] += data
        elif self.text:
            self.cur["seq"][-1] += data

    def handle_endtag(self, tag):
        if tag in ("h2", "h3", "p"):
            self.text = False
        elif tag == "tbody":
            self.in_tbody = False
        elif tag == "tr" and self.row is not None:
            self.cur["rows"].append(self.row)
            self.row = None


def _queries(ds, frames, n, shift):
    qs = []
    for i, f in enumerate(frames[:n]):
        m = np.zeros((ds.height, ds.width), bool)
        m[4 + shift:14 + shift, 5 + 3 * i:20 + 3 * i] = True
        qs.append(RegionQuery(f.scene_id, f.frame_id, m, score=0.9 - 0.1 * i, region_id=i, view_score=0.1 * i))
    return qs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch

    from viewal.core.config import ALConfig
    from viewal.datasets import open_dataset
    from viewal.datasets.synthetic import generate_dataset
    from viewal.kernels import DepthTest
    from viewal.nn.model import build_model
    from viewal.nn.train import save_checkpoint
    from viewal.runs.layout import RunLayout
    from viewal.runs.ledger import LabelItem, Ledger

    tmp = tmp_path_factory.mktemp("report")
    generate_dataset(tmp / "ds", scenes=3, frames=4, height=48, width=64, seed=5, progress=False)
    ds = open_dataset(tmp / "ds")
    run = tmp / "run"
    layout = RunLayout(run)
    cfg = ALConfig(mc_passes=2, depth_test=DepthTest(backend="numpy"), seed_fraction=0.1,
                   propagate=False)  # a propagating run's page: tests/test_propagation_learner.py
    train = ds.split("train")
    with Ledger(layout.ledger("view_entropy", 0)) as led:
        led.set_config({"al": cfg.to_json(), "dataset": str(ds.root), "num_classes": ds.num_classes})
        whole = np.ones((ds.height, ds.width), bool)
        led.record_labels(0, [LabelItem(train[3].scene_id, train[3].frame_id, whole, train[3].labels, "seed")])
        led.finish_cycle(0, {"miou": 0.20, "labelled_fraction": 0.05, "regions": 1, "frames": 1})
        q1 = led.record_queries(1, _queries(ds, train, 3, 0))
        led.record_labels(1, [LabelItem.from_query(q, np.zeros(q.mask.shape, int), "human") for q in q1[:2]])
        led.finish_cycle(1, {"miou": 0.31, "labelled_fraction": 0.08, "regions": 3, "frames": 3})
        led.record_queries(2, _queries(ds, train, 2, 20))
    torch.manual_seed(0)
    model = build_model(ds.num_classes, encoder="mobilenet_v2")
    save_checkpoint(layout.checkpoint("view_entropy", cfg, 0), model)       # chose cycle 1's queries
    save_checkpoint(layout.checkpoint("view_entropy", cfg, 1), model)       # chose cycle 2's queries
    return run


@pytest.fixture(scope="module")
def report(run_dir):
    from viewal.cli import main

    assert main(["report", "--run", str(run_dir), "--max-frames", "2"]) == 0
    return run_dir / "report.html"


def test_report_command_writes_self_contained_page(run_dir, report):
    text = report.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text    # nothing fetched
    page = Page()
    page.feed(text)
    page.close()
    assert [s["id"] for s in page.sections] == ["run", "cycle-0", "cycle-1", "cycle-2"]
    kinds = [[c for c, _ in s["imgs"]] for s in page.sections]
    assert kinds == [["curve"], [], ["queries", "heatmaps", "cloud"], ["queries", "heatmaps", "cloud"]]
    assert all(min(shape[:2]) > 100 for s in page.sections for _, shape in s["imgs"])
    assert [len(s["rows"]) for s in page.sections] == [0, 0, 3, 2]
    r1 = page.sections[2]["rows"]
    assert [r[0] for r in r1] == ["0", "1", "2"] and [r[3] for r in r1] == ["0.9", "0.8", "0.7"]
    assert [r[6] for r in r1] == ["human", "human", "pending"]
    assert "test mIoU after the cycle: 31.0 %" in text
    assert not list(run_dir.glob(".*"))                                               # no temporary files


def test_report_reads_top_down(report):
    """The run's whole curve once, at the top, before the first cycle; then per cycle what was asked, why (the
    heat-maps of the model that chose it), then the numbers; no cycle has a curve of its own."""
    text = report.read_text()
    page = Page()
    page.feed(text)
    page.close()
    curves = [(s["id"], c) for s in page.sections for c, _ in s["imgs"] if c == "curve"]
    assert curves == [("run", "curve")]
    assert text.index('class="curve"') < text.index('id="cycle-0"') and text.count('class="curve"') == 2  # figure, img
    assert page.sections[1]["seq"] == ["Cycle 0", "What was asked",
                                       "1 labels without a query (seed): 1 frames, 3072 px", "Numbers",
                                       "test mIoU after the cycle: 20.0 %, labelled 5.00 % of the pool's pixels"]
    assert page.sections[2]["seq"] == ["Cycle 1", "What was asked", "queries", "Why: the model that chose them",
                                       "heatmaps", "cloud", "Numbers",
                                       "test mIoU after the cycle: 31.0 %, labelled 8.00 % of the pool's pixels",
                                       "table"]
    assert page.sections[3]["seq"][-2:] == ["Numbers", "table"]                     # cycle 2: no result yet
    assert page.sections[0]["seq"] == ["The run", "curve"]


def test_report_without_ground_truth_draws_class_shares_once(run_dir, tmp_path):
    """Without labelled test frames the curve at the top is each class's share of the labelled and predicted
    pixels against the share labelled; each cycle names its largest classes in its numbers."""
    import shutil

    from viewal.runs.cycle_report import run_curve_plot, write_cycle_report
    from viewal.runs.ledger import Ledger

    bare = tmp_path / "nogt"
    shutil.copytree(run_dir / "ledgers", bare / "ledgers")
    with Ledger(bare / "ledgers" / "view_entropy-s0.sqlite") as led:
        led.record_result(0, {"labelled_fraction": 0.05, "class_pixels": [30, 10, 0, 0],
                              "classes_seen": [0, 1], "predicted_class_shares": [0.5, 0.25, 0.25, 0.0]})
        led.record_result(1, {"labelled_fraction": 0.08, "class_pixels": [30, 20, 0, 50],
                              "classes_seen": [0, 1, 3], "predicted_class_shares": [0.4, 0.2, 0.1, 0.3]})
    page = Page()
    text = write_cycle_report(bare, progress=False).read_text()
    page.feed(text)
    assert [[c for c, _ in s["imgs"]] for s in page.sections] == [["curve"], [], ["queries"], ["queries"]]
    assert "mIoU after" not in text and "of the pixels the model predicts (right)" in text
    assert page.sections[2]["seq"][-2].endswith(                                        # 100 px labelled in cycle 1
        "3 classes seen; largest classes, % of the labelled / predicted pixels: door 50.0 / 30.0, wall 30.0 / 40.0, "
        "floor 20.0 / 20.0")
    with pytest.raises(ValueError, match="no result with an mIoU or class shares"):
        run_curve_plot([{"cycle": 0, "labelled_fraction": 0.1}], tmp_path / "x.png")


def test_report_without_checkpoints_notes_it(run_dir, tmp_path):
    import shutil

    from viewal.runs.cycle_report import write_cycle_report

    bare = tmp_path / "bare"
    shutil.copytree(run_dir / "ledgers", bare / "ledgers")
    page = Page()
    page.feed(write_cycle_report(bare, progress=False).read_text())
    assert [[c for c, _ in s["imgs"]] for s in page.sections] == [["curve"], [], ["queries"], ["queries"]]
    assert "no heat-maps or point cloud" in (bare / "report.html").read_text()
    with pytest.raises(FileNotFoundError, match="no ledger .*random-s0.sqlite"):
        write_cycle_report(bare, "random", progress=False)


def test_report_renders_in_headless_chromium(report, tmp_path):
    """Debian's chromium (installed by scripts/install_and_test.sh where apt works) renders the page: its DOM
    has the images and tables, and the screenshot shows them (many colours, not a blank or text-only page)."""
    import shutil
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("no chromium (apt-get install chromium)")
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180,
                         check=True).stdout
    page = Page()
    page.feed(dom)
    assert [len(s["imgs"]) for s in page.sections] == [1, 0, 3, 3]
    assert [len(s["rows"]) for s in page.sections] == [0, 0, 3, 2]
    shot = tmp_path / "report.png"
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri()], capture_output=True,
                   timeout=180, check=True)
    img = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (2400, 1280)
    colours = np.unique(img.reshape(-1, 3) // 8, axis=0).shape[0]
    assert colours > 300, colours                    # pictures drawn (a text-only page has a few grey levels)
    assert (img < 250).any(axis=2).mean() > 0.05     # not blank
