"""Sample strategies: plain Nautilus strategies that run in a shard or a backtest unchanged.

None of them has an edge; they exist to exercise the system and to show the shape of a strategy.
"""
