"""scripts/benchmark_label_efficiency.py: --no-full-data runs the cycles only; the report comes later."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_label_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_label_efficiency", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_full_data_runs_the_cycles_and_no_reference(bench, rooms_64x80, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", str(rooms_64x80), "--out", str(out), "--methods", "random", "--cycles", "1", "--budget", "5",
            "--seeds", "0,", "--size", "32x40", "--iterations", "1", "--mc-passes", "1", "--threads", "1",
            "--batch-size", "4", "--decoder-channels", "16", "--init", "random", "--seed-fraction", "0.2",
            "--validations", "1", "--noise-floor", ""]
    assert bench.main(args + ["--no-full-data"]) == 0
    assert not (out / "full_data.json").exists()
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header, cycles 0 and 1 of one seed
    assert "no report" in capsys.readouterr().out
    # a reference of another recipe in OUT is neither retrained nor overwritten by a --no-full-data run
    (out / "full_data.json").write_text('{"miou": 0.5, "recipe": {"train": "another"}}')
    assert bench.main(args + ["--no-full-data"]) == 0
    assert (out / "full_data.json").read_text() == '{"miou": 0.5, "recipe": {"train": "another"}}'
    assert "no report" in capsys.readouterr().out
    (out / "full_data.json").unlink()
    assert bench.main(args + ["--report-only", "--docs", str(tmp_path / "docs")]) == 0
    assert (out / "full_data.json").is_file()
    assert (tmp_path / "docs" / "label_efficiency.md").is_file()
    # with this recipe's reference in OUT, a --no-full-data run reports (and trains no reference again)
    made = (out / "full_data.json").read_text()
    capsys.readouterr()
    assert bench.main(args + ["--no-full-data"]) == 0
    assert "no report" not in capsys.readouterr().out and (out / "full_data.json").read_text() == made


def test_full_data_steps_trains_a_longer_reference_for_the_report(bench, rooms_64x80, tmp_path):
    """--full-data-steps N: the report's full-data reference trains at least N steps (here 6 against the
    run's 1), says so, and is cached under its own recipe; the cycles themselves keep the run's recipe."""
    import json

    from viewal.core.config import ALConfig

    out = tmp_path / "run"
    args = ["--data", str(rooms_64x80), "--out", str(out), "--methods", "random", "--cycles", "1", "--budget", "5",
            "--seeds", "0,", "--size", "32x40", "--iterations", "1", "--mc-passes", "1", "--threads", "1",
            "--batch-size", "4", "--decoder-channels", "16", "--init", "random", "--seed-fraction", "0.2",
            "--validations", "1", "--noise-floor", "", "--full-data-steps", "6"]
    assert bench.main(args + ["--docs", str(tmp_path / "docs")]) == 0
    ref = json.loads((out / "full_data.json").read_text())
    assert ref["steps"] == 6 and ref["recipe"]["train"]["steps"] == 6
    assert "all train labels, at least 6 steps" in (tmp_path / "docs" / "label_efficiency.md").read_text()
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # the cycles ran with the run's recipe: 1 step each
    base = ALConfig(steps=1, epochs=1)
    assert bench.reference_config(base, None) is base and bench.reference_config(base, 1) is base
    assert bench.reference_config(ALConfig(epochs=8, min_iterations=150), 2100).min_iterations == 2100
    with pytest.raises(SystemExit, match="--full-data-steps must be >= 1"):
        bench.reference_config(base, 0)


@pytest.mark.parametrize("propagate", ["--propagate", "--no-propagate"])
def test_warm_noise_floor_retrains_the_whole_chain_and_resumes(bench, rooms_64x80, tmp_path, monkeypatch, propagate):
    """A --warm-start run's noise floor retrains its chain of fits (each cycle from the previous model) on the
    ledger's labels (and, propagating, the labels they propagate to), so every cycle gets a floor. With the
    run's own training seed the chain replays the run's models exactly; a cold fit on the same labels does
    not. A floor cut off after one train seed resumes there: only the missing train seed is retrained."""
    import json
    from dataclasses import replace

    from viewal.cli import experiment as experiment_cli
    from viewal.runs import experiment
    from viewal.runs.ledger import Ledger

    out = tmp_path / "run"
    args = ["--data", str(rooms_64x80), "--out", str(out), "--methods", "random", "--cycles", "2", "--budget", "5",
            "--seeds", "0,", "--size", "32x40", "--iterations", "2", "--mc-passes", "1", "--threads", "1",
            "--batch-size", "4", "--decoder-channels", "16", "--init", "random", "--seed-fraction", "0.2",
            "--validations", "1", "--noise-floor", "random", "--warm-start", "--docs", str(tmp_path / "docs"),
            propagate]
    assert bench.main(args) == 0
    floor = json.loads((out / "noise_floor.json").read_text())["random-s0"]
    ledger = out / "ledgers" / "random-s0.sqlite"
    with Ledger(ledger) as led:
        run = {int(r["cycle"]): float(r["miou"]) for r in led.results()}
    assert sorted(floor["cycles"]) == ["0", "1", "2"] and floor["train_seeds"] == [0, 100, 101]
    assert all(len(v) == 3 and v[0] == run[int(c)] for c, v in floor["cycles"].items())
    assert floor["cycle0"] == floor["cycles"]["0"] and floor["last"] == floor["cycles"]["2"]
    want = np.sqrt(np.mean([np.var(v, ddof=1) for v in floor["cycles"].values()]))
    assert floor["std"] == pytest.approx(want)
    assert "the whole warm-started chain" in (tmp_path / "docs" / "label_efficiency.md").read_text()

    dataset = experiment_cli.open_from_args(bench.build_parser().parse_args(args))
    cfg = experiment.method_config(experiment_cli.config_from_args(bench.build_parser().parse_args(args)), "random", 0)
    assert cfg.warm_start and cfg.propagate == (propagate == "--propagate")
    with pytest.raises(ValueError, match=r"cycles must be >= 0, got \[-1\]"):
        experiment.retrain_mious(dataset, cfg, ledger, 0, [-1])
    with pytest.raises(ValueError, match="random-s0.sqlite: no labels of cycle 5"):
        experiment.retrain_mious(dataset, cfg, ledger, 0, [5])
    replay = experiment.retrain_mious(dataset, cfg, ledger, 0, [0, 1, 2])
    assert replay == pytest.approx(run, abs=1e-6)  # the run's own seed: the run's own chain
    cold = experiment.retrain_miou(dataset, replace(cfg, warm_start=False), ledger, 0)
    assert cold != pytest.approx(run[2], abs=1e-4)  # a cold fit of the last labels is another model

    # cut the floor after its first train seed: the resume retrains train seed 101 only
    cache = json.loads((out / "noise_floor.json").read_text())
    rec = cache["random-s0"]
    rec["cycles"] = {c: v[:2] for c, v in rec["cycles"].items()}
    for k in ("std", "cycle0", "last"):
        del rec[k]
    (out / "noise_floor.json").write_text(json.dumps(cache))
    calls = []
    real = experiment.retrain_mious
    monkeypatch.setattr(experiment, "retrain_mious", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    again = bench.noise_floor(dataset, experiment_cli.config_from_args(bench.build_parser().parse_args(args)), out,
                              "random", 0, 2)
    assert calls == [101]
    assert again["cycles"] == floor["cycles"] and again["std"] == pytest.approx(floor["std"])

    # a cold run's floor: its seed set and its last cycle, each one fit from the start
    calls.clear()
    (out / "noise_floor.json").unlink()
    base = replace(experiment_cli.config_from_args(bench.build_parser().parse_args(args)), warm_start=False)
    cold_floor = bench.noise_floor(dataset, base, out, "random", 0, 2)
    assert calls == [100, 101] and sorted(cold_floor["cycles"]) == ["0", "2"]
    assert cold_floor["cycles"]["0"][0] == run[0] and cold_floor["cycles"]["2"][0] == run[2]
    assert cold_floor["cycles"]["0"][1:] == floor["cycles"]["0"][1:]  # the seed set's fit is cold in both


@pytest.mark.parametrize("args,match", [(["--methods", "random:aux_weight=0.1"], "aux_weight weighs an auxiliary"),
                                        (["--methods", "bogus"], "unknown scorer 'bogus'"),
                                        (["--budget", "0"], "--budget")])
def test_bad_method_specs_and_budgets_are_usage_errors_before_any_work(bench, tmp_path, capsys, args, match):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        bench.main(["--data", str(tmp_path / "data"), "--generate", "2x2", "--out", str(out), *args])
    assert e.value.code == 2  # argparse's usage error, not a traceback
    assert match in capsys.readouterr().err
    assert not (tmp_path / "data").exists() and not out.exists()  # nothing generated, nothing written


def test_sampling_ablation_and_one_long_fit_retrain_the_runs_labels(bench, rooms_64x80, tmp_path, monkeypatch):
    """--sampling-ablation MODE:METHODS:CYCLES retrains a method's labels at those cycles with another sampling and
    the run's training seed (its own sampling replays the run); --long-fit STEPS:CYCLE:METHODS retrains the labels
    of CYCLE as one cold fit of at least STEPS steps. Both are cached, so a rerun retrains nothing, and reported."""
    import json

    from viewal.runs import experiment

    out, docs = tmp_path / "run", tmp_path / "docs"
    args = ["--data", str(rooms_64x80), "--out", str(out), "--methods", "random", "--cycles", "1", "--budget", "5",
            "--seeds", "0,", "--size", "32x40", "--iterations", "2", "--mc-passes", "1", "--threads", "1",
            "--batch-size", "4", "--decoder-channels", "16", "--init", "random", "--seed-fraction", "0.2",
            "--validations", "1", "--noise-floor", "", "--no-propagate", "--docs", str(docs)]
    configs = []
    real = experiment.retrain_miou
    monkeypatch.setattr(experiment, "retrain_miou", lambda ds, cfg, *a, **k: configs.append(cfg) or real(ds, cfg, *a,
                                                                                                          **k))
    assert bench.main(args + ["--sampling-ablation", "labels:random:0,1", "--long-fit", "5:1:random"]) == 0
    run = {int(r.split(",")[2]): float(r.split(",")[4]) for r in (out / "results.csv").read_text().splitlines()[1:]}
    ablation = json.loads((out / "sampling_ablation.json").read_text())
    assert sorted(ablation) == ["random-s0-c0", "random-s0-c1"]
    for c in (0, 1):  # the run's own sampling and training seed: the run's own models
        rec = ablation[f"random-s0-c{c}"]
        assert rec["run"] == pytest.approx(run[c], abs=1e-6) and rec["labels"] == pytest.approx(run[c], abs=1e-6)
    long = json.loads((out / "long_fit.json").read_text())["random-s0-c1"]
    assert long["run"] == pytest.approx(run[1], abs=1e-6) and 0 <= long["steps5"] <= 1
    # --iterations 2 fixes each fit at 2 steps: the long fit's steps are raised to 5
    assert [(c.sampling, c.warm_start, c.steps) for c in configs] == [("labels", True, 2)] * 2 + [("labels", False, 5)]
    report = (docs / "label_efficiency.md").read_text()
    assert "**Sampling ablation**" in report and f"| random @ 1 | {100 * run[1]:.1f} | {100 * run[1]:.1f} |" in report
    assert "**One long fit** (seed 0's labels after cycle 1, retrained as one cold fit of at least 5 SGD" in report
    assert f"| random | {100 * run[1]:.1f} | {100 * long['steps5']:.1f} |" in report
    configs.clear()
    assert bench.main(args + ["--report-only", "--sampling-ablation", "labels:random:0,1", "--long-fit",
                              "5:1:random"]) == 0
    assert configs == []  # cached: nothing retrained
