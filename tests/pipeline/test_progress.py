"""Progress lines: counts, rates and an eta from the share done, at most one line per interval."""
from pipeline.progress import Progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_show_counts_rates_and_eta_and_are_rate_limited():
    clock, lines = Clock(), []
    p = Progress("clean", lines.append, total_items=3, total_bytes=8_000_000, every=5.0, clock=clock)
    clock.now = 2.0
    p.add(bytes=2_000_000, count=100)
    assert lines == []  # within the interval: nothing printed
    clock.now = 6.0
    p.add(bytes=2_000_000, count=140)
    assert lines == ["clean: 2/3 shards, 4.0 MB of 8.0 MB, 240 docs | 667 kB/s, 40 docs/s | eta 6s"]
    clock.now = 7.0
    p.add(bytes=4_000_000, count=10)
    assert len(lines) == 1  # the last item: the caller prints its own closing line
    assert p.line().startswith("clean: 3/3 shards, 8.0 MB of 8.0 MB, 250 docs") and "eta" not in p.line()


def test_without_bytes_the_eta_comes_from_the_items():
    clock, lines = Clock(), []
    p = Progress("tokenize", lines.append, total_items=1000, item="docs", count="tokens", every=1.0, clock=clock)
    clock.now = 100.0
    p.add(items=250, count=50_000)
    assert lines == ["tokenize: 250/1,000 docs, 50,000 tokens | 500 tokens/s | eta 5m00s"]
