"""`shardline bench catalog`: load times, lookup latencies and memory over a synthetic master.

The cold and the warm load each run in a fresh process (spawned), so that one does not warm
the other's allocator and the memory figure is what a process that loads the catalog adds:
`rss_mb` is RSS after loading and exercising every index (every chain's legs read, so nearly
every instrument made, and the search index read), minus RSS before loading; `rss_lookups_mb` the
same after only the token and symbol look-ups, as a shard uses the catalog.

Latencies are per call (`perf_counter_ns` around each one), over instruments and queries drawn
with a fixed seed. Instruments are made on first touch, so the lookup figures include making
them; option chains include their first build. A chain's legs are made when its rows are first
read: `option_chain_legs_*` is reading all of a chain's legs the first time. The search index
is built by the first search after the cold load (`search_index_build_s`, not part of
`load_cold_s`: most processes never search) and read back by the first search after the warm
load (`search_index_load_s`); the search percentiles cover the queries after that.

On a shared machine wall-clock percentiles include time the process spent waiting for a core;
the `*_cpu_*` figures (process CPU time for loads, this thread's CPU time per call for search and
chains) show what the work itself cost, and `load_avg_1m` how busy the machine was.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import random
import shutil
import string
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from catalog.store import load_catalog
from catalog.synth import synthesize, write_scrip_master

_SAMPLES = 20_000
_SEARCHES = 5_000
_CHAIN_CALLS = 5_000
_SEARCH_LIMIT = 20


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _percentile(values_ns: Sequence[int], fraction: float) -> float:
    ordered = sorted(values_ns)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1_000  # µs


def _search_queries(symbols: list[str], names: list[str], rng: random.Random) -> list[str]:
    """A mix of what people type: whole symbols, prefixes, company names, fragments, misses."""
    queries: list[str] = []
    for _ in range(_SEARCHES):
        symbol = rng.choice(symbols)
        roll = rng.random()
        if roll < 0.25:
            queries.append(symbol.lower() if rng.random() < 0.5 else symbol)
        elif roll < 0.5:
            queries.append(symbol[: rng.randint(2, 6)].lower())
        elif roll < 0.7:
            queries.append(rng.choice(names).lower())
        elif roll < 0.9:
            width = rng.randint(3, 7)
            start = rng.randint(0, max(0, len(symbol) - width))
            queries.append(symbol[start : start + width].lower())
        else:
            queries.append("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 6))))
    return queries


def _cold(path: str, cache_dir: str) -> dict[str, Any]:
    gc.collect()
    before = _rss()
    phases: dict[str, float] = {}
    current_phase = [""]
    since = [time.perf_counter()]

    def on_phase(name: str) -> None:
        now = time.perf_counter()
        if current_phase[0]:
            phases[current_phase[0]] = round(now - since[0], 4)
        current_phase[0], since[0] = name, now

    started, cpu = time.perf_counter(), time.process_time()
    catalog = load_catalog(Path(path), Path(cache_dir), on_phase)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    on_phase("")
    started = time.perf_counter()
    catalog.search("sbin")  # builds the search index and keeps it in the cache entry
    search_build_s = time.perf_counter() - started
    return {
        "load_cold_s": round(elapsed, 4),
        "load_cold_cpu_s": round(cpu, 4),
        "cold_phases_s": phases,
        "search_index_build_s": round(search_build_s, 4),
        "rss_cold_mb": round((_rss() - before) / 1e6, 1),
        "instruments": len(catalog),
        "skipped": catalog.report.skipped_total,
    }


def _warm(
    path: str,
    cache_dir: str,
    seed: int,
    tokens: list[tuple[str, str]],
    symbols: list[tuple[str, str]],
    names: list[str],
) -> dict[str, Any]:
    gc.collect()
    before = _rss()
    started, cpu = time.perf_counter(), time.process_time()
    catalog = load_catalog(Path(path), Path(cache_dir))
    load_warm_s, load_warm_cpu_s = time.perf_counter() - started, time.process_time() - cpu

    rng = random.Random(seed)
    clock = time.perf_counter_ns
    # Look-up arguments come from the records the parent generated and timings go into flat
    # arrays, so that the memory figure is the catalog's own.
    token_ns = array("q")
    for exchange, token in tokens:
        t0 = clock()
        catalog.resolve_token(exchange, token)
        token_ns.append(clock() - t0)
    symbol_ns = array("q")
    for exchange, symbol in symbols:
        t0 = clock()
        catalog.resolve_symbol(exchange, symbol)
        symbol_ns.append(clock() - t0)
    gc.collect()
    rss_lookups = _rss() - before  # what a shard-like process that only resolves keeps

    queries = _search_queries([symbol for _, symbol in symbols], names, rng)
    t0 = clock()
    catalog.search(queries[0], _SEARCH_LIMIT)
    search_first_s = (clock() - t0) / 1e9  # reads the index the cold load's first search kept
    search_ns = array("q")
    search_cpu_ns = array("q")
    hits = 0
    cpu_clock = time.thread_time_ns  # what the call cost this thread, whatever else ran meanwhile
    for query in queries:
        c0, t0 = cpu_clock(), clock()
        found = catalog.search(query, _SEARCH_LIMIT)
        search_ns.append(clock() - t0)
        search_cpu_ns.append(cpu_clock() - c0)
        hits += bool(found)

    chains = catalog.chain_keys()
    chain_ns = array("q")
    chain_cpu_ns = array("q")
    legs_ns = array("q")  # reading every leg of a chain the first time: making its instruments
    read: set[tuple[str, str, Any]] = set()
    for _ in range(_CHAIN_CALLS):
        exchange, underlying, expiry = key = rng.choice(chains)
        c0, t0 = cpu_clock(), clock()
        chain = catalog.option_chain(underlying, expiry, exchange)
        chain_ns.append(clock() - t0)
        chain_cpu_ns.append(cpu_clock() - c0)
        if key not in read:
            read.add(key)
            t0 = clock()
            chain.instruments()
            legs_ns.append(clock() - t0)
    for exchange, underlying, expiry in chains:  # every index exercised, for the memory figure
        catalog.option_chain(underlying, expiry, exchange).instruments()

    gc.collect()
    return {
        "load_warm_s": round(load_warm_s, 4),
        "load_warm_cpu_s": round(load_warm_cpu_s, 4),
        "resolve_token_p50_us": _percentile(token_ns, 0.5),
        "resolve_token_p99_us": _percentile(token_ns, 0.99),
        "resolve_symbol_p50_us": _percentile(symbol_ns, 0.5),
        "resolve_symbol_p99_us": _percentile(symbol_ns, 0.99),
        "search_index_load_s": round(search_first_s, 4),
        "search_p50_us": _percentile(search_ns, 0.5),
        "search_p99_us": _percentile(search_ns, 0.99),
        "search_cpu_p99_us": _percentile(search_cpu_ns, 0.99),
        "search_hit_ratio": round(hits / len(queries), 3),
        "option_chain_p50_us": _percentile(chain_ns, 0.5),
        "option_chain_p99_us": _percentile(chain_ns, 0.99),
        "option_chain_cpu_p99_us": _percentile(chain_cpu_ns, 0.99),
        "option_chain_legs_p50_us": _percentile(legs_ns, 0.5),
        "option_chain_legs_p99_us": _percentile(legs_ns, 0.99),
        "option_chains": len(chains),
        "rss_mb": round((_rss() - before) / 1e6, 1),
        "rss_lookups_mb": round(rss_lookups / 1e6, 1),
    }


def run_catalog_bench(count: int, seed: int, workdir: Path) -> dict[str, Any]:
    """Generate a master of `count` records in `workdir`, then measure a cold and a warm load.

    Returns one flat dict (the JSON the CLI prints).
    """
    before_load = os.getloadavg()[0]  # latencies on a shared machine depend on what else runs
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"bench-{count}-{seed}.json"
    cache_dir = workdir / "cache"
    started = time.perf_counter()
    records = synthesize(count, seed)
    write_scrip_master(records, path)
    synth_s = time.perf_counter() - started
    rng = random.Random(seed)
    tokens = [(r["exch_seg"], r["token"]) for r in rng.choices(records, k=_SAMPLES)]
    symbols = [(r["exch_seg"], r["symbol"]) for r in rng.choices(records, k=_SAMPLES)]
    names = sorted({r["name"] for r in records})
    del records
    shutil.rmtree(cache_dir, ignore_errors=True)  # the cold load must find no cache
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        cold = pool.apply(_cold, (str(path), str(cache_dir)))
    with context.Pool(1) as pool:
        warm = pool.apply(_warm, (str(path), str(cache_dir), seed, tokens, symbols, names))
    return {
        "count": count,
        "seed": seed,
        "load_avg_1m": [round(before_load, 2), round(os.getloadavg()[0], 2)],  # at start, at end
        "instruments": cold["instruments"],
        "load_cold_s": cold["load_cold_s"],
        "load_warm_s": warm["load_warm_s"],
        "resolve_token_p99_us": warm["resolve_token_p99_us"],
        "resolve_symbol_p99_us": warm["resolve_symbol_p99_us"],
        "search_p99_us": warm["search_p99_us"],
        "option_chain_p99_us": warm["option_chain_p99_us"],
        "rss_mb": warm["rss_mb"],
        "synth_s": round(synth_s, 3),
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "skipped": cold["skipped"],
        "cold_phases_s": cold["cold_phases_s"],
        "rss_cold_mb": cold["rss_cold_mb"],
        "load_cold_cpu_s": cold["load_cold_cpu_s"],
        "search_index_build_s": cold["search_index_build_s"],
        **{k: v for k, v in warm.items() if k not in ("load_warm_s", "rss_mb")},
    }
