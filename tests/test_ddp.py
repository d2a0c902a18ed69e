"""Data-parallel training (``torchrun``; here two CPU processes with gloo) against one process
training on the same global batch.

What must match and why (docs/scale.md): every rank draws and assembles the same global batch (same
generators) and trains on its rows; gradients are averaged with each share's cross-entropy weighted by its
labelled pixels. Two things still differ by design and are switched off for the exact comparison: the
random layers' masks (dropout, drop-path: one generator stream per rank) and BatchNorm's batch statistics
(per rank on CPUs, where SyncBatchNorm is unavailable; ``TrainConfig.freeze_bn`` keeps the running ones).
"""
import os
import socket

import numpy as np
import pytest
import torch

STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rooms_3x4_48x64(tmp_path_factory):
    """3 synthetic rooms x 4 frames of 48x64 pixels (seed 11)."""
    from viewal.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("ddp") / "data"
    generate_dataset(root, scenes=3, frames=4, height=48, width=64, seed=11, progress=False)
    return root


def _items(root):
    """Train frames with partial labels of different sizes (a random share of pixels each), so that the
    ranks' shares carry different numbers of labelled pixels."""
    from viewal.datasets import open_dataset

    frames = open_dataset(root).split("train")
    rng = np.random.default_rng(0)
    items = []
    for f in frames:
        lab = np.asarray(f.labels).copy()
        lab[rng.random(lab.shape) > rng.uniform(0.1, 0.9)] = 255
        items.append((f, lab))
    return items


def _model(num_classes):
    from viewal.nn.model import build_model

    torch.manual_seed(0)
    model = build_model(num_classes, encoder_weights=None, decoder_channels=16, dropout=0.0)
    for m in model.modules():  # random layers off: their masks are drawn per rank by design
        if type(m).__name__ == "DropPath":
            m.drop_prob = 0.0
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def _train(root, freeze_bn: bool):
    from viewal.datasets import open_dataset
    from viewal.nn.train import TrainConfig, fit

    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=1, steps=STEPS, steps_per_epoch=1, batch_size=4, lr=1e-2, seed=0, sampling="labels",
                      freeze_bn=freeze_bn, bn_recalibrate=0)
    model = _model(open_dataset(root).num_classes)
    res = fit(model, _items(root), [], cfg, progress=False, log_epochs=False)
    return res.losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rank(rank, world, port, root, freeze_bn, out):
    # gloo on the loopback interface: the two processes talk over 127.0.0.1 only
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), NUMBA_THREADING_LAYER="omp", GLOO_SOCKET_IFNAME="lo")
    import torch.distributed as dist

    from viewal.nn.distributed import init_from_env

    w = init_from_env("cpu")
    assert (w.rank, w.size) == (rank, world) and dist.get_backend() == "gloo"
    losses, state = _train(root, freeze_bn)
    torch.save({"losses": losses, "state": state}, f"{out}.rank{rank}")
    dist.destroy_process_group()


def _ddp(root, tmp_path, freeze_bn):
    import torch.multiprocessing as mp

    out = str(tmp_path / "ddp")
    mp.spawn(_rank, args=(2, _free_port(), str(root), freeze_bn, out), nprocs=2, join=True)
    return [torch.load(f"{out}.rank{r}", weights_only=True) for r in range(2)]


def _max_rel(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max() / (b[k].double().abs().max() + 1e-12))
               for k in b if b[k].is_floating_point())


def test_two_processes_match_one_process_with_the_same_global_batch(rooms_3x4_48x64, tmp_path):
    """Frozen BatchNorm, random layers off: the loss after each of 4 steps matches to 1e-4 (relative) and the
    weights to 1e-3 (largest difference relative to the tensor's largest value); the ranks end equal."""
    want_losses, want_state = _train(rooms_3x4_48x64, freeze_bn=True)
    r0, r1 = _ddp(rooms_3x4_48x64, tmp_path, freeze_bn=True)
    assert len(r0["losses"]) == STEPS and np.ptp(want_losses) > 1e-3  # the loss moves: the steps did something
    np.testing.assert_allclose(r0["losses"], want_losses, rtol=1e-4)
    assert r0["losses"] == r1["losses"]
    assert _max_rel(r0["state"], want_state) < 1e-3
    assert _max_rel(r1["state"], r0["state"]) == 0.0


@pytest.mark.slow
def test_per_rank_batchnorm_stays_close(rooms_3x4_48x64, tmp_path):
    """Train-mode BatchNorm normalises each rank's 2 samples with their own statistics (CPU: no
    SyncBatchNorm): the first step's loss differs from one process's on 4 samples by the statistics alone,
    and the losses stay within 10 % over 4 steps."""
    want_losses, _ = _train(rooms_3x4_48x64, freeze_bn=False)
    r0, _ = _ddp(rooms_3x4_48x64, tmp_path, freeze_bn=False)
    np.testing.assert_allclose(r0["losses"], want_losses, rtol=0.10)


# Every file a process of ``viewal train`` moves into place (``viewal.core.io.atomic_path`` ends with os.replace),
# recorded by an audit hook that a sitecustomize on PYTHONPATH installs in each torchrun worker.
_RENAME_HOOK = '''
import atexit, os, sys
_renamed = []
def _hook(event, args):
    if event == "os.rename":
        _renamed.append(os.path.basename(os.fsdecode(args[1])))
sys.addaudithook(_hook)
@atexit.register
def _write():
    if "RANK" in os.environ:
        with open(os.path.join(os.environ["VIEWAL_TEST_RENAMES"], "rank" + os.environ["RANK"]), "w") as f:
            f.write("\\n".join(_renamed))
'''


def test_viewal_train_under_torchrun_two_processes(rooms_3x4_48x64, tmp_path):
    """The real command, ``torchrun --standalone --nproc_per_node 2 -m viewal.cli train`` (gloo on CPUs): rank 0
    alone prints and moves files into the output (model.pt, metrics.json), rank 1 writes nothing, and the
    checkpoint loads and records two processes."""
    import json
    import subprocess
    import sys

    from viewal.datasets import open_dataset
    from viewal.nn.train import load_checkpoint

    hook, renames, out = tmp_path / "hook", tmp_path / "renames", tmp_path / "out"
    hook.mkdir()
    renames.mkdir()
    (hook / "sitecustomize.py").write_text(_RENAME_HOOK)
    env = {**os.environ, "NUMBA_THREADING_LAYER": "omp", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
           "VIEWAL_TEST_RENAMES": str(renames)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "viewal.cli", "train", "--data", str(rooms_3x4_48x64), "--out", str(out), "--epochs", "2",
           "--batch-size", "4", "--init", "random", "--threads", "1", "--no-progress"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert run.stdout.count("viewal train: best epoch") == 1 and "2 processes (global batch 4)" in run.stdout
    assert sorted(p.name for p in renames.iterdir()) == ["rank0", "rank1"]  # both workers ran the hook
    assert sorted((renames / "rank0").read_text().split()) == ["metrics.json", "model.pt"]
    assert (renames / "rank1").read_text() == ""
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]  # no temp file left
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and len(metrics["history"]) == 2
    classes = open_dataset(rooms_3x4_48x64).num_classes
    model = load_checkpoint(out / "model.pt", num_classes=classes)
    meta = torch.load(out / "model.pt", weights_only=True)["meta"]
    assert meta["val_miou"] == metrics["val_miou"] and meta["best_epoch"] == metrics["best_epoch"]
    with torch.no_grad():
        assert tuple(model.eval()(torch.rand(1, 3, 48, 64)).shape) == (1, classes, 48, 64)
