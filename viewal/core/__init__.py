"""The bottom layer, used by every other: a run's settings (:mod:`~viewal.core.config`), atomic file writes,
geometry conventions, superpixels, progress bars and keyed randomness. It imports nothing of viewal above it."""
