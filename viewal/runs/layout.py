"""One run folder layout: where ``viewal experiment`` writes and ``viewal visualize`` and the scripts read.

::

    OUT/ledgers/<method>-s<seed>.sqlite      one ledger per method and seed (the run's state)
    OUT/ledgers/<method>-s<seed>.scores/     per-scene scores of the running cycle (viewal.scoring.executors.SceneStore)
    OUT/models/<seedset>.pt                  cycle 0: the seed-set model shared by methods that train alike
    OUT/models/<method>-s<seed>-c<N>.pt      cycle N >= 1
    OUT/results.csv, table.txt, curves.png, full_data.json, frame_check.json
    OUT/queries_<method>_c<N>.png            contact sheets of the queried regions
    OUT/propagated_<method>_c<N>.png         human and propagated labels of a propagating run
    OUT/view_entropy_<scene>.ply (+ .png)    view-entropy point clouds
    OUT/report.html                          the HTML page of the cycles (viewal report)

The cycle-0 name carries the recipe tags of :func:`seedset_name` (a scorer's head, the training aids) and a
short hash of the training settings a method spec changes (``random@image:min_iterations=560``), so a PAL run,
a run with aids or a method trained with more steps finds its own seed-set model, never another recipe's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from viewal.core.config import ALConfig
from viewal.runs.recipe import recipe_tags, seedset_name, spec_training

__all__ = ["RunLayout", "seedset_name", "recipe_tags", "spec_training"]


def _in_root(name: str, doc: str) -> property:
    """A read-only path ``root / name`` of a :class:`RunLayout`."""
    return property(lambda self: self.root / name, doc=f"``OUT/{name}``: {doc}.")


@dataclass(frozen=True)
class RunLayout:
    """Paths of one experiment folder (``viewal experiment --out``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def ledgers(self) -> Path:
        return self.root / "ledgers"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def ledger(self, method: str, seed: int) -> Path:
        return self.ledgers / f"{method}-s{int(seed)}.sqlite"

    def seedset(self, cfg: ALConfig, method: str) -> Path:
        """The cycle-0 checkpoint of the method spec ``method`` with ``cfg`` its ``ALConfig`` (recipe and
        seed; :func:`seedset_name`)."""
        return self.models / seedset_name(cfg, method)

    def checkpoint(self, method: str, cfg: ALConfig, cycle: int) -> Path:
        """The checkpoint of ``method`` (``cfg`` its ``ALConfig``, with its seed) after ``cycle``."""
        if int(cycle) == 0:
            return self.seedset(cfg, method)
        return self.models / f"{method}-s{int(cfg.seed)}-c{int(cycle)}.pt"

    results = _in_root("results.csv", "method, seed, cycle, labelled fraction, mIoU per row")
    table = _in_root("table.txt", "the printed table")
    curves = _in_root("curves.png", "mIoU against the labelled fraction")
    full_data = _in_root("full_data.json", "the full-data reference (same recipe, every train label)")
    frame_check = _in_root("frame_check.json", "the cache of the frame check run before training")
    report = _in_root("report.html", "the HTML page of the cycles (viewal report)")

    def query_sheet(self, method: str, cycle: int) -> Path:
        return self.root / f"queries_{method}_c{int(cycle)}.png"

    def propagation_sheet(self, method: str, cycle: int) -> Path:
        """Human and propagated labels of a propagating run after ``cycle`` (``viewal visualize``)."""
        return self.root / f"propagated_{method}_c{int(cycle)}.png"

    def point_cloud(self, scene: str) -> Path:
        return self.root / f"view_entropy_{scene}.ply"

    def ledger_names(self) -> list[str]:
        """File names of the ledgers present."""
        return sorted(p.name for p in self.ledgers.glob("*.sqlite")) if self.ledgers.is_dir() else []

    def partial_checkpoints(self) -> list[Path]:
        """Temporary files of checkpoints whose save was killed (``.name.pt.XXXX.pt``, never renamed)."""
        return sorted(self.models.glob(".*.pt"))

    def run_files(self) -> list[Path]:
        """Everything a run writes (what ``--overwrite`` deletes): results, table, plot, full-data reference,
        query sheets, ledgers (with their SQLite side files), checkpoints (and partial ones)."""
        paths = [self.results, self.table, self.curves, self.full_data, self.report]
        paths += sorted(self.root.glob("queries_*.png"))
        paths += sorted(self.ledgers.glob("*.sqlite*")) + sorted(self.ledgers.glob("*.scores/c*/*.npz"))
        paths += sorted(self.models.glob("*.pt"))
        return paths + self.partial_checkpoints()
