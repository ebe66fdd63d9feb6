"""A fixed-size reservoir of the most recent latencies, with an all-time maximum."""

from __future__ import annotations

import numpy as np


class LatencyWindow:
    """The last `size` samples (ns), written a batch at a time; percentiles over that window.

    Parameters
    ----------
    size : int, default 65536
        How many recent samples the percentiles cover.
    """

    def __init__(self, size: int = 65_536) -> None:
        if size <= 0:
            raise ValueError("size must be positive")
        self._samples = np.zeros(size, dtype=np.int64)
        self._next = 0
        self._count = 0
        self._max = 0

    def record(self, samples: np.ndarray) -> None:
        n = len(samples)
        if not n:
            return
        size = len(self._samples)
        if n >= size:
            self._samples[:] = samples[-size:]
            self._next = 0
        else:
            end = self._next + n
            if end <= size:
                self._samples[self._next : end] = samples
            else:
                split = size - self._next
                self._samples[self._next :] = samples[:split]
                self._samples[: n - split] = samples[split:]
            self._next = end % size
        self._count += n
        self._max = max(self._max, int(samples.max()))

    @property
    def count(self) -> int:
        return self._count

    def summary_us(self) -> dict[str, float]:
        """p50, p99 of the window and the all-time max, in microseconds (0 when empty)."""
        held = min(self._count, len(self._samples))
        if not held:
            return {"p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "samples": 0}
        window = self._samples[:held] if self._count < len(self._samples) else self._samples
        p50, p99 = np.percentile(window, [50, 99])
        return {
            "p50_us": round(float(p50) / 1e3, 1),
            "p99_us": round(float(p99) / 1e3, 1),
            "max_us": round(self._max / 1e3, 1),
            "samples": self._count,
        }
