"""Resident memory of this process, sampled while a block runs (Linux /proc)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


@dataclass
class RssGrowth:
    """How far resident memory rose above its level at the start of the block."""

    baseline: int = 0
    peak: int = 0

    @property
    def grown_mib(self) -> float:
        return (self.peak - self.baseline) / (1024 * 1024)


@contextmanager
def rss_growth(interval: float = 0.005) -> Iterator[RssGrowth]:
    """Sample resident memory every `interval` seconds while the block runs."""
    growth = RssGrowth(baseline=resident_bytes())
    growth.peak = growth.baseline
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            growth.peak = max(growth.peak, resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield growth
    finally:
        stop.set()
        sampler.join(timeout=5)
        growth.peak = max(growth.peak, resident_bytes())
