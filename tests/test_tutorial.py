"""docs/tutorial.md's loop runs as written on the real ScanNet sample, the sample's labels answering as the team."""
import os
import re
import subprocess
import sys
from pathlib import Path

from viewal.runs.ledger import Ledger

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def tutorial_commands() -> str:
    m = re.search(r"<!-- tutorial: run by tests/test_tutorial.py -->\s*```bash\n(.*?)```", TUTORIAL.read_text(), re.S)
    assert m, "docs/tutorial.md lost its tutorial block"
    return m.group(1)


def test_tutorial_runs_on_the_real_sample(scannet_sample, tmp_path):
    script = tutorial_commands()
    assert script.count("viewal loop next") == 2 and "viewal report" in script
    env = {**os.environ, "VIEWAL_SCANNET_SAMPLE": str(scannet_sample), "NUMBA_THREADING_LAYER": "omp",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    source = sorted((Path(scannet_sample) / "raw" / "selections" / "label").glob("*.png"))
    # the sample reached through a link, as a checkout may hold it: the tutorial's copy must not write through it
    (tmp_path / "link").symlink_to(Path(scannet_sample).resolve(), target_is_directory=True)
    env["VIEWAL_SCANNET_SAMPLE"] = str(tmp_path / "link")
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=1800)
    assert sorted((Path(scannet_sample) / "raw" / "selections" / "label").glob("*.png")) == source
    assert p.returncode == 0, p.stderr[-3000:]
    # the pool's labels were gone: the loop read none of them, the scripted labeller answered from the sample
    team = tmp_path / "data" / "scannet-team" / "raw" / "selections" / "label"
    assert len(list(team.glob("*.png"))) == 5
    with Ledger(tmp_path / "runs" / "scannet" / "ledgers" / "view_entropy-s0.sqlite") as led:
        assert led.cycle() == 2
        assert len(led.queries(0)) == 3 and all(q.mask.all() for q in led.queries(0))
        assert led.queries(1) and not led.pending_queries(1) and led.pending_queries(2)
        assert {r["source"] for r in led.labels()} == {"human"}
        results = led.results()
        assert [r["cycle"] for r in results] == [0, 1]
        assert all(r["miou"] is not None and 0 < r["miou"] < 1 for r in results)
        frac = [r["labelled_fraction"] for r in results]
        assert frac[1] - frac[0] >= 0.05 - 1e-9  # cycle 1 asked 5 % of the pool (never less, at most one region more)
    assert re.search(r"^\s+1\s+\d+\s+(\d+)\s+0\s", p.stdout, re.M), p.stdout[-2000:]  # status: cycle 1 all answered
    assert (tmp_path / "runs" / "scannet" / "report.html").stat().st_size > 50_000
