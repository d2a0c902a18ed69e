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
