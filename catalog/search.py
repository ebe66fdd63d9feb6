"""Ranked, case-insensitive instrument search that stays well under a millisecond over 200k rows.

Results come in three tiers, each ordered by iid (cash before derivatives, near expiries first):

1. exact: the symbol equals the query, or a cash instrument's name does (`sbin` finds `SBIN-EQ`
   on NSE, then `SBIN` on BSE);
2. prefix: the symbol starts with the query;
3. substring: the query appears anywhere in the symbol or the name.

The index, built once per file with numpy and kept in the columnar cache:

- the iids in the order of their lowercase symbols (`order`). A prefix is a contiguous run of
  it, found by bisecting over the catalog's own symbol strings; the smallest iids of a run come
  from a sparse table of range minima, so a prefix shared by 100k symbols costs no more than a
  rare one;
- one byte haystack of "symbol<TAB>name" lines in iid order, and posting lists of the iids
  whose line contains each three-byte gram. A substring query walks the list of its rarest gram
  in iid order, narrowed by the lists of rare grams from other parts of the query, checks the
  survivors against the haystack and stops once it has enough.

The arrays live in the columnar cache as .npy files and are memory-mapped.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

_LINE_END = 0x0A  # separates the lines of the haystack
_FIELD_SEP = 0x09  # separates symbol and name within a line
_CHUNK = 256  # candidates converted to Python ints at a time
_SMALL_RUN = 64  # prefix runs this short are just sorted
_DIRECT_CHECK = 256  # candidate lists this short are verified without narrowing
_RUN = 8192  # most candidates narrowed at a time (runs grow from _CHUNK up to this)
_INTERSECT = 3  # other grams used for narrowing (the rarest ones)


@dataclass(frozen=True)
class SearchArrays:
    """The persistent part of the search index (all numpy, saved with `save`)."""

    order: np.ndarray  # int32: iid at each position of the sorted lowercase symbols
    haystack: np.ndarray  # uint8: lowercase "symbol\tname\n" lines in iid order
    starts: np.ndarray  # int64: offset of each line in the haystack, plus the end
    gram_keys: np.ndarray  # uint32: distinct three-byte grams, ascending
    gram_offsets: np.ndarray  # int64: postings of gram_keys[k] are gram_rows[off[k]:off[k+1]]
    gram_rows: np.ndarray  # int32: iids, ascending within each gram

    @classmethod
    def build(cls, symbols_original: pl.Series, symbols_lower: pl.Series, lines: pl.Series) -> SearchArrays:
        """Build from the symbols (as listed and lowercase) and haystack lines, all in iid order."""
        if symbols_lower.str.contains(r"[^\x00-\x7f]").any():
            # sort as Python compares str.lower(), which is how searches bisect this order
            lowered = [symbol.lower() for symbol in symbols_original]
            order = np.array(sorted(range(len(lowered)), key=lowered.__getitem__), dtype=np.int32)
        else:  # ASCII: polars' byte order is Python's order
            order = symbols_lower.arg_sort().to_numpy().astype(np.int32)
        lengths = (lines.str.len_bytes().cast(pl.Int64) + 1).to_numpy()
        text = lines.str.join("\n").item() + "\n" if lines.len() else ""
        haystack = np.frombuffer(text.encode(), dtype=np.uint8)
        starts = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        keys, offsets, rows = _gram_postings(haystack, lengths)
        return cls(order, haystack, starts, keys, offsets, rows)

    def save(self, directory: Path) -> None:
        """One .npy per array in `directory` (created), so a load can memory-map them."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAY_NAMES:
            np.save(directory / f"{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> SearchArrays:
        """Memory-mapped, read-only: pages are read as searches touch them, and processes on
        one machine share them through the page cache."""
        arrays = {
            # a plain ndarray view of the map: np.memmap's own slicing costs microseconds
            name: np.load(directory / f"{name}.npy", mmap_mode="r").view(np.ndarray)
            for name in _ARRAY_NAMES
        }
        return cls(**arrays)


_ARRAY_NAMES = ("order", "haystack", "starts", "gram_keys", "gram_offsets", "gram_rows")


def _gram_postings(haystack: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (gram, iid) pairs grouped by gram. A gram may end on a separator, so that a
    two-byte query at the end of a symbol or name is still found; it may not start on one."""
    if haystack.size < 3:
        return np.zeros(0, np.uint32), np.zeros(1, np.int64), np.zeros(0, np.int32)
    row_of_byte = np.repeat(np.arange(lengths.size, dtype=np.uint64), lengths)
    b = haystack.astype(np.uint32)
    grams = (b[:-2] << 16) | (b[1:-1] << 8) | b[2:]
    first, second = haystack[:-2], haystack[1:-1]
    usable = (first != _LINE_END) & (first != _FIELD_SEP) & (second != _LINE_END) & (second != _FIELD_SEP)
    # Sort and drop repeats by hand: np.unique's hashing path is ~100x slower on this data.
    pairs = np.sort((grams[usable].astype(np.uint64) << np.uint64(32)) | row_of_byte[:-2][usable])
    if pairs.size:
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    gram_of_pair = (pairs >> np.uint64(32)).astype(np.uint32)
    rows = (pairs & np.uint64(0xFFFFFFFF)).astype(np.int32)
    boundaries = np.flatnonzero(gram_of_pair[1:] != gram_of_pair[:-1]) + 1
    keys = gram_of_pair[np.concatenate(([0], boundaries))] if pairs.size else np.zeros(0, np.uint32)
    offsets = (
        np.concatenate(([0], boundaries, [pairs.size])).astype(np.int64)
        if pairs.size
        else np.zeros(1, np.int64)
    )
    return keys, offsets, rows


def _narrowing_grams(sizes: list[int]) -> list[int]:
    """Positions of the query's grams to intersect: the rarest first, then the rarest that do
    not overlap those already chosen (overlapping grams, as in one word, list the same lines),
    then the rarest of the rest; at most 1 + `_INTERSECT`."""
    by_size = sorted(range(len(sizes)), key=sizes.__getitem__)
    chosen: list[int] = []
    for position in by_size:
        if all(abs(position - other) >= 3 for other in chosen):
            chosen.append(position)
            if len(chosen) > _INTERSECT:
                return chosen
    for position in by_size:
        if position not in chosen:
            chosen.append(position)
            if len(chosen) > _INTERSECT:
                break
    return chosen


class _RangeMinimum:
    """Sparse table over `values`: the minimum of a range of at least `_SMALL_RUN` in O(1).

    Shorter ranges are read directly, so the table keeps only its levels for windows of
    `_SMALL_RUN` and wider (a third less memory than every level).
    """

    _FIRST_LEVEL = _SMALL_RUN.bit_length() - 1

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.levels: dict[int, np.ndarray] = {}
        level, span, table = 0, 1, values
        while span * 2 <= values.size:
            table = np.minimum(table[: table.size - span], table[span:])
            span, level = span * 2, level + 1
            if level >= self._FIRST_LEVEL:
                self.levels[level] = table

    def min(self, lo: int, hi: int) -> int:
        """Smallest value in values[lo:hi] (hi > lo)."""
        if hi - lo < _SMALL_RUN:
            return int(self.values[lo:hi].min())
        level = (hi - lo).bit_length() - 1
        table = self.levels[level]
        return int(min(table[lo], table[hi - (1 << level)]))


class SymbolSearch:
    """Search over one catalog's symbols and names; answers iids.

    Parameters
    ----------
    arrays : SearchArrays
        The prebuilt index for the same catalog (not kept: only the parts searching reads).
    symbols : Sequence[str]
        The catalog's symbols in iid order (shared, not copied; lowered as bisection reads them).
    cash_names_lower : Sequence[tuple[str, int]]
        (lowercase name, iid) of the cash instruments (equities and indices).
    """

    def __init__(
        self,
        arrays: SearchArrays,
        symbols: Sequence[str],
        cash_names_lower: Sequence[tuple[str, int]],
    ) -> None:
        order = np.array(arrays.order)  # in memory: the range-minimum table is built from it
        self._order = order
        self._order_list = array("i", order.tobytes())  # fast element reads for bisection
        self._symbols = symbols
        self._position_of_iid = np.empty_like(order)
        self._position_of_iid[order] = np.arange(order.size, dtype=order.dtype)
        self._range_min = _RangeMinimum(order)
        pairs = sorted(cash_names_lower)
        self._cash_names = [name for name, _ in pairs]
        self._cash_iids = [iid for _, iid in pairs]
        self._haystack = arrays.haystack.tobytes()
        self._starts = array("q", arrays.starts.tobytes())  # plain ints for bytes.find, 8 bytes each
        self._present_bytes = np.bincount(arrays.haystack, minlength=256) > 0
        self._gram_keys = arrays.gram_keys
        self._gram_offsets = arrays.gram_offsets
        self._gram_rows = arrays.gram_rows

    def _lower_symbol(self, iid: int) -> str:
        return self._symbols[iid].lower()

    def search(self, text: str, limit: int = 20) -> list[int]:
        """Iids matching `text` (case-insensitive), best first, at most `limit`."""
        query = text.strip().lower()
        if not query or limit <= 0 or "\n" in query or "\t" in query:
            return []
        found: list[int] = []
        seen: set[int] = set()

        def take(iids: list[int]) -> bool:
            for iid in iids:
                if iid not in seen:
                    seen.add(iid)
                    found.append(iid)
                    if len(found) == limit:
                        return True
            return False

        order, key = self._order_list, self._lower_symbol
        lo = bisect.bisect_left(order, query, key=key)
        exact_hi = bisect.bisect_right(order, query, lo, key=key)
        exact = order[lo:exact_hi].tolist()
        name_lo = bisect.bisect_left(self._cash_names, query)
        name_hi = bisect.bisect_right(self._cash_names, query, name_lo)
        exact += self._cash_iids[name_lo:name_hi]
        if take(sorted(set(exact))):
            return found
        prefix_hi = bisect.bisect_left(order, query + "\U0010ffff", exact_hi, key=key)
        if take(self._smallest_iids(lo, prefix_hi, limit - len(found) + len(seen))):
            return found
        self._substring(query.encode(), limit, seen, found)
        return found

    def _smallest_iids(self, lo: int, hi: int, count: int) -> list[int]:
        """The `count` smallest iids at sorted positions [lo, hi), ascending."""
        if hi - lo <= _SMALL_RUN:
            return sorted(self._order_list[lo:hi].tolist())[:count]
        rmq = self._range_min
        where = self._position_of_iid
        heap = [(rmq.min(lo, hi), lo, hi)]
        out: list[int] = []
        while heap and len(out) < count:
            iid, a, b = heapq.heappop(heap)
            out.append(iid)
            pos = int(where[iid])
            if pos > a:
                heapq.heappush(heap, (rmq.min(a, pos), a, pos))
            if pos + 1 < b:
                heapq.heappush(heap, (rmq.min(pos + 1, b), pos + 1, b))
        return out

    def _substring(self, query: bytes, limit: int, seen: set[int], found: list[int]) -> None:
        if len(query) == 1:
            self._scan(query, limit, seen, found)
            return
        if len(query) == 2:
            self._bigram(query, limit, seen, found)
            return
        grams = np.array(
            [(query[i] << 16) | (query[i + 1] << 8) | query[i + 2] for i in range(len(query) - 2)],
            dtype=np.uint32,
        )
        keys, offsets = self._gram_keys, self._gram_offsets
        index = np.minimum(np.searchsorted(keys, grams), max(keys.size - 1, 0))
        if keys.size == 0 or (keys[index] != grams).any():
            return  # some gram of the query occurs nowhere
        sizes = (offsets[index + 1] - offsets[index]).tolist()
        chosen = _narrowing_grams(sizes)
        rows = self._gram_rows
        starts_of = index.tolist()
        postings = [rows[offsets[starts_of[at]] : offsets[starts_of[at] + 1]] for at in chosen]
        haystack, starts = self._haystack, self._starts
        for chunk in self._candidates(postings[0], postings[1:]):
            for iid in chunk.tolist():
                if iid not in seen and haystack.find(query, starts[iid], starts[iid + 1]) >= 0:
                    seen.add(iid)
                    found.append(iid)
                    if len(found) == limit:
                        return

    def _candidates(self, rarest: np.ndarray, others: list[np.ndarray]) -> Iterator[np.ndarray]:
        """Runs of `rarest`, in order, keeping only iids also listed in every one of `others`.

        A short list is checked as it is; a long one is first narrowed run by run through a
        scratch bitmap of the other grams' postings over the same iid range, so that a query
        made of common grams but matching little does not verify tens of thousands of lines.
        """
        if rarest.size <= _DIRECT_CHECK or not others:
            yield from (rarest[at : at + _CHUNK] for at in range(0, rarest.size, _CHUNK))
            return
        marks = np.zeros(self._order.size, dtype=bool)  # per call: searches may run in threads
        at, size = 0, _CHUNK
        while at < rarest.size:
            run = rarest[at : at + size]
            at, size = at + size, min(size * 2, _RUN)  # small first: a common query stops early
            keep = np.ones(run.size, dtype=bool)
            # needles of the haystack's dtype: mixed dtypes make numpy copy the whole list
            bounds = np.array((run[0], run[-1] + 1), dtype=rarest.dtype)
            for other in others:
                lo, hi = np.searchsorted(other, bounds).tolist()
                part = other[lo:hi]
                if part.size > 4 * run.size:  # look the few up in the many
                    where = np.minimum(np.searchsorted(part, run), max(part.size - 1, 0))
                    keep &= part[where] == run if part.size else False
                else:  # mark the many, read the marks of the few
                    marks[part] = True
                    keep &= marks[run]
                    marks[part] = False
            yield run[keep]

    def _bigram(self, query: bytes, limit: int, seen: set[int], found: list[int]) -> None:
        # Every occurrence of two bytes begins some gram (each line ends in a separator), so
        # the answer is the union of the postings of the grams starting with them.
        base = (query[0] << 16) | (query[1] << 8)
        bounds = np.array((base, base + 256), dtype=self._gram_keys.dtype)
        k_lo, k_hi = np.searchsorted(self._gram_keys, bounds).tolist()
        need = limit - len(found) + len(seen)
        offsets = self._gram_offsets[k_lo : k_hi + 1].tolist()
        rows = self._gram_rows
        heads = [rows[start : min(end, start + need)] for start, end in itertools.pairwise(offsets)]
        if not heads:
            return
        for iid in np.unique(np.concatenate(heads)).tolist():
            if iid not in seen:
                seen.add(iid)
                found.append(iid)
                if len(found) == limit:
                    return

    def _scan(self, query: bytes, limit: int, seen: set[int], found: list[int]) -> None:
        if not self._present_bytes[query[0]]:
            return
        haystack, starts = self._haystack, self._starts
        pos = haystack.find(query)
        while pos >= 0:
            iid = bisect.bisect_right(starts, pos) - 1
            if iid not in seen:
                seen.add(iid)
                found.append(iid)
                if len(found) == limit:
                    return
            pos = haystack.find(query, starts[iid + 1])
