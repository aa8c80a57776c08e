"""Latency histograms per (kernel, priority, stage) and result counters.

Contract
--------
- ``record(kernel, priority, stage, ns)`` adds one integer-ns sample to an HDR histogram (1 ns .. 60 s,
  3 significant digits, so any value is reported within 0.1 %). Values outside the range are clamped, never
  dropped. The histogram is cached per key in a dict; the first sample of a key creates it (cold path) and
  checks the stage name. Stages: ``queue``, ``h2d``, ``kernel``, ``d2h``, ``service``, ``e2e``.
- Samples of ``interval_stage`` (default ``e2e``) also go into one interval histogram over all kernels, which
  the monitor swaps out each tick (:meth:`LatencyTracker.take_interval`).
- Counters: ``ok`` (every ok result, late ones included), ``missed`` (ok but late), ``expired``, ``rejected``
  and ``errors`` by code, ``undecodable``. Goodput = on-time ok results per second over the last
  ``goodput_window_s`` seconds, counted in whole-second buckets on the caller's clock.
- ``snapshot(now_ns)`` is a dict of plain types (str keys, ints, floats, str) that msgpack and JSON accept,
  with each histogram's HdrHistogram ``encode()`` as ASCII, so ``merge_snapshot`` on another tracker adds up
  several processes exactly.

The tracker is not thread-safe: record and read it from one thread (the server loop), or guard it.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from zmqrt.errors import Code

STAGES = ("queue", "h2d", "kernel", "d2h", "service", "e2e")
PERCENTILES = (50.0, 95.0, 99.0, 99.9)
LOWEST_NS = 1
HIGHEST_NS = 60_000_000_000
SIGNIFICANT_FIGURES = 3
SNAPSHOT_VERSION = 1

_NS_PER_S = 1_000_000_000


def new_histogram() -> HdrHistogram:
    """An empty histogram with the tracker's range and precision."""
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)


def _index_terms() -> tuple[int, int, int, int, int]:
    """The terms of hdrh's counts index for the tracker's histograms: unit magnitude, sub-bucket mask, half-count
    magnitude, half count, and the bit length that maps to bucket 0."""
    t = new_histogram()
    unit, shift = t.unit_magnitude, t.sub_bucket_half_count_magnitude
    return unit, t.sub_bucket_mask, shift, t.sub_bucket_half_count, unit + shift + 1


def _make_fast_record() -> Any:
    """A record function equivalent to ``HdrHistogram.record_value`` but about 3x cheaper.

    hdrh's ``record_value`` spends most of its time in helper calls (``bin()`` for clz, three index methods).
    This inlines the same index arithmetic with ``int.bit_length``. It touches hdrh attributes (``counts``,
    ``total_count``, ``min_value``, ``max_value``), so it is checked against hdrh at import and replaced by
    ``record_value`` if any index differs (a future hdrh layout change then costs speed, not correctness).
    """
    unit, mask, shift, half, base = _index_terms()

    def record(h: HdrHistogram, v: int) -> None:
        if v > HIGHEST_NS:
            v = HIGHEST_NS
        elif v < 0:
            v = 0
        bucket = (v | mask).bit_length() - base
        h.counts[((bucket + 1) << shift) + (v >> (bucket + unit)) - half] += 1
        h.total_count += 1
        if v < h.min_value:
            h.min_value = v
        if v > h.max_value:
            h.max_value = v

    def slow(h: HdrHistogram, v: int) -> None:
        h.record_value(min(max(v, 0), HIGHEST_NS))

    probes = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 123_456, 10**9 + 7, HIGHEST_NS]
    try:
        for v in probes:
            a, b = new_histogram(), new_histogram()
            record(a, v)
            b.record_value(v)
            if (
                a.get_total_count() != 1
                or a.get_count_at_value(v) != 1
                or b.get_count_at_value(v) != 1
                or a.get_min_value() != b.get_min_value()
                or a.get_max_value() != b.get_max_value()
            ):
                return slow
    except Exception:  # any internals mismatch: fall back to the public API
        return slow
    return record


_record = _make_fast_record()


def _make_array_record() -> Any:
    """``record_array(h, values_ns)``: :func:`_record` for every value of an int array, with numpy (a batch of
    results at once, ``ingest.bulk``). The same index arithmetic; ``int.bit_length`` is exact through float64
    here because every clamped value is below 2**53. Falls back to a loop over ``_record`` where the fast record
    itself fell back (an hdrh layout it does not know)."""
    unit, mask, shift, half, base = _index_terms()

    def index(x: int) -> int:
        b = (x | mask).bit_length() - base
        return ((b + 1) << shift) + (x >> (b + unit)) - half

    def record_array(h: HdrHistogram, values: np.ndarray) -> None:
        if not len(values):
            return
        v = np.asarray(values, np.int64)
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or hi > HIGHEST_NS:
            v = np.minimum(np.maximum(v, _ZERO), _HIGHEST)  # np.clip: 4x the time
            lo, hi = max(lo, 0), min(hi, HIGHEST_NS)
        b = (lo | mask).bit_length() - base
        if b == (hi | mask).bit_length() - base:  # the usual case: one power-of-two bucket for the whole batch
            idx = (v >> (b + unit)) + (((b + 1) << shift) - half)
        else:
            bucket = np.frexp((v | mask).astype(np.float64))[1].astype(np.int64) - base  # frexp's exponent: bit_length
            idx = ((bucket + 1) << shift) + (v >> (bucket + unit)) - half
        first, last = index(lo), index(hi)  # the index is monotonic in the value
        # One batch's latencies sit in a narrow band of buckets: count them over that band (np.add.at over the
        # whole array cost 4x as much).
        np.ctypeslib.as_array(h.counts)[first:last + 1] += np.bincount(idx - first, minlength=last - first + 1
                                                                       ).astype(np.uint64)
        h.total_count += len(v)
        if lo < h.min_value:
            h.min_value = lo
        if hi > h.max_value:
            h.max_value = hi

    def loop(h: HdrHistogram, values: np.ndarray) -> None:
        for x in np.asarray(values, np.int64).tolist():
            _record(h, x)

    return record_array if _record.__name__ == "record" else loop


_ZERO, _HIGHEST = np.int64(0), np.int64(HIGHEST_NS)

_record_array = _make_array_record()


_EMPTY_SUMMARY: dict[str, int | float] = {
    "count": 0,
    "min_ns": 0,
    "max_ns": 0,
    "mean_ns": 0.0,
    "p50_ns": 0,
    "p95_ns": 0,
    "p99_ns": 0,
    "p99_9_ns": 0,
}


_GEOMETRY: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] = {}


def _geometry(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Per counts index: the lowest equivalent value and the median equivalent value (hdrh's definitions),
    computed once per histogram layout with numpy."""
    key = (h.counts_len, h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count, h.unit_magnitude)
    geo = _GEOMETRY.get(key)
    if geo is None:
        idx = np.arange(h.counts_len, dtype=np.int64)
        bucket = (idx >> h.sub_bucket_half_count_magnitude) - 1
        sub = (idx & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
        low_half = bucket < 0
        sub[low_half] -= h.sub_bucket_half_count
        bucket[low_half] = 0
        lowest = sub << (bucket + h.unit_magnitude)
        size = np.left_shift(np.int64(1), bucket + h.unit_magnitude)
        geo = _GEOMETRY[key] = (lowest, lowest + (size >> 1))
    return geo


def _live_range(h: HdrHistogram) -> tuple[int, int]:
    """The counts index range ``[lo, hi)`` that holds every recorded sample: from the index of ``min_value`` to
    that of ``max_value``, which every record (ours, hdrh's, ``add``, decode) keeps up to date. The whole array
    when the histogram is empty or the bounds look wrong.

    Why: the counts array has ~27k buckets (221 KiB). A second of 10-100 µs samples lives in a few thousand
    of them, and the monitor tick's cumsum over all of them, cold from cache, is loop time."""
    full = (0, h.counts_len)
    if h.total_count <= 0:
        return full
    lo_v, hi_v = h.min_value, h.max_value
    if not 0 <= lo_v <= hi_v:
        return full
    try:
        lo, hi = h.get_counts_array_index(lo_v), h.get_counts_array_index(hi_v) + 1
    except (ValueError, IndexError):
        return full
    if not 0 <= lo < hi <= h.counts_len:
        return full
    return lo, hi


def _counts(h: HdrHistogram, lo: int, hi: int) -> np.ndarray:
    return np.ctypeslib.as_array(h.counts)[lo:hi]


def reset(h: HdrHistogram) -> None:
    """``h.reset()`` with a memset: hdrh's own loops over ~27k buckets in Python, 2 to 4 ms on the loop thread
    once a second (seen as the round trip's p99.9)."""
    ctypes.memset(h.counts, 0, ctypes.sizeof(h.counts))
    h.total_count = 0
    h.min_value = sys.maxsize
    h.max_value = 0
    h.start_time_stamp_msec = sys.maxsize
    h.end_time_stamp_msec = 0


def percentiles_ns(h: HdrHistogram, percentiles) -> dict[float, int]:
    """The same values as ``h.get_percentile_to_value_dict``, with a numpy cumsum instead of a Python loop
    over ~27k buckets (which took tens of ms and stalled the serving loop once a second)."""
    total = h.get_total_count()
    lo, hi = _live_range(h)
    cum = np.cumsum(_counts(h, lo, hi))
    if (lo, hi) != (0, h.counts_len) and int(cum[-1]) != total:
        lo, hi = 0, h.counts_len  # the bounds did not hold every sample: scan everything
        cum = np.cumsum(_counts(h, lo, hi))
    percentiles = tuple(percentiles)
    # The targets in the cumsum's own dtype (uint64): a Python int makes searchsorted cast every bucket to
    # float64 first, 50 µs a percentile, and the monitor tick (on the loop thread) took 200 µs for its three.
    targets = np.array([max(int(min(p, 100.0) * total / 100 + 0.5), 1) for p in percentiles], dtype=cum.dtype)
    last = h.counts_len - 1
    out = {}
    for p, i in zip(percentiles, np.searchsorted(cum, targets).tolist(), strict=True):
        value = h.get_value_from_index(min(lo + i, last))
        out[p] = h.get_highest_equivalent_value(value) if p else h.get_lowest_equivalent_value(value)
    return out


def mean_ns(h: HdrHistogram) -> float:
    """``h.get_mean_value()`` (median-equivalent weighting), vectorized."""
    total = h.get_total_count()
    if not total:
        return 0.0
    counts = _counts(h, 0, h.counts_len)
    return float(np.dot(counts.astype(np.float64), _geometry(h)[1].astype(np.float64)) / total)


def summarize(h: HdrHistogram) -> dict[str, int | float]:
    """count, min, max, mean and p50/p95/p99/p99.9 of ``h``, in ns (zeros when empty)."""
    count = h.get_total_count()
    if count == 0:
        return dict(_EMPTY_SUMMARY)
    q = percentiles_ns(h, PERCENTILES)
    return {
        "count": count,
        "min_ns": h.get_min_value(),
        "max_ns": h.get_max_value(),
        "mean_ns": mean_ns(h),
        "p50_ns": q[50.0],
        "p95_ns": q[95.0],
        "p99_ns": q[99.0],
        "p99_9_ns": q[99.9],
    }


def _code_name(code: Code | str) -> str:
    return code.value if isinstance(code, Code) else str(code)


class LatencyTracker:
    """HDR histograms per (kernel, priority, stage), an interval histogram, and outcome counters."""

    def __init__(self, goodput_window_s: int = 10, interval_stage: str = "e2e") -> None:
        if goodput_window_s < 1:
            raise ValueError(f"goodput_window_s must be >= 1, got {goodput_window_s}")
        if interval_stage not in STAGES:
            raise ValueError(f"interval_stage must be one of {STAGES}, got {interval_stage!r}")
        self.interval_stage = interval_stage
        self._hists: dict[tuple[str, int, str], HdrHistogram] = {}
        self._interval = new_histogram()
        self._spare = new_histogram()
        self.ok = 0
        self.missed = 0
        self.expired = 0
        self.undecodable = 0
        self.rejected: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self._gp_window_s = goodput_window_s
        self._gp_sec = [-1] * goodput_window_s  # which second each bucket holds
        self._gp_count = [0] * goodput_window_s
        self._gp_first_ns: int | None = None
        self._merged_goodput_per_s = 0.0

    def record(self, kernel: str, priority: int, stage: str, ns: int) -> None:
        """Add one sample of ``ns`` nanoseconds (hot path: one dict lookup and a few int ops)."""
        self._add(kernel, priority, stage, ns, _record)

    def record_many(self, kernel: str, priority: int, stage: str, ns: np.ndarray) -> None:
        """:meth:`record` for every value of ``ns`` (int nanoseconds), a batch of results at once."""
        self._add(kernel, priority, stage, ns, _record_array)

    def _add(self, kernel: str, priority: int, stage: str, value: Any, add: Any) -> None:
        h = self._hists.get((kernel, priority, stage))
        if h is None:
            h = self._create(kernel, priority, stage)
        add(h, value)
        if stage == self.interval_stage:
            add(self._interval, value)

    def record_stages(self, kernel: str, priority: int, stages_ns: Mapping[str, int]) -> None:
        """:meth:`record` for each ``stage: ns`` of one result."""
        for stage, ns in stages_ns.items():
            self.record(kernel, priority, stage, ns)

    def _create(self, kernel: str, priority: int, stage: str) -> HdrHistogram:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        h = self._hists[(kernel, priority, stage)] = new_histogram()
        return h

    def count_ok(self, now_ns: int, missed: bool = False) -> None:
        """One ok result at ``now_ns``; ``missed`` when it finished after its deadline."""
        self.count_ok_many(now_ns, 1, 1 if missed else 0)

    def count_ok_many(self, now_ns: int, n: int, missed: int) -> None:
        """``n`` ok results at ``now_ns``, ``missed`` of them late."""
        self.ok += n
        self.missed += missed
        on_time = n - missed
        if on_time <= 0:
            return
        sec = now_ns // _NS_PER_S
        i = sec % self._gp_window_s
        if self._gp_sec[i] != sec:
            self._gp_sec[i] = sec
            self._gp_count[i] = 0
        self._gp_count[i] += on_time
        if self._gp_first_ns is None:
            self._gp_first_ns = now_ns

    def count_expired(self) -> None:
        self.expired += 1

    def count_rejected(self, code: Code | str) -> None:
        name = _code_name(code)
        self.rejected[name] = self.rejected.get(name, 0) + 1

    def count_error(self, code: Code | str) -> None:
        name = _code_name(code)
        self.errors[name] = self.errors.get(name, 0) + 1

    def count_undecodable(self) -> None:
        self.undecodable += 1

    @property
    def on_time(self) -> int:
        return self.ok - self.missed

    def goodput_per_s(self, now_ns: int) -> float:
        """On-time ok results per second over the last ``goodput_window_s`` seconds (shorter at start-up),
        plus the goodput of merged snapshots."""
        rate = self._merged_goodput_per_s
        if self._gp_first_ns is None:
            return rate
        sec = now_ns // _NS_PER_S
        oldest = sec - self._gp_window_s + 1
        total = 0
        for s, c in zip(self._gp_sec, self._gp_count, strict=True):
            if oldest <= s <= sec:
                total += c
        window_ns = (self._gp_window_s - 1) * _NS_PER_S + now_ns % _NS_PER_S
        since_first_ns = now_ns - (self._gp_first_ns // _NS_PER_S) * _NS_PER_S
        denom_ns = min(window_ns, since_first_ns)
        if denom_ns <= 0:
            return rate
        return rate + total * _NS_PER_S / denom_ns

    def take_interval(self) -> HdrHistogram:
        """The interval histogram since the last call; a cleared one takes its place. The returned histogram
        stays valid until the next call (it is recycled then)."""
        taken = self._interval
        reset(self._spare)
        self._interval = self._spare
        self._spare = taken
        return taken

    def histogram(self, kernel: str, priority: int, stage: str) -> HdrHistogram | None:
        """The live histogram of one key, or None if it has no sample yet. Do not modify it."""
        return self._hists.get((kernel, priority, stage))

    def keys(self) -> list[tuple[str, int, str]]:
        return list(self._hists)

    def merged(self, stage: str | None = None, kernel: str | None = None, priority: int | None = None) -> HdrHistogram:
        """A new histogram adding every key that matches the given filters (None matches all)."""
        out = new_histogram()
        for (k, p, s), h in self._hists.items():
            if (
                (stage is None or s == stage)
                and (kernel is None or k == kernel)
                and (priority is None or p == priority)
            ):
                out.add(h)
        return out

    def summary(self, stage: str | None = None, kernel: str | None = None, priority: int | None = None) -> dict:
        """:func:`summarize` of :meth:`merged`."""
        return summarize(self.merged(stage, kernel, priority))

    def stage_summaries(self) -> dict[str, dict[str, int | float]]:
        """Per stage, over all kernels and priorities."""
        stages = sorted({s for (_, _, s) in self._hists}, key=STAGES.index)
        return {s: self.summary(stage=s) for s in stages}

    def kernel_summaries(self) -> dict[str, dict[str, dict[str, int | float]]]:
        """Per kernel, per stage, over all priorities."""
        out: dict[str, dict[str, dict[str, int | float]]] = {}
        for k in sorted({k for (k, _, _) in self._hists}):
            stages = sorted({s for (kk, _, s) in self._hists if kk == k}, key=STAGES.index)
            out[k] = {s: self.summary(stage=s, kernel=k) for s in stages}
        return out

    def counters(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "missed": self.missed,
            "on_time": self.on_time,
            "expired": self.expired,
            "undecodable": self.undecodable,
            "rejected": dict(self.rejected),
            "errors": dict(self.errors),
        }

    def snapshot(self, now_ns: int | None = None, encode: bool = True) -> dict[str, Any]:
        """Plain-typed state; ``encode`` adds each histogram's HDR encoding (``hdr``) for merging.

        ``{"version", "counters", "goodput_per_s", "histograms": [{"kernel", "priority", "stage", "count",
        "min_ns", "max_ns", "mean_ns", "p50_ns", "p95_ns", "p99_ns", "p99_9_ns", "hdr"?}]}``.
        ``goodput_per_s`` is 0.0 when ``now_ns`` is not given.
        """
        hists = []
        for (k, p, s), h in self._hists.items():
            entry: dict[str, Any] = {"kernel": k, "priority": p, "stage": s, **summarize(h)}
            if encode:
                entry["hdr"] = h.encode().decode("ascii")
            hists.append(entry)
        return {
            "version": SNAPSHOT_VERSION,
            "counters": self.counters(),
            "goodput_per_s": 0.0 if now_ns is None else self.goodput_per_s(now_ns),
            "histograms": hists,
        }

    def merge_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        """Add a :meth:`snapshot` (with ``hdr``) from this or another process into this tracker."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {snapshot.get('version')!r} != {SNAPSHOT_VERSION}")
        c = snapshot["counters"]
        self.ok += c["ok"]
        self.missed += c["missed"]
        self.expired += c["expired"]
        self.undecodable += c["undecodable"]
        for name, n in c["rejected"].items():
            self.rejected[name] = self.rejected.get(name, 0) + n
        for name, n in c["errors"].items():
            self.errors[name] = self.errors.get(name, 0) + n
        self._merged_goodput_per_s += float(snapshot.get("goodput_per_s", 0.0))
        for entry in snapshot["histograms"]:
            if "hdr" not in entry:
                raise ValueError("snapshot was taken with encode=False; its histograms cannot be merged")
            key = (entry["kernel"], int(entry["priority"]), entry["stage"])
            h = self._hists.get(key) or self._create(*key)
            h.add(HdrHistogram.decode(entry["hdr"]))


def merge_snapshots(snapshots: Iterable[Mapping[str, Any]]) -> LatencyTracker:
    """A fresh tracker holding the sum of ``snapshots`` (e.g. one per engine process)."""
    t = LatencyTracker()
    for s in snapshots:
        t.merge_snapshot(s)
    return t
