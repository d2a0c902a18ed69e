"""Randomness keyed by where it is used: one seed per (run seed, stream, cycle, item).

A resumed run must draw exactly what an uninterrupted one drew, whatever ran in the process before
(fitting a model and loading one leave torch's global RNG in different states). So every stochastic
step asks :func:`stream_seed` for its own seed, built with :class:`numpy.random.SeedSequence` from
its keys, and never draws from a global generator.

>>> stream_seed(0, "mc", 1, "scene0") == stream_seed(0, "mc", 1, "scene0")
True
>>> stream_seed(0, "mc", 1, "scene0") != stream_seed(0, "mc", 2, "scene0")
True
"""
from __future__ import annotations

import zlib

import numpy as np

__all__ = ["stream_seed", "stream_rng", "fit_seed"]


def _word(key: int | str) -> int:
    if isinstance(key, (bool, np.bool_)):
        raise TypeError("stream_seed keys are ints or strings, not bools")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"stream_seed keys must be non-negative, got {key}")
        return int(key)
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8"))
    raise TypeError(f"stream_seed keys are ints or strings, got {type(key).__name__}")


def stream_seed(*keys: int | str) -> int:
    """A 63-bit seed determined by ``keys`` (non-negative ints, strings) alone."""
    state = np.random.SeedSequence([_word(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def stream_rng(*keys: int | str) -> np.random.Generator:
    """A NumPy generator seeded by :func:`stream_seed` of ``keys``."""
    return np.random.default_rng(stream_seed(*keys))


def fit_seed(train_seed: int, cycle: int) -> int:
    """The seed of cycle ``cycle``'s fit (cycle 0: the seed set's) of a run with training seed ``train_seed``:
    its model initialisation, batch order, augmentation and dropout. Each cycle draws its own stream, as the
    MC-dropout masks and the oracle do, so no two cycles' fits repeat one draw."""
    return stream_seed(train_seed, "fit", cycle)
