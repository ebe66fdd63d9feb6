"""Settings for every tier."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Timing is measured by the `shardline bench` commands, never asserted in tests: Hypothesis's
# per-example deadline would fail a correct property on a busy machine.
settings.register_profile("shardline", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shardline")
