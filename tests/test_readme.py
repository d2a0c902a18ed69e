"""The README's Python API example runs as written (on a tiny dataset instead of data/demo)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch):
    from viewal.datasets.synthetic import generate_dataset

    text = README.read_text()
    m = re.search(r"<!-- api-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its API example block"
    code = m.group(1)
    assert 'DATA = "data/demo"' in code
    data = tmp_path / "data"
    generate_dataset(data, scenes=4, frames=5, height=96, width=128, seed=2, progress=False)
    code = code.replace('DATA = "data/demo"', f'DATA = {str(data)!r}').replace("min_iterations=60", "min_iterations=2")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    learner = namespace["learner"]
    assert learner.ledger.cycle() == 1
    assert learner.ledger.labelled_pixels() > 0 and (tmp_path / "runs" / "api.sqlite").is_file()


def test_readme_team_loop_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's team loop, command by command (the scripted labeller writes each annotator's Label Studio
    export from the ground truth; the start gets a tiny training recipe)."""
    import shlex
    import shutil

    from viewal.cli import main
    from viewal.datasets import open_dataset
    from viewal.datasets.synthetic import generate_dataset
    from viewal.labelling.answer import answer_export
    from viewal.runs.ledger import Ledger

    text = README.read_text()
    m = re.search(r"<!-- team-loop.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert m, "README lost its team loop block"
    commands = [line.split("#")[0].strip() for line in m.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert len(commands) <= 6 and all(c.startswith("viewal ") for c in commands)
    monkeypatch.chdir(tmp_path)
    generate_dataset(tmp_path / "data" / "demo-small", scenes=4, frames=5, height=64, width=80, seed=2, progress=False)
    truth = open_dataset(tmp_path / "data" / "demo-small")
    for command in commands:
        argv = shlex.split(command)[1:]
        if argv[:2] == ["loop", "start"]:
            argv += ["--iterations", "2", "--mc-passes", "2", "--seed-fraction", "0.2", "--threads", "1"]
        if argv[:2] == ["query", "import"]:  # the annotator's Label Studio export, answered from the ground truth
            k = re.fullmatch(r"annotator-(\d)\.json", argv[2]).group(1)
            shutil.copy(answer_export(Path("runs/team/queries/cycle-0") / f"annotator-{k}", truth), argv[2])
        assert main(argv) == 0, command
    with Ledger(Path("runs/team/ledgers/view_entropy-s0.sqlite")) as led:
        assert led.cycle() == 1 and not led.pending_queries(0) and led.pending_queries(1)
        assert [r["cycle"] for r in led.results()] == [0] and led.results()[0]["miou"] is not None
    assert (tmp_path / "runs/team/queries/cycle-1/annotator-2/label_studio/tasks.json").is_file()
    assert (tmp_path / "runs/team/report.html").is_file()
