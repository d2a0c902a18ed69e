"""Deterministic kill points for the crash tests (``VIEWAL_TEST_KILL_AT``).

The resume tests kill a real ``viewal experiment`` with SIGKILL at a named phase of a cycle, then
resume it and compare with an uninterrupted run. ``VIEWAL_TEST_KILL_AT="phase:cycle"`` (e.g.
``"train:1"``; ``"phase"`` alone matches every cycle) makes :func:`kill_point` send SIGKILL to its own
process when it is reached with that phase and cycle. Unset (always, outside the tests), a kill point
reads one environment variable and returns.

``VIEWAL_TEST_KILL_ONCE=PATH`` adds "only once, in whichever process gets there first": the kill happens
only for the process that creates the marker file ``PATH`` (atomically, ``O_EXCL``); every later arrival
goes on. The Ray fault test uses it to kill a worker in the middle of a scene and let Ray's retry of
that task finish.

Phases, in the order a cycle reaches them (``viewal.runs.learner`` and ``viewal.runs.experiment``):

========== =================================================================================
``train``    a fit has started (labels of the cycle committed, no checkpoint written; nothing is
             written to disk while a fit runs, so this is the state of a kill at any step of it)
``scene``    inside the scoring of a scene, its result not yet returned (``viewal.scoring.executors.score_scene``:
             on Ray this is a worker process)
``score``    after the first scene of the pool was scored and its result stored
``select``   pool scored, selection not yet recorded
``queried``  right after the cycle's queries were committed to the ledger
``label``    after the first query's labels were committed (the others still pending)
``save``     a checkpoint fully written to its temporary file, not yet renamed into place
``evaluate`` checkpoint in place, test mIoU not yet recorded
========== =================================================================================
"""
from __future__ import annotations

import os
import signal

__all__ = ["ENV_VAR", "ONCE_VAR", "PHASES", "kill_point", "parse_kill_spec"]

ENV_VAR = "VIEWAL_TEST_KILL_AT"
ONCE_VAR = "VIEWAL_TEST_KILL_ONCE"
PHASES = ("train", "scene", "score", "select", "queried", "label", "save", "evaluate")


def parse_kill_spec(text: str) -> tuple[str, int | None]:
    """``"phase[:cycle]"`` -> (phase, cycle or None); an unknown phase or a bad cycle raises ValueError."""
    phase, _, cycle = text.strip().partition(":")
    if phase not in PHASES:
        raise ValueError(f"{ENV_VAR}={text!r}: unknown phase {phase!r}; phases: {', '.join(PHASES)}")
    try:
        return phase, (int(cycle) if cycle else None)
    except ValueError:
        raise ValueError(f"{ENV_VAR}={text!r}: cycle must be an integer") from None


def kill_point(phase: str, cycle: int | None = None) -> None:
    """SIGKILL this process when ``VIEWAL_TEST_KILL_AT`` names ``phase`` (and ``cycle``); else nothing."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    want, want_cycle = parse_kill_spec(spec)
    if want == phase and (want_cycle is None or (cycle is not None and int(cycle) == want_cycle)):
        once = os.environ.get(ONCE_VAR)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # another process (or an earlier attempt of this task) was killed here already
        os.kill(os.getpid(), signal.SIGKILL)
