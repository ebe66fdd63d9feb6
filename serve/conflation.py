"""Per-client outbox: latest state per channel, released at a bounded rate.

A WebSocket client never gets every tick. Updates for a channel replace the one waiting to be sent
(keyed, so ``orders`` keeps the latest state of *each* order), and each channel is released at most
``max_rate_hz`` times a second. A slow client therefore only ever holds latest state and costs the
broadcaster one dictionary write per update, whatever its socket is doing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class OutboxStats:
    offered: int = 0
    sent: int = 0
    conflated: int = 0  # replaced by a newer update before it was sent
    dropped: int = 0  # evicted because a channel held too many distinct keys


class ConflatingOutbox:
    """Pending messages for one client, keyed by (channel, key); time is passed in.

    Parameters
    ----------
    max_rate_hz
        Releases per channel per second.
    max_keys_per_channel
        Bound on distinct pending keys in one channel (e.g. alerts); the oldest is evicted past it.
    """

    def __init__(self, max_rate_hz: float, max_keys_per_channel: int = 1000) -> None:
        if max_rate_hz <= 0:
            raise ValueError("max_rate_hz must be positive")
        if max_keys_per_channel <= 0:
            raise ValueError("max_keys_per_channel must be positive")
        self.interval_s = 1.0 / max_rate_hz
        self._max_keys = max_keys_per_channel
        self._pending: dict[str, dict[str, object]] = {}
        self._last_sent: dict[str, float] = {}
        self._urgent: deque[object] = deque()
        self.stats = OutboxStats()

    def __len__(self) -> int:
        return len(self._urgent) + sum(len(keys) for keys in self._pending.values())

    def offer(self, channel: str, key: str, message: object) -> None:
        """Hold ``message`` as the latest state of ``key`` in ``channel``."""
        self.stats.offered += 1
        keys = self._pending.get(channel)
        if keys is None:
            keys = self._pending[channel] = {}
        if key in keys:
            self.stats.conflated += 1
            del keys[key]  # re-insert at the end so eviction stays oldest-first
        elif len(keys) >= self._max_keys:
            del keys[next(iter(keys))]
            self.stats.dropped += 1
        keys[key] = message

    def put_first(self, message: object) -> None:
        """Queue a message ahead of all pending updates and outside the rate (snapshots, errors)."""
        self._urgent.append(message)

    def discard(self, channel: str) -> None:
        """Forget what is pending for a channel (after an unsubscribe)."""
        self._pending.pop(channel, None)
        self._last_sent.pop(channel, None)

    def take_due(self, now: float) -> list[object]:
        """Everything that may be sent at ``now``: urgent messages first, then due channels."""
        out: list[object] = list(self._urgent)
        self._urgent.clear()
        for channel in [c for c, keys in self._pending.items() if keys]:
            if now - self._last_sent.get(channel, -1e18) >= self.interval_s:
                out.extend(self._pending.pop(channel).values())
                self._last_sent[channel] = now
        self.stats.sent += len(out)
        return out

    def seconds_until_due(self, now: float) -> float | None:
        """Seconds until the next pending message may go; None when nothing is pending."""
        if self._urgent:
            return 0.0
        waits = [
            self._last_sent.get(channel, -1e18) + self.interval_s - now
            for channel, keys in self._pending.items()
            if keys
        ]
        return max(0.0, min(waits)) if waits else None
