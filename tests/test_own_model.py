"""A network of the user's: a module, a callable or probability files run the whole cycle (scoring, selection
with cross-view dedup, propagation, the ledger, export), and bad ones are refused before any work."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import viewal
from viewal.datasets import open_dataset
from viewal.nn.predictor import FilePredictor, OwnModule, check_probabilities, has_dropout, write_probabilities
from viewal.nn.train import load_checkpoint
from viewal.runs.learner import kernel_backend_for

FAST = dict(epochs=1, steps=2, validations=1, mc_passes=3, seed_fraction=0.2, num_threads=1, batch_size=4,
            infer_batch_size=4)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """4 rooms x 5 views, 64x80, every frame labelled (the simulated oracle answers)."""
    from viewal.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("own") / "data"
    generate_dataset(root, scenes=4, frames=5, height=64, width=80, seed=3, progress=False)
    return root


class SmallNet(nn.Module):
    """A network viewal knows nothing of: two convolutions, a dropout layer, logits at the input size."""

    def __init__(self, classes: int, p: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Dropout2d(p), nn.Conv2d(16, classes, 1))

    def forward(self, x):
        return self.body(x)


def run_cycle(learner, budget=1500):
    """Seed set labelled by the oracle, cycle 0 closed, cycle 1's queries asked and answered, cycle 1 closed."""
    learner.label()
    m0 = learner.close_cycle(progress=False)
    queries = learner.query(budget, progress=False)
    assert learner.label() == len(queries) > 0
    m1 = learner.close_cycle(progress=False)
    return m0, queries, m1


def test_a_module_of_the_users_runs_a_cycle_and_is_trained(scans, tmp_path):
    ds = open_dataset(scans)
    torch.manual_seed(0)
    net = SmallNet(ds.num_classes)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    learner = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "run.sqlite", model=net, **FAST)
    assert learner.own.samples and learner.fits  # dropout layers: MC samples; trained by default
    m0, queries, m1 = run_cycle(learner)
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())  # the user's module was trained
    assert 0 <= m1["miou"] <= 1 and m1["labelled_fraction"] > m0["labelled_fraction"]
    assert m1["steps"] == 2
    # cross-view dedup: no two queries of one scene share a region
    keys = [(q.frame_key, q.region_id) for q in queries]
    assert len(set(keys)) == len(keys)
    # a checkpoint of the user's weights, loaded back into the user's module
    path = learner.save_model(tmp_path / "c1.pt")
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    learner.load_model(path)
    assert all(torch.equal(trained[k], v) for k, v in net.state_dict().items())


def test_fit_false_keeps_the_users_weights(scans, tmp_path):
    ds = open_dataset(scans)
    torch.manual_seed(1)
    net = SmallNet(ds.num_classes)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    learner = viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / "run.sqlite", model=net, fit=False, **FAST)
    m0, queries, m1 = run_cycle(learner)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert m0["steps"] == m1["steps"] == -1 and m0["miou"] == m1["miou"]  # same weights, same test mIoU


def test_mc_samples_of_a_module_are_seeded_and_differ():
    net = SmallNet(5, p=0.5)
    own = OwnModule(net, 5)
    from viewal.nn.predictor import ModulePredictor

    class F:  # a frame as the predictor reads it
        def __init__(self, i):
            self.rgb = np.random.default_rng(i).integers(0, 255, (16, 20, 3), dtype=np.uint8)
            self.key = f"s/{i}"

    frames = [F(0), F(1)]
    pred = ModulePredictor(own)
    a = pred.predict(frames, passes=4, seed=7, return_passes=True)
    b = pred.predict(frames, passes=4, seed=7, return_passes=True)
    assert a["passes"].shape == (4, 2, 5, 16, 20)
    np.testing.assert_array_equal(a["passes"], b["passes"])  # seeded: a resumed run draws the same masks
    assert np.abs(a["passes"][0] - a["passes"][1]).max() > 1e-3  # the dropout layer is on: samples differ
    np.testing.assert_allclose(a["probs"], a["passes"].mean(0), rtol=1e-6)
    assert net.training and net.body[2].training  # each layer left in the mode it was found in
    net.eval()
    pred.predict(frames, passes=2, seed=7)
    assert not net.training and not net.body[2].training
    assert not has_dropout(nn.Sequential(nn.Conv2d(3, 5, 1), nn.Dropout(0.0)))


def test_a_torchvision_model_without_dropout_scores_with_one_pass(scans, tmp_path):
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    ds = open_dataset(scans)
    torch.manual_seed(0)
    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=ds.num_classes)
    learner = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "run.sqlite", model=net, fit=False,
                                   **FAST)
    assert not learner.own.samples  # no dropout layer: one deterministic pass
    m0, queries, m1 = run_cycle(learner)
    assert queries and m1["regions"] > m0["regions"]
    with pytest.raises(ValueError, match="scorer 'bald' needs MC samples, and the model has no dropout layer"):
        viewal.ActiveLearner(ds, scorer="bald", ledger=tmp_path / "b.sqlite", model=net, **FAST)


def sharp_probs(frames, classes):
    """(N, C, H, W) probabilities that are confident where the frame's label says, less so elsewhere."""
    out = []
    for f in frames:
        lab = np.asarray(f.labels).astype(np.int64)
        p = np.full((classes,) + lab.shape, 0.02, np.float32)
        ok = lab < classes
        rows, cols = np.nonzero(ok)
        p[lab[ok], rows, cols] = 0.5 + 0.4 * (np.sin(rows * 0.7 + cols * 0.3) > 0)  # ragged confidence
        out.append(p / p.sum(0, keepdims=True))
    return np.stack(out)


def test_a_predict_callable_runs_a_cycle(scans, tmp_path):
    ds = open_dataset(scans)
    calls = []

    def predict(frames):
        calls.append(len(frames))
        return sharp_probs(frames, ds.num_classes)

    learner = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "run.sqlite", predict=predict,
                                   propagate=True, **FAST)
    assert not learner.fits and not learner.own.samples
    m0, queries, m1 = run_cycle(learner)
    assert m1["miou"] > 0.5  # argmax of the given probabilities is the labels
    assert m1["propagated_pixels"] > 0  # propagation works on any model's run
    assert calls and max(calls) <= FAST["infer_batch_size"]
    with pytest.raises(ValueError, match="fit=True: viewal cannot train predict"):
        viewal.ActiveLearner(ds, ledger=tmp_path / "x.sqlite", predict=predict, fit=True, **FAST)


def test_probability_files_run_a_cycle_and_the_loop(scans, tmp_path):
    from viewal.cli import main

    ds = open_dataset(scans)
    probs = tmp_path / "probs"
    for split in ("train", "val", "test"):
        for f in ds.split(split):
            write_probabilities(probs, f.scene_id, f.frame_id, sharp_probs([f], ds.num_classes)[0])
    learner = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "run.sqlite", probabilities=probs,
                                   **FAST)
    assert learner.own.kind == "probability files"
    m0, queries, m1 = run_cycle(learner)
    assert m1["miou"] > 0.5
    # the same files through the command line: start, answer the seed set, next cycle, export
    run = tmp_path / "loop"
    args = ["--data", str(scans), "--run", str(run), "--probabilities", str(probs), "--budget", "4",
            "--seed-fraction", "0.2", "--mc-passes", "2", "--threads", "1"]
    assert main(["loop", "start", *args, "--seed-set", "ask"]) == 0
    seed = run / "queries" / "cycle-0"
    assert main(["query", "answer", str(seed), "--run", str(run), "--truth", str(scans)]) == 0
    assert main(["query", "import", str(seed), "--run", str(run)]) == 0
    assert main(["loop", "next", "--run", str(run), "--probabilities", str(probs)]) == 0
    from viewal.labelling.loop import run_ledger_path
    from viewal.runs.ledger import Ledger

    led = Ledger(run_ledger_path(run))
    try:
        assert led.cycle() == 1 and led.pending_queries(1)
        assert led.meta("model") == "probability files"
        # the labels so far, as label maps a network of the user's trains on
        assert main(["query", "labels", "--run", str(run), "--out", str(tmp_path / "labels")]) == 0
        from viewal.core.io import read_image

        keys = led.labelled_frames()
        assert len(keys) == 2  # the seed set's two frames
        for key in keys:
            png = read_image(tmp_path / "labels" / f"{key}.png")
            np.testing.assert_array_equal(png, ds.frame(key).labels)  # whole frames, answered from the truth
    finally:
        led.close()


def test_wrapping_viewals_deeplab_selects_what_the_builtin_path_selects(scans, tmp_path):
    ds = open_dataset(scans)
    cfg = dict(FAST, steps=3)
    a = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "a.sqlite", **cfg)
    a.label()
    ma = a.close_cycle(tmp_path / "c0.pt", progress=False)
    qa = a.query(1500, progress=False)
    model = load_checkpoint(tmp_path / "c0.pt")  # the same DeepLabv3+, e.g. trained on a GPU elsewhere
    b = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "b.sqlite", model=model, fit=False, **cfg)
    b.label()
    mb = b.close_cycle(progress=False)
    qb = b.query(1500, progress=False)
    assert mb["miou"] == pytest.approx(ma["miou"], abs=1e-9)
    assert [(q.frame_key, q.region_id) for q in qa] == [(q.frame_key, q.region_id) for q in qb]
    assert [q.score for q in qa] == pytest.approx([q.score for q in qb], rel=1e-6)
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(qa, qb))


def test_bad_networks_are_refused_before_any_work(scans, tmp_path):
    ds = open_dataset(scans)
    C = ds.num_classes
    ledger = tmp_path / "never.sqlite"

    def refused(match, **kw):
        with pytest.raises(ValueError, match=match):
            viewal.ActiveLearner(ds, scorer=kw.pop("scorer", "view_entropy"), ledger=ledger, **FAST, **kw)
        assert not ledger.exists()  # nothing written

    refused(rf"maps images \(1, 3, 64, 80\) to \(1, 4, 64, 80\); expected logits \(1, {C}, 64, 80\)",
            model=nn.Conv2d(3, 4, 1))
    refused(rf"to \(1, {C}, 32, 40\)", model=nn.Conv2d(3, C, 2, stride=2))
    refused(rf"shape \(1, 3, 64, 80\), expected \(N, C, H, W\) = \(1, {C}, 64, 80\): 3 classes",
            predict=lambda fr: np.full((len(fr), 3, 64, 80), 1 / 3, np.float32))
    refused("must sum to 1 per pixel", predict=lambda fr: np.ones((len(fr), C, 64, 80), np.float32))
    refused("NaN", predict=lambda fr: np.full((len(fr), C, 64, 80), np.nan, np.float32))
    refused("not logits", predict=lambda fr: np.random.default_rng(0).normal(size=(len(fr), C, 64, 80)))
    refused("scorer 'coreset' needs features", scorer="coreset", predict=lambda fr: sharp_probs(fr, C))
    refused("pseudo_labels='classwise' trains viewal's own", predict=lambda fr: sharp_probs(fr, C),
            pseudo_labels="classwise")
    refused("give one source of probabilities", predict=lambda fr: sharp_probs(fr, C), model=nn.Conv2d(3, C, 1))
    refused("fit=False keeps the weights of a model of yours", fit=False)
    refused("the run's device is 'cpu'", model=_on_meta(C))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        viewal.ActiveLearner(ds, ledger=ledger, probabilities=tmp_path / "nope", **FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no <scene>/<frame>.npz file"):
        viewal.ActiveLearner(ds, ledger=ledger, probabilities=tmp_path / "empty", **FAST)
    assert not ledger.exists()


def _on_meta(classes):
    """A module whose weights live on another device than the run's (the meta device stands in for a GPU)."""
    return nn.Conv2d(3, classes, 1, device="meta")


def test_a_missing_probability_file_is_named(scans, tmp_path):
    ds = open_dataset(scans)
    f = ds.split("train")[1]
    write_probabilities(tmp_path, f.scene_id, f.frame_id, sharp_probs([f], ds.num_classes)[0])
    pred = FilePredictor(tmp_path, ds.num_classes)
    out = pred.predict([f])
    assert out["probs"].shape == (1, ds.num_classes, 64, 80)
    np.testing.assert_allclose(out["probs"][0], sharp_probs([f], ds.num_classes)[0], atol=1e-3)  # float16 on disk
    g = ds.split("train")[2]
    with pytest.raises(FileNotFoundError, match=f"probabilities of frame {g.key}: .*{g.frame_id}.npz is missing"):
        pred.predict([g])


def test_check_probabilities_accepts_float16_rounding():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=(2, 5, 6)).transpose(0, 3, 1, 2).astype(np.float16)
    out = check_probabilities(p, frames=2, num_classes=7, hw=(5, 6))
    assert out.dtype == np.float32 and out.shape == (2, 7, 5, 6)
    with pytest.raises(ValueError, match=r"expected \(T, N, C, H, W\)"):
        check_probabilities(p, frames=2, num_classes=7, hw=(5, 6), samples=True)


def test_the_kernels_follow_the_device():
    assert kernel_backend_for("cuda", "cpu") == "cuda"
    assert kernel_backend_for("cuda:1", "cpu") == "cuda"
    assert kernel_backend_for("cuda", "numpy") == "numpy"  # the reference, when asked for, stays
    assert kernel_backend_for("cpu", "cpu") == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_run_selects_what_a_cpu_run_selects(scans, tmp_path):
    ds = open_dataset(scans)
    runs = {}
    for device in ("cpu", "cuda"):
        learner = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / f"{device}.sqlite",
                                       predict=lambda fr: sharp_probs(fr, ds.num_classes), device=device, **FAST)
        assert learner.config.depth_test.backend == ("cuda" if device == "cuda" else "cpu")
        learner.label()
        learner.close_cycle(progress=False)
        runs[device] = learner.query(1500, progress=False)
    assert [(q.frame_key, q.region_id) for q in runs["cpu"]] == [(q.frame_key, q.region_id) for q in runs["cuda"]]
    # the kernels agree within 1e-5 (docs/reliability.md): so do the pooled scores
    assert [q.score for q in runs["cpu"]] == pytest.approx([q.score for q in runs["cuda"]], rel=1e-5)
