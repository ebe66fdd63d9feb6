"""Reference-counted market-data subscriptions.

Deployments and terminal users ask for instruments independently; the socket subscribes an
instrument when its first owner asks and unsubscribes it when its last owner lets go.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


class SubscriptionBook:
    """Who holds which instrument keys ("EXCH:token"), and which keys the socket must carry."""

    def __init__(self) -> None:
        self._owners: dict[str, set[str]] = {}
        self._counts: Counter[str] = Counter()

    def acquire(self, owner: str, keys: Iterable[str]) -> list[str]:
        """Record `owner` holding `keys`; returns the keys nobody held before (to subscribe)."""
        held = self._owners.setdefault(owner, set())
        new = []
        for key in dict.fromkeys(keys):
            if key in held:
                continue
            held.add(key)
            self._counts[key] += 1
            if self._counts[key] == 1:
                new.append(key)
        return new

    def release(self, owner: str, keys: Iterable[str] | None = None) -> list[str]:
        """Drop `owner`'s hold on `keys` (all of them if None); returns keys nobody holds now."""
        held = self._owners.get(owner, set())
        dropped = []
        for key in sorted(held) if keys is None else list(dict.fromkeys(keys)):
            if key not in held:
                continue
            held.discard(key)
            self._counts[key] -= 1
            if self._counts[key] == 0:
                del self._counts[key]
                dropped.append(key)
        if not held:
            self._owners.pop(owner, None)
        return dropped

    def keys(self) -> list[str]:
        return sorted(self._counts)

    def owners(self) -> dict[str, int]:
        return {owner: len(keys) for owner, keys in sorted(self._owners.items())}

    def __len__(self) -> int:
        return len(self._counts)
