"""Progress lines for long commands: ``[i/n] what  elapsed 1m02s, ETA 3m10s``.

Plain lines on stderr (not a bar), so they read the same in a terminal, a log
file or CI; the ETA is the mean time of the items done so far times the items
left. Items reused from an earlier run are not counted in the mean, nor, once a
second item is done, the first one's time, which includes start-up (worker
processes importing torch).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts ``total`` items and prints a line per item (or, with ``min_interval``,
    at most one line every that many seconds, and always the first and the last)."""

    def __init__(self, total: int, *, quiet: bool = False, stream: Optional[TextIO] = None,
                 min_interval: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.total = int(total)
        self.quiet = quiet
        self.stream = stream
        self.min_interval = min_interval
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.fresh = 0
        self.fresh_seconds = 0.0
        self._first_seconds = 0.0
        self._last_print: Optional[float] = None
        self._last_step = self.started

    def eta(self) -> Optional[float]:
        """Seconds left, or None before any item that was really computed."""
        left = self.total - self.done
        if left <= 0:
            return 0.0
        if not self.fresh:
            return None
        if self.fresh >= 2:
            return (self.fresh_seconds - self._first_seconds) / (self.fresh - 1) * left
        return self.fresh_seconds / self.fresh * left

    def line(self, message: str = "") -> str:
        elapsed = self.clock() - self.started
        eta = self.eta()
        when = "done" if self.done >= self.total else ("ETA unknown" if eta is None else
                                                        f"ETA {format_duration(eta)}")
        text = f"[{self.done}/{self.total}] {message}".rstrip()
        return f"{text}  (elapsed {format_duration(elapsed)}, {when})"

    def step(self, message: str = "", *, n: int = 1, reused: bool = False) -> None:
        now = self.clock()
        self.done += n
        if not reused:
            if not self.fresh:
                self._first_seconds = now - self._last_step
            self.fresh += n
            self.fresh_seconds += now - self._last_step
        self._last_step = now
        if self.quiet:
            return
        due = (self._last_print is None or self.done >= self.total
               or now - self._last_print >= self.min_interval)
        if due:
            self._last_print = now
            print(self.line(message), file=self.stream or sys.stderr, flush=True)
