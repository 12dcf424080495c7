"""Progress lines for a pass over a known amount of work, as training prints them:

    clean: 4/10 shards, 3.1 MB of 7.9 MB, 1,204 docs | 612 kB/s, 233 docs/s | eta 8s

One line at most every `every` seconds (and one at the end), so a long pass shows it is alive
without flooding the console. Plain Python: the caller feeds it results as they arrive.
"""
from __future__ import annotations

import time
from typing import Callable


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, label: str, say: Callable[[str], None], *, total_items: int, item: str = "shards",
                 total_bytes: int | None = None, count: str | None = "docs", every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.say, self.item, self.count_name = label, say, item, count
        self.total_items, self.total_bytes = total_items, total_bytes
        self.items = self.bytes = self.count = 0
        self.every, self.clock = every, clock
        self.start = self.last = clock()

    def add(self, items: int = 1, bytes: int = 0, count: int = 0) -> None:
        self.items += items
        self.bytes += bytes
        self.count += count
        now = self.clock()
        if now - self.last >= self.every and self.items < self.total_items:
            self.last = now
            self.say(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((self.clock() if now is None else now) - self.start, 1e-9)
        done = [f"{self.items:,}/{self.total_items:,} {self.item}"]
        rates = []
        if self.total_bytes:
            done.append(f"{_size(self.bytes)} of {_size(self.total_bytes)}")
            rates.append(f"{_size(self.bytes / elapsed)}/s")
        if self.count_name:
            done.append(f"{self.count:,} {self.count_name}")
            rates.append(f"{self.count / elapsed:,.0f} {self.count_name}/s")
        share = (self.bytes / self.total_bytes if self.total_bytes else self.items / max(self.total_items, 1))
        eta = f" | eta {_eta(elapsed * (1 - share) / share)}" if 0 < share < 1 else ""
        return f"{self.label}: {', '.join(done)} | {', '.join(rates) or f'{elapsed:.0f}s'}{eta}"
