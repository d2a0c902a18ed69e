"""The package's structure, checked: a scorer-neutral loop, one needs registry below the scorers, one run
layout, progress bars that do not flood logs, no pure test twins in the package."""
import ast
import io
import re
from pathlib import Path

import pytest

import viewal
import viewal.scoring.scorers as scorers
from viewal.core.config import ALConfig
from viewal.core.progress import LogBar, progress_bar
from viewal.runs.layout import RunLayout, seedset_name
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
    src = (PKG / "runs" / "learner.py").read_text()
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
    src = (PKG / "scoring" / "needs.py").read_text()
    assert not re.search(r"^\s*(from|import) viewal\.scorers", src, re.M)
    from viewal.scoring.needs import NEEDS, known_needs

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
    for path in [PKG / "runs" / "visualize.py", PKG / "runs" / "experiment.py", PKG / "cli" / "visualize.py",
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
    assert {"viewal.cli", "viewal.cli.experiment", "viewal.runs.experiment", "viewal.kernels",
            "viewal.datasets.synthetic", "viewal.datasets.preview"} <= set(mods)


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


# ------------------------------------------------------------------------------------- imports: at the top, one way

#: The only imports of package modules inside functions: (module, imported module). Anything else is imported at the
#: top of its module; a new entry needs a reason that a top-level import cannot meet.
LAZY_IMPORTS = {
    # viewal --help imports viewal.cli alone: viewal.core.io would bring NumPy in
    ("viewal.cli", "viewal.core.io"),
    # viewal label-studio --help without torch: the backend imports the learner
    ("viewal.cli.labelstudio", "viewal.labelling.lsbackend"),
    # viewal train/visualize/report --help without the learner and Numba: only --run reads a loop run's file
    ("viewal.cli.options", "viewal.labelling.loop"),
    # viewal query --help and the export/import actions without torch: only the loop actions need the learner
    ("viewal.cli.query", "viewal.labelling.loop"),
    # Numba: the fused kernel and the propagation kernels compile on import; viewal.kernels stays light
    ("viewal.kernels", "viewal.kernels.fused"),
    ("viewal.kernels", "viewal.kernels.propagate"),
    # Numba CPU and CUDA backends, loaded by the backend a depth test asks for
    ("viewal.kernels.overlap", "viewal.kernels.cpu"),
    ("viewal.kernels.overlap", "viewal.kernels.cuda"),
    ("viewal.kernels.views", "viewal.kernels.cpu"),
    ("viewal.kernels.views", "viewal.kernels.cuda"),
}


def _owner(dotted: str, mods) -> str | None:
    """The package module that ``dotted`` (a module, or a name in one) lives in, or None outside the package."""
    while dotted and dotted not in mods:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _imported(node: ast.Import | ast.ImportFrom, name: str, path: Path, mods) -> set[str]:
    """Package modules an import statement of module ``name`` (file ``path``) loads, relative imports resolved
    (``from . import cpu`` in ``viewal.kernels.overlap`` is ``viewal.kernels.cpu``)."""
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    return {m for m in (_owner(t, mods) for t in targets) if m is not None}


def _function_imports(name: str, path: Path, mods) -> list[tuple[str, int]]:
    """(imported package module, line) of every import statement inside a function or method of ``path``."""
    tree = ast.parse(path.read_text())
    seen, out = set(), []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in seen:
                    seen.add(id(node))
                    out += [(m, node.lineno) for m in sorted(_imported(node, name, path, mods))]
    return out


def _module_level_imports(body: list[ast.stmt]):
    """Import statements that run when the module is imported: outside functions, ``if TYPE_CHECKING:`` skipped."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            if not (getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"):
                yield from _module_level_imports(node.body)
                yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _module_level_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _module_level_imports(node.body)


def _import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> package modules its top-level imports load. Importing ``a.b.c`` runs ``a.b``'s ``__init__`` too,
    so the packages above an imported module count, except the importer's own (already being imported)."""
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in _module_level_imports(tree.body):
            for m in _imported(node, name, path, mods):
                parts = m.split(".")
                deps |= {p for p in (".".join(parts[:i]) for i in range(2, len(parts) + 1))
                         if p in mods and not (name == p or name.startswith(p + "."))}
        graph[name] = deps - {name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_package_modules_are_imported_at_the_top():
    mods = _package_modules()
    found = {(name, m): f"{path.relative_to(PKG.parent)}:{line}" for name, path in mods.items()
             for m, line in _function_imports(name, path, mods) if m != name}
    extra = sorted(f"{where}: {a} imports {b} inside a function" for (a, b), where in found.items()
                   if (a, b) not in LAZY_IMPORTS)
    assert not extra, ("import these at the top of the module (or give a reason in LAZY_IMPORTS):\n"
                       + "\n".join(extra))
    stale = sorted(LAZY_IMPORTS - set(found))
    assert not stale, f"LAZY_IMPORTS lists imports that are no longer inside a function: {stale}"


def test_module_level_imports_have_no_cycle():
    graph = _import_graph(_package_modules())
    # the graph is read
    assert graph["viewal.scoring.executors"] >= {"viewal.scoring.needs", "viewal.scoring.scorers", "viewal.kernels"}
    assert "viewal.kernels" in graph["viewal.core.config"]  # config imports viewal.kernels.depth_test: its package runs
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_import_checks_see_a_lazy_import_and_a_cycle(tmp_path):
    """The two checks above catch what they are for: a function-level import, relative ones resolved, and a
    circle through a package's ``__init__``."""
    files = {"viewal.a": "from viewal.b import f\n", "viewal.b": "def f():\n    from . import c\n",
             "viewal.c": "import viewal.p.d\n", "viewal.p": "from viewal.a import x\n", "viewal.p.d": ""}
    mods = {}
    for name, src in files.items():
        path = tmp_path / (name.replace(".", "_") + ("/__init__.py" if name == "viewal.p" else ".py"))
        path.parent.mkdir(exist_ok=True)
        path.write_text(src)
        mods[name] = path
    assert _function_imports("viewal.b", mods["viewal.b"], mods) == [("viewal.c", 2)]
    graph = _import_graph(mods)
    assert graph == {"viewal.a": {"viewal.b"}, "viewal.b": set(), "viewal.c": {"viewal.p", "viewal.p.d"},
                     "viewal.p": {"viewal.a"}, "viewal.p.d": set()}
    assert _find_cycle(graph) is None
    graph["viewal.b"].add("viewal.c")  # b imports c at the top: a -> b -> c -> p (d's package) -> a
    assert _find_cycle(graph) == ["viewal.a", "viewal.b", "viewal.c", "viewal.p", "viewal.a"]


# ------------------------------------------------------------------------------------- folders: the layers, one way

#: The package's folders from the bottom up, a layer per entry: a module imports only from its own layer or the
#: ones below it. The kernels and the core share the bottom: the kernels follow the core's geometry conventions
#: and atomic writes, and the core's settings hold the kernels' depth test and propagation rule.
LAYERS = (("viewal.kernels", "viewal.core"), ("viewal.datasets",), ("viewal.selection",), ("viewal.nn",),
          ("viewal.scoring",), ("viewal.runs",), ("viewal.labelling",), ("viewal.cli",))


def _layer(module: str) -> int | None:
    """The index in :data:`LAYERS` of the folder ``module`` lives in (None: the package's own ``__init__``)."""
    hits = [i for i, folders in enumerate(LAYERS) for folder in folders
            if module == folder or module.startswith(folder + ".")]
    return hits[0] if hits else None


def _upward_imports(mods: dict[str, Path]) -> list[str]:
    """Every import (top-level or inside a function) of a package module from a higher layer than its own."""
    out = []
    for name, path in mods.items():
        own = _layer(name)
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for m in _imported(node, name, path, mods):
                    if (up := _layer(m)) is not None and up > own:
                        out.append(f"{path.relative_to(path.parents[1])}:{node.lineno}: {name} imports {m}, "
                                   f"a layer above it")
    return out


def test_every_module_lives_in_a_layer_folder():
    """``viewal/`` holds the layer folders and the package's ``__init__`` only; each folder is a package that
    pyproject installs."""
    import tomllib

    mods = _package_modules()
    loose = sorted(m for m in mods if m != "viewal" and _layer(m) is None)
    assert not loose, f"modules outside the layer folders: {loose}"
    packages = set(tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {m for m, p in mods.items() if p.name == "__init__.py"}
    assert len(folders) >= 10 and folders <= packages, f"pyproject.toml does not install {sorted(folders - packages)}"


def test_imports_run_down_the_layers():
    """Following a setting from the command line to the kernels goes one way: no module imports a folder above
    its own (:data:`LAYERS`), not even inside a function."""
    assert _layer("viewal.cli.experiment") > _layer("viewal.runs.learner") > _layer("viewal.scoring.executors") \
        > _layer("viewal.nn.train") > _layer("viewal.core.config") == _layer("viewal.kernels.views")
    up = _upward_imports(_package_modules())
    assert not up, "\n".join(up)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    (tmp_path / "nn").mkdir()
    path = tmp_path / "nn" / "train.py"
    path.write_text("import numpy\nfrom viewal.core import io\n\ndef f():\n    from viewal.runs.learner import A\n")
    (tmp_path / "learner.py").write_text("")
    (tmp_path / "io.py").write_text("")
    mods = {"viewal.nn.train": path, "viewal.runs.learner": tmp_path / "learner.py",
            "viewal.core.io": tmp_path / "io.py"}
    assert _upward_imports(mods) == ["nn/train.py:5: viewal.nn.train imports viewal.runs.learner, a layer above it"]
