"""The package's structure, checked: a scorer-neutral loop, one needs registry below the scorers, one run
layout, progress bars that do not flood logs, no pure test twins in the package."""
import ast
import io
import re
from pathlib import Path

import pytest

import viewal
import viewal.scorers as scorers
from viewal.layout import RunLayout, seedset_name
from viewal.learner import ALConfig
from viewal.progress import LogBar, progress_bar
from viewal.selection import (
    GreedySelector,
    KCenterSelector,
    SelectionContext,
    Selector,
    ViewALSelector,
    empty_adjacency,
)

PKG = Path(viewal.__file__).parent


def test_every_scorer_owns_a_selector():
    for name in scorers.names():
        sel = scorers.get(name).selector(dedup=False)
        assert isinstance(sel, Selector), name
    assert isinstance(scorers.get("view_entropy").selector(), ViewALSelector)
    assert isinstance(scorers.get("coreset").selector(), KCenterSelector)
    assert scorers.get("entropy").selector(dedup=True) == GreedySelector(dedup=True)
    assert type(scorers.get("pal").selector()).__name__ == "PALSelector"


def test_the_learner_has_no_branch_on_scorer_kinds():
    src = (PKG / "learner.py").read_text()
    for needle in ("scorer.selection", "select_pool", "rotation_head", "_region_features", '"views"', "kcenter",
                   "augment ==", "pseudo_labels !="):
        assert needle not in src, needle
    tree = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ClassDef) and n.name == "ActiveLearner")
    assigned = {t.attr for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name != "__init__"
                for t in ast.walk(node) if isinstance(t, ast.Attribute) and isinstance(t.ctx, ast.Store)
                and isinstance(t.value, ast.Name) and t.value.id == "self"}
    init = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    in_init = {t.attr for t in ast.walk(init) if isinstance(t, ast.Attribute) and isinstance(t.ctx, ast.Store)}
    assert assigned <= in_init, f"attributes created outside __init__: {sorted(assigned - in_init)}"


def test_needs_registry_sits_below_the_scorers():
    src = (PKG / "needs.py").read_text()
    assert not re.search(r"^\s*(from|import) viewal\.scorers", src, re.M)
    from viewal.needs import NEEDS, known_needs

    assert scorers.NEEDS is NEEDS and set(NEEDS) <= set(known_needs())
    scorers.names()  # the plug-in needs of the built-in scorers are registered
    assert {"flip_consistency", "loss_pred", "rotation_score"} <= set(known_needs())


def test_test_twins_are_not_in_the_package():
    import viewal.selection as selection

    assert not hasattr(selection, "select_viewal_naive")
    assert not (PKG.parent / "kernels" / "testing.py").exists()


def test_selection_context_computes_the_adjacency_once_and_only_when_asked():
    calls = []

    def overlaps():
        calls.append(1)
        return empty_adjacency(3)

    ctx = SelectionContext(adjacency=overlaps)
    assert calls == []
    assert ctx.overlaps().shape == (3, 3) and ctx.overlaps().shape == (3, 3)
    assert calls == [1]
    with pytest.raises(ValueError, match="adjacency"):
        SelectionContext().overlaps()


def test_run_layout_names_and_the_tagged_seed_set():
    lay = RunLayout("runs/x")
    pal = ALConfig(scorer="pal", seed=2)
    aided = ALConfig(scorer="random", seed=1, augment="max_entropy", pseudo_labels="ups")
    assert lay.ledger("random+ups", 3) == Path("runs/x/ledgers/random+ups-s3.sqlite")
    assert lay.checkpoint("pal", pal, 0) == Path("runs/x/models") / seedset_name(pal, "pal")
    assert lay.checkpoint("pal", pal, 0).name == "seedset-s2-rotation_head.pt"
    assert lay.checkpoint("random+max_entropy+ups", aided, 0).name == "seedset-s1-max_entropy-ups.pt"
    assert lay.checkpoint("random", aided, 2) == Path("runs/x/models/random-s1-c2.pt")
    assert lay.query_sheet("random", 1).name == "queries_random_c1.png"


def test_scripts_and_visualize_use_the_run_layout():
    root = PKG.parent
    for path in [PKG / "visualize.py", PKG / "experiment.py", PKG / "cli" / "visualize.py",
                 PKG / "cli" / "experiment.py", root / "scripts" / "benchmark_label_efficiency.py"]:
        src = path.read_text()
        assert '"ledgers"' not in src and '"models"' not in src and "seedset-s" not in src, path


def test_scripts_import_no_private_helpers():
    for path in sorted((PKG.parent / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and isinstance(node.value, ast.Name) and node.value.id in ("experiment", "augment", "train"):
                pytest.fail(f"{path.name} uses {node.value.id}.{node.attr}")


def test_log_bar_prints_a_few_lines_for_a_long_run():
    out = io.StringIO()
    bar = LogBar(total=480, desc="generate", unit="frame", file=out)
    for _ in range(480):
        bar.update(1)
    bar.set_postfix(scene=11)
    bar.close()
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 5 and "\r" not in out.getvalue()
    assert lines[0] == "generate: start, 480 frame" and lines[-1].startswith("generate: 480/480 frame")
    assert "scene=11" in lines[-1] and lines[-1].endswith("done")
    inner = io.StringIO()
    assert list(LogBar(range(5), desc="inner", leave=False, file=inner)) == [0, 1, 2, 3, 4]
    assert inner.getvalue() == ""  # inner bars say nothing in a log


def test_progress_bar_is_a_log_bar_off_a_terminal():
    assert isinstance(progress_bar(range(3), desc="x", file=io.StringIO()), LogBar)


# ------------------------------------------------------------------------------------- layers: the CLI on top

def _package_modules() -> dict[str, Path]:
    """Every module of the installed package by dotted name: ``viewal/`` plus the top-level ``kernels/`` and
    ``datasets/`` folders, which install as ``viewal.kernels`` and ``viewal.datasets``."""
    root = PKG.parent
    mods = {}
    folders = (("viewal", PKG), ("viewal.kernels", root / "kernels"), ("viewal.datasets", root / "datasets"))
    for prefix, folder in folders:
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([prefix, *parts])] = path
    return mods


def _imports(path: Path, name: str) -> set[str]:
    """Modules ``path`` imports anywhere (module level and inside functions), relative imports resolved."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def test_the_package_modules_are_found():
    mods = _package_modules()
    assert {"viewal.cli", "viewal.cli.experiment", "viewal.experiment", "viewal.kernels", "viewal.datasets.synthetic",
            "viewal.datasets.preview"} <= set(mods)


def test_library_modules_hold_no_command_line_code():
    """argparse, ``configure_parser`` and ``add_argument`` live in ``viewal.cli`` only."""
    for name, path in _package_modules().items():
        if name == "viewal.cli" or name.startswith("viewal.cli."):
            continue
        imports = _imports(path, name)
        assert "argparse" not in imports, f"{name} imports argparse"
        tree = ast.parse(path.read_text())
        defs = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert "configure_parser" not in defs, f"{name} defines configure_parser"
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                 and n.func.attr in ("add_argument", "add_subparsers", "parse_args")]
        assert not calls, f"{name} builds an argument parser (line {calls[0].lineno})"


def test_the_cli_is_the_only_top_layer():
    """Nothing in the library imports ``viewal.cli``; only the CLI package (and scripts) sit above it."""
    for name, path in _package_modules().items():
        if name == "viewal.cli" or name.startswith("viewal.cli."):
            continue
        above = sorted(m for m in _imports(path, name) if m == "viewal.cli" or m.startswith("viewal.cli."))
        assert not above, f"{name} imports {above}"


def test_every_command_is_a_cli_module_with_a_parser_and_a_run():
    import importlib

    from viewal.cli import COMMANDS

    assert set(COMMANDS) == {"generate", "preview", "superpixels", "train", "pretrain", "experiment", "loop", "query",
                             "label-studio", "visualize", "report"}
    for command, (module, _) in COMMANDS.items():
        assert module == f"viewal.cli.{command.replace('-', '')}"
        mod = importlib.import_module(module)
        assert callable(mod.configure_parser) and callable(mod.run), module


@pytest.mark.parametrize("command", ["generate", "preview", "superpixels", "train", "pretrain", "experiment",
                                     "loop", "query", "visualize"])
def test_every_command_prints_its_help(command, capsys):
    from viewal.cli import main

    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: viewal {command} ")
    # one flag of each command, with its default where it has one: the definitions moved, not the options
    flag = {"generate": "--depth-noise", "preview": "(default: preview.png)", "superpixels": "--cache-dir",
            "train": "(default: 50)", "pretrain": "(default: 96x128)", "experiment": "--preset {cpu,paper}",
            "query": "status summary of the ledger", "visualize": "default: a loop run's own",
            "loop": "next close the cycle"}[command]
    assert flag in " ".join(out.split())


def test_top_level_help_lists_every_command(capsys):
    from viewal.cli import COMMANDS, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^    ([\w-]+)\s", out, re.M)
    assert set(COMMANDS) <= set(listed), listed


def test_method_citations_point_to_sections_of_docs_methods_md():
    """Every ``docs/methods.md §n`` (or the file, a comma and a quoted title) in the code names a section that exists;
    the seed document the code once cited is not in the repository, so nothing cites it."""
    root = PKG.parent
    headings = re.findall(r"^## (.+)$", (root / "docs" / "methods.md").read_text(), re.M)
    numbers = {h.split(".")[0] for h in headings if h[0].isdigit()}
    absent = "METHODS" + ".md"
    files = [*PKG.rglob("*.py"), *(root / "kernels").rglob("*.py"), *(root / "datasets").rglob("*.py"),
             *(root / "scripts").glob("*.py"), *(root / "tests").glob("*.py")]
    cited = 0
    for path in files:
        src = path.read_text()
        assert absent not in src, f"{path} cites {absent}"
        for m in re.finditer(r"docs/methods\.md", src):
            after = src[m.end(): m.end() + 80]
            for n in re.findall(r"§(\d+)", after.split(")")[0]):
                assert n in numbers, f"{path}: docs/methods.md §{n} does not exist"
                cited += 1
            title = re.match(r"`{0,2},\s*\"([^\"]+)\"", after)
            if title:
                assert any(title.group(1) in h for h in headings), f"{path}: no section {title.group(1)!r}"
                cited += 1
    assert cited >= 8  # the scorers, aids and kernels cite their sections
def test_the_depth_test_has_one_definition_and_one_default():
    """The depth test's values are written once (kernels/depth_test.py); every other module takes a
    DepthTest, none has depth-test keywords or a default tolerance of its own."""
    from dataclasses import fields

    root = PKG.parent
    sources = [p for d in (PKG, root / "kernels") for p in sorted(d.rglob("*.py")) if p.name != "depth_test.py"]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = {a.arg for a in node.args.args + node.args.kwonlyargs}
                assert not names & {"depth_tol", "world_distance", "aggregation"}, (path.name, node.name)
                for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                    tol = isinstance(d, ast.Tuple) and [getattr(e, "value", None) for e in d.elts] == [0.05, 0.02]
                    assert not tol, (path.name, node.name)
    names = {f.name for f in fields(ALConfig)}
    assert "depth_test" in names and not {"overlap_mode", "depth_tol", "kernel_backend"} & names


def test_the_project_speaks_of_itself_only():
    """No file of the package, its tests, scripts or docs recounts how it was made (numbered sessions, issues or
    rounds of work, the source papers by their file numbers): it speaks of what it is and cites papers by name."""
    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(r"\b(session|issue|round)s? #?\d+|\bseeds? 0\d\d\b|\bseed methods?\b", re.I)
    files = [p for ext in ("py", "md", "sh", "toml") for p in root.rglob(f"*.{ext}")
             if not any(part.startswith(".") or part in ("build", "data", "runs") for part in p.relative_to(root).parts)
             and "egg-info" not in str(p)]
    assert len(files) > 100
    hits = [f"{p.relative_to(root)}:{n}: {line.strip()[:80]}" for p in files
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits[:20])
