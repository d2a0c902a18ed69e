"""Progress bars that suit where they are written.

On a terminal, :func:`progress_bar` is a tqdm bar. Written into a log (stderr not a terminal, e.g.
``viewal generate ... 2> log``), tqdm's carriage-return updates become hundreds of lines; there the bar
prints a few summary lines instead: one at the start, at most three in between (every quarter of a known
total) and one at the end with the count, the elapsed time and the last postfix.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["progress_bar", "progress_write", "LogBar", "interactive"]


def interactive(stream=None) -> bool:
    """True when ``stream`` (default ``sys.stderr``) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LogBar:
    """The non-interactive bar: the subset of tqdm's interface the package uses (iteration, ``update``,
    ``set_postfix``, ``set_description``, ``write``, ``close``, context manager), as a few plain lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, disable: bool = False, leave: bool = True,
                 file=None, **_ignored: Any) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.n = total, desc, unit, int(initial)
        self.disable, self.leave = disable, leave
        self.file = file
        self.postfix = ""
        self._t0 = time.monotonic()
        self._next_quarter = 1
        self._closed = False
        if not disable and leave:
            self._print(f"{desc}: start" + (f", {total} {unit}" if total is not None else ""))

    def _print(self, text: str) -> None:
        print(text, file=self.file if self.file is not None else sys.stderr, flush=True)

    def __iter__(self) -> Iterator:
        for x in self.iterable if self.iterable is not None else ():
            yield x
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> LogBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        post = f" ({self.postfix})" if self.postfix else ""
        return f"{self.desc}: {self.n}{of} {self.unit}, {time.monotonic() - self._t0:.1f} s{post}"

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self.disable or not self.leave or not self.total:
            return
        if self._next_quarter < 4 and self.n < self.total and 4 * self.n >= self._next_quarter * self.total:
            self._next_quarter = 4 * self.n // self.total + 1
            self._print(self._line())

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def write(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.leave:
            self._print(self._line() + " - done")


def progress_bar(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm bar on a terminal, a :class:`LogBar` (a few summary lines) elsewhere. Keywords as tqdm's;
    inner bars (``leave=False``) print nothing in a log."""
    if interactive(kwargs.get("file")):
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    return LogBar(iterable, **kwargs)


def progress_write(text: str, file=None) -> None:
    """Print a line without breaking a terminal's progress bars (``tqdm.write``); plainly elsewhere."""
    if interactive(file):
        from tqdm.auto import tqdm

        tqdm.write(text, file=file)
    else:
        print(text, file=file if file is not None else sys.stdout, flush=True)
