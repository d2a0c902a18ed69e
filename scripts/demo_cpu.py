"""CPU time (user + sys, every thread) of each phase of the demo, measured in one process.

Runs the ``viewal`` commands of ``scripts/demo.sh`` (read from the script, so the two never differ) through
``viewal.cli.main`` and charges the CPU time to the innermost running phase: generate, preview, frame check,
each method's fits (cycle 0 = the shared seed-set fit), the validations and the test evaluations inside them,
scoring, selection, the full-data reference and the query sheets. CPU time, not wall time: it is what the
demo costs whatever else shares the cores. By default torch and Numba run one thread (``--threads 1``): on busy
cores a second thread spins at every barrier while the first waits for a core, which inflates both CPU and
wall time; one thread's CPU time is the work itself (2 idle threads finish it in a little over half the time).

    NUMBA_THREADING_LAYER=omp .venv/bin/python scripts/demo_cpu.py [--demo scripts/demo.sh] [--fresh] [--threads 1]

``--fresh`` deletes the demo's data and run folders first (the demo generates its data only when missing).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import resource
import shlex
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def demo_commands(script: Path) -> list[list[str]]:
    """The argument lists of every ``.venv/bin/viewal ...`` command in ``script`` (continuation lines
    joined; a ``[ -f X ] || viewal ...`` guard is dropped, the command kept)."""
    text = script.read_text().replace("\\\n", " ")
    cmds = []
    for line in text.splitlines():
        if "bin/viewal " not in line:
            continue
        words = shlex.split(line.split("||")[-1], comments=True)
        at = next(i for i, w in enumerate(words) if w.endswith("bin/viewal"))
        cmds.append(words[at + 1:])
    if not cmds:
        raise ValueError(f"{script}: no 'viewal' command found")
    return cmds


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class PhaseClock:
    """CPU and wall seconds per phase, each charged to the innermost phase running."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[str] = ["other"]
        self.method = ""
        self._mark = (cpu_seconds(), time.perf_counter())

    def _charge(self) -> None:
        c, w = cpu_seconds(), time.perf_counter()
        self.cpu[self.stack[-1]] += c - self._mark[0]
        self.wall[self.stack[-1]] += w - self._mark[1]
        self._mark = (c, w)

    @contextlib.contextmanager
    def phase(self, name: str):
        self._charge()
        self.stack.append(name)
        self.calls[name] += 1
        try:
            yield
        finally:
            self._charge()
            self.stack.pop()

    def wrap(self, owner, attr: str, name) -> None:
        """Replace ``owner.attr`` by a wrapper that runs it as phase ``name`` (a string, or a function of the
        call's arguments returning one)."""
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*a, **k):
            with self.phase(name(*a, **k) if callable(name) else name):
                return fn(*a, **k)

        setattr(owner, attr, timed)


def instrument(clock: PhaseClock) -> None:
    import viewal.cli.experiment as cli_experiment
    import viewal.cli.generate as cli_generate
    import viewal.cli.preview as cli_preview
    import viewal.datasets.check as check
    import viewal.nn.train as train
    import viewal.runs.experiment as experiment
    import viewal.runs.learner as learner
    import viewal.runs.visualize as visualize

    def run_cycles(fn):
        @functools.wraps(fn)
        def wrapped(lr, method, *a, **k):
            clock.method = method
            try:
                return fn(lr, method, *a, **k)
            finally:
                clock.method = ""
        return wrapped

    experiment.run_cycles = run_cycles(experiment.run_cycles)

    def cycle(learner_) -> str:
        return f"{clock.method or 'api'} c{learner_.ledger.cycle()}"

    clock.wrap(learner.ActiveLearner, "fit", lambda self, *a, **k: f"fit {cycle(self)}")
    clock.wrap(learner.ActiveLearner, "evaluate", lambda self, *a, **k: f"test eval {cycle(self)}")
    clock.wrap(learner.ActiveLearner, "score_pool", lambda self, *a, **k: f"score {cycle(self)}")
    clock.wrap(learner.ActiveLearner, "query", lambda self, *a, **k: f"select {cycle(self)}")
    clock.wrap(learner.ActiveLearner, "save_model", "save checkpoint")
    # the evaluation forward passes: a validation inside a fit, the test split inside "test eval"
    clock.wrap(train, "evaluate", lambda *a, **k: f"{clock.stack[-1]}: forward")
    clock.wrap(train, "recalibrate_bn", lambda *a, **k: f"{clock.stack[-1]}: precise BN")
    clock.wrap(experiment, "full_data_miou", "full-data reference")
    clock.wrap(check, "check_frames", "frame check")
    clock.wrap(visualize, "write_query_sheets", "query sheets")
    clock.wrap(cli_generate, "run", "generate")
    clock.wrap(cli_preview, "run", "preview")
    clock.wrap(cli_experiment, "run", "experiment (rest)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=ROOT / "scripts" / "demo.sh")
    ap.add_argument("--fresh", action="store_true", help="delete the demo's data and run folders first")
    ap.add_argument("--threads", type=int, default=1, help="torch and Numba threads (0: leave the defaults)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        import numba
        import torch

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    cmds = demo_commands(args.demo)
    if args.fresh:
        for cmd in cmds:
            if cmd[0] == "generate":
                shutil.rmtree(ROOT / cmd[1], ignore_errors=True)
            if cmd[0] == "experiment":
                shutil.rmtree(ROOT / cmd[cmd.index("--out") + 1], ignore_errors=True)
    from viewal.cli import main as viewal_main

    clock = PhaseClock()
    instrument(clock)
    import os

    os.chdir(ROOT)
    for cmd in cmds:
        print("viewal " + " ".join(cmd), flush=True)
        if viewal_main(cmd) != 0:
            return 1
    clock._charge()
    total = sum(clock.cpu.values())
    print(f"\n{'phase':<44} {'calls':>5} {'CPU s':>8} {'wall s':>8}")
    for name, c in sorted(clock.cpu.items(), key=lambda kv: -kv[1]):
        print(f"{name:<44} {clock.calls.get(name, 0):>5} {c:8.1f} {clock.wall[name]:8.1f}")
    print(f"{'total':<44} {'':>5} {total:8.1f} {sum(clock.wall.values()):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
