"""scripts/benchmark_label_efficiency.py: --no-full-data runs the cycles only; the report comes later."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_label_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_label_efficiency", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_full_data_runs_the_cycles_and_no_reference(bench, tiny, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", str(tiny), "--out", str(out), "--methods", "random", "--cycles", "1", "--budget", "5",
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


def test_full_data_steps_trains_a_longer_reference_for_the_report(bench, tiny, tmp_path):
    """--full-data-steps N: the report's full-data reference trains at least N steps (here 6 against the
    run's 1), says so, and is cached under its own recipe; the cycles themselves keep the run's recipe."""
    import json

    from viewal.learner import ALConfig

    out = tmp_path / "run"
    args = ["--data", str(tiny), "--out", str(out), "--methods", "random", "--cycles", "1", "--budget", "5",
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
