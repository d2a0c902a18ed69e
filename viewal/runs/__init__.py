"""Runs: the active learner and its cycle, the ledger, the recipe and run folder layout, the seed set, the
simulated oracle, experiments over methods and seeds, their curves, pictures and HTML report."""
