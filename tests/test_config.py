"""One config: presets with their sources, the same run from the Python API and the command line, one check per
setting, and the ledger's schema version."""
import argparse
import dataclasses
import sqlite3

import pytest

from viewal.cli.experiment import config_from_args, configure_parser
from viewal.core.config import (
    PRESETS,
    SECTIONS,
    ALConfig,
    DataSettings,
    ExecutionSettings,
    ScoringSettings,
    TrainingSettings,
    preset_table,
)
from viewal.core.seeding import fit_seed
from viewal.nn.train import TrainConfig
from viewal.runs.ledger import SCHEMA_VERSION, Ledger, LedgerError


def cli_config(*flags):
    p = argparse.ArgumentParser()
    configure_parser(p)
    return config_from_args(p.parse_args(["--data", "d", "--out", "o", *flags]))


def test_the_defaults_are_the_cpu_preset_and_each_value_cites_its_source():
    assert ALConfig() == ALConfig.preset("cpu")
    names = {f.name for f in dataclasses.fields(ALConfig)}
    for preset, entries in PRESETS.items():
        for key, (value, why) in entries.items():
            assert key in names, (preset, key)
            assert isinstance(why, str) and len(why) > 20, (preset, key)
            assert getattr(ALConfig.preset(preset), key) == value
    paper = ALConfig.preset("paper")
    assert (paper.lr, paper.epochs, paper.mc_passes, paper.seed_fraction, paper.warm_start) == (4e-4, 50, 20, 0.015,
                                                                                              False)
    cpu = ALConfig()
    assert (cpu.lr, cpu.epochs, cpu.min_iterations, cpu.mc_passes, cpu.warm_start, cpu.aux_weight) == (
        1e-2, 8, 150, 4, True, 0.1)
    assert ALConfig.preset("paper", lr=1e-3).lr == 1e-3
    with pytest.raises(ValueError, match="unknown preset 'gpu'; presets: cpu, paper"):
        ALConfig.preset("gpu")
    table = preset_table()
    assert table.count("\n") == len({k for p in PRESETS.values() for k in p}) + 1
    assert "| `lr` | 0.01 | 0.0004 |" in table


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_the_command_line_and_the_python_api_give_the_same_run(preset):
    cli = cli_config("--preset", preset)
    api = ALConfig.preset(preset, seed_set="oracle")  # the command line's experiments answer from ground truth
    assert cli.to_json() == api.to_json()


def test_flags_replace_preset_values():
    c = cli_config("--preset", "paper", "--lr", "0.02", "--no-warm-start", "--iterations", "40")
    assert (c.lr, c.warm_start, c.steps, c.epochs, c.mc_passes) == (0.02, False, 40, 1, 20)  # exactly 40 steps
    c = cli_config("--epochs", "3")
    assert (c.epochs, c.min_iterations, c.steps) == (3, 150, None)  # the preset's least steps stay


@pytest.mark.parametrize("field,value,match", [
    ("random_share", 1.0, r"random_share must be a number in \[0, 1\)"),
    ("min_iterations", -1, "min_iterations must be an integer >= 0"),
    ("sampling", "all", "sampling must be one of uniform, labels, crops"),
    ("pseudo_labels", "yes", "pseudo_labels must be one of none, confidence, classwise, ups"),
    ("seed_set", "some", "seed_set must be one of auto, oracle, ask, labels"),
    ("mc_passes", 0, "mc_passes must be an integer >= 1"),
])
def test_each_setting_is_checked_once_with_one_range(field, value, match):
    with pytest.raises(ValueError, match=match):
        ALConfig(**{field: value})


def test_a_ledger_of_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "run.sqlite"
    with Ledger(path) as led:
        assert led.meta("schema") == SCHEMA_VERSION
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    con.commit()
    con.close()
    with pytest.raises(LedgerError, match=f"a ledger of schema version 99; this viewal reads version {SCHEMA_VERSION}"):
        Ledger(path)


def test_the_docs_show_the_presets_as_they_are():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "index.md").read_text()
    start = text.index("<!-- presets: written from viewal.core.config.preset_table() -->\n") + len(
        "<!-- presets: written from viewal.core.config.preset_table() -->\n")
    assert text[start:text.index("\n<!-- /presets -->", start)] == preset_table()


def test_the_settings_fall_into_five_typed_sections():
    """Every setting but the run's seed lives in exactly one section; a section is a dataclass of its own."""
    owned = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert len(owned) == len(set(owned))  # no setting in two sections
    assert set(owned) | {"seed"} == {f.name for f in dataclasses.fields(ALConfig)}
    paper = ALConfig.preset("paper", device="cuda", region="image")
    assert paper.training == TrainingSettings(lr=4e-4, epochs=50, min_iterations=0, warm_start=False,
                                              sampling="uniform", batch_size=6, aux_weight=1.0)
    assert isinstance(paper.scoring, ScoringSettings) and paper.scoring.mc_passes == 20 and not paper.scoring.propagate
    assert paper.execution.device == "cuda" and paper.data.region == "image" and paper.model.encoder == paper.encoder
    again = ALConfig.from_sections(seed=paper.seed, **{name: paper.section(name) for name in SECTIONS})
    assert again == paper
    assert ALConfig.from_sections(training=TrainingSettings(lr=0.5)).lr == 0.5
    with pytest.raises(ValueError, match="unknown section"):
        ALConfig.from_sections(optimiser=TrainingSettings())
    with pytest.raises(ValueError, match="section training must be a TrainingSettings, got DataSettings"):
        ALConfig.from_sections(training=DataSettings())


@pytest.mark.parametrize("section,field,value,match", [
    (TrainingSettings, "lr", float("nan"), "lr must be a finite number > 0"),
    (TrainingSettings, "size", (96, 0), r"size must be \(height, width\)"),
    (DataSettings, "seed_fraction", 0, r"seed_fraction must lie in \(0, 1\]"),
    (ScoringSettings, "random_share", -0.1, r"random_share must be a number in \[0, 1\)"),
    (ExecutionSettings, "executor", "dask", "executor must be one of local, ray"),
])
def test_a_section_checks_its_settings_alone_and_as_part_of_the_config(section, field, value, match):
    with pytest.raises(ValueError, match=match):
        section(**{field: value})
    with pytest.raises(ValueError, match=match):
        ALConfig(**{field: value})


def test_the_training_recipe_is_made_from_the_training_section():
    c = ALConfig(min_iterations=100, batch_size=4, validations=2, num_threads=1)
    tc = TrainConfig.from_settings(c.training, c.execution, n_items=10, seed=7)
    # 10 items in batches of 4: 3 steps an epoch; 100 steps -> 34 epochs (at least the 8 asked)
    assert (tc.epochs, tc.eval_every, tc.batch_size, tc.lr, tc.seed, tc.num_threads) == (34, 17, 4, 1e-2, 7, 1)
    fixed = TrainConfig.from_settings(ALConfig(steps=30, validations=4).training, c.execution, 10, 0)
    assert (fixed.steps, fixed.steps_per_epoch, fixed.epochs) == (30, 8, 4)


def test_each_cycle_fits_with_its_own_seed():
    seeds = [fit_seed(3, c) for c in range(4)]
    assert len(set(seeds)) == 4 and seeds == [fit_seed(3, c) for c in range(4)]  # keyed, not drawn
    assert fit_seed(4, 0) not in seeds
