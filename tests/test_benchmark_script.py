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
    assert bench.main(args + ["--report-only", "--docs", str(tmp_path / "docs")]) == 0
    assert (out / "full_data.json").is_file()
    assert (tmp_path / "docs" / "label_efficiency.md").is_file()
