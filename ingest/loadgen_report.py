"""Reports of a load-generator run: summary dict (the JSON), rich table, HDR histogram log, latency plot.

Contract
--------
- :func:`summarize` turns a :class:`~ingest.loadgen.LoadgenResult` into plain JSON types: ``config``,
  ``overall`` and ``entries`` (one per mix entry, same fields), ``mismatch_messages`` and ``duplicates``.
  Each group has ``counts`` (sent, received, ok, error and rejected by code, expired, missed = ok but late,
  lost, checked, mismatches), ``latency_us`` (count, mean, p50, p90, p95, p99, p99.9, max of the ok results,
  from the intended send time), ``throughput_hz`` (ok results over the span from the first intended send to
  the last result), ``miss_pct`` (missed of ok), ``server_us`` (mean, p50, p99, max per server stage) and
  ``hdr`` (the group's HdrHistogram in ns, ``encode()``d: ``HdrHistogram.decode`` restores it, and
  histograms of several runs add up).
- :func:`write_hdr_log` writes an HdrHistogram interval log (one interval per second of intended send time,
  values in ns) that HdrHistogram's log tools and plotters read.
- :func:`plot` writes a PNG (matplotlib, Agg): the latency percentile spectrum on a "nines" axis, and latency
  against send time (lost tasks marked at the top).
- :func:`rich_table` builds the seed's table (rows: overall, then each entry); printing is the caller's.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .loadgen import STAGES, LoadgenResult, latency_histogram, new_histogram

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9))


def _counts(res: LoadgenResult, sel: np.ndarray) -> dict[str, Any]:
    status = res.status[sel]
    code = res.code[sel]

    def by_code(which: str) -> dict[str, int]:
        codes, counts = np.unique(code[status == which].astype(str), return_counts=True)
        return {str(c): int(k) for c, k in zip(codes, counts, strict=True)}

    return {
        "tasks": int(sel.sum()),
        "sent": int((res.sent_ns[sel] >= 0).sum()),
        "received": int((res.done_ns[sel] >= 0).sum()),
        "ok": int((status == "ok").sum()),
        "error": int((status == "error").sum()),
        "error_by_code": by_code("error"),
        "rejected": int((status == "rejected").sum()),
        "rejected_by_code": by_code("rejected"),
        "expired": int((status == "expired").sum()),
        "missed": int(res.missed[sel].sum()),
        "lost": int((status == "lost").sum()),
        "checked": int(res.checked[sel].sum()),
        "mismatches": int(res.mismatch[sel].sum()),
    }


def _latency(hist: Any) -> dict[str, float]:
    out: dict[str, float] = {"count": int(hist.get_total_count())}
    if not out["count"]:
        return out
    out["mean"] = hist.get_mean_value() / 1e3
    for name, p in PERCENTILES:
        out[name] = hist.get_value_at_percentile(p) / 1e3
    out["max"] = hist.get_max_value() / 1e3
    return out


def _group(res: LoadgenResult, sel: np.ndarray) -> dict[str, Any]:
    ok = sel & (res.status == "ok")
    hist = latency_histogram(res.done_ns[ok] - res.intended_ns[ok])
    counts = _counts(res, sel)
    received = sel & (res.done_ns >= 0)
    span_ns = (int(res.done_ns[received].max()) - int(res.intended_ns[sel].min())) if received.any() else 0
    server = {}
    for stage in STAGES:
        v = res.stages_us[stage][ok]
        v = v[~np.isnan(v)]
        if len(v):
            server[stage] = {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
                             "p99": float(np.percentile(v, 99)), "max": float(v.max())}
    return {
        "counts": counts,
        "miss_pct": 100.0 * counts["missed"] / counts["ok"] if counts["ok"] else 0.0,
        "latency_us": _latency(hist),
        "throughput_hz": counts["ok"] / (span_ns / 1e9) if span_ns > 0 else 0.0,
        "server_us": server,
        "hdr": hist.encode().decode("ascii"),
    }


def summarize(res: LoadgenResult) -> dict[str, Any]:
    """The whole run as JSON-ready types (see the module docstring for the fields)."""
    everything = np.ones(len(res), bool)
    entries = []
    for i, entry in enumerate(res.config.mix):
        group = _group(res, res.entry == i)
        entries.append({"label": entry.label, "index": i, **group})
    return {
        "config": res.config.to_json(),
        "overall": _group(res, everything),
        "entries": entries,
        "mismatch_messages": list(res.mismatch_messages),
        "duplicates": int(res.duplicates),
        "latency_basis": "intended send time to result receipt (coordinated-omission free), microseconds",
    }


def rich_table(summary: dict[str, Any], title: str = "zmqrt loadgen") -> Any:
    """The seed's table: count, misses %, mean, p50 .. p99.9, max (µs), throughput, lost, overall then entries."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("Mix entry")
    for head in ("Tasks", "OK", "Miss %", "Mean µs", "P50", "P90", "P95", "P99", "P99.9", "Max µs", "Tasks/s",
                 "Not ok", "Lost", "Bad out"):
        table.add_column(head, justify="right")

    def row(label: str, g: dict[str, Any], style: str | None = None) -> None:
        c, lat = g["counts"], g["latency_us"]

        def f(key: str) -> str:
            return f"{lat[key]:.1f}" if key in lat else "-"

        table.add_row(label, str(c["tasks"]), str(c["ok"]), f"{g['miss_pct']:.1f}", f("mean"), f("p50"), f("p90"),
                      f("p95"), f("p99"), f("p99.9"), f("max"), f"{g['throughput_hz']:.0f}",
                      str(c["rejected"] + c["expired"] + c["error"]), str(c["lost"]),
                      f"{c['mismatches']}/{c['checked']}" if c["checked"] else "-", style=style)

    row("overall", summary["overall"], style="bold")
    if len(summary["entries"]) > 1:
        for e in summary["entries"]:
            row(e["label"], e)
    return table


def write_hdr_log(res: LoadgenResult, path: str | Path, interval_s: float = 1.0) -> int:
    """An HdrHistogram interval log of the ok latencies (ns), one interval per ``interval_s`` of send time;
    the last line is the whole run's histogram. Returns the number of intervals written."""
    from hdrh.log import HistogramLogWriter

    ok = res.status == "ok"
    lat = (res.done_ns - res.intended_ns)[ok]
    t0 = int(res.intended_ns.min()) if len(res) else 0
    t_s = (res.intended_ns[ok] - t0) / 1e9
    n_intervals = max(1, math.ceil((float(t_s.max()) if len(t_s) else 0.0) / interval_s + 1e-12))
    with open(path, "w") as f:
        writer = HistogramLogWriter(f)
        writer.output_comment("zmqrt loadgen: latency from intended send time, values in ns")
        writer.output_log_format_version()
        # hdrh's output_start_time is broken (datetime.iso_format); this is the line it means to write.
        start = res.started_unix_s
        f.write(f"#[StartTime: {start:.3f} (seconds since epoch), "
                f"{datetime.fromtimestamp(start, timezone.utc).isoformat(' ')}]\n")
        writer.output_legend()
        slot = np.minimum((t_s // interval_s).astype(np.int64), n_intervals - 1)
        for k in range(n_intervals):
            hist = latency_histogram(lat[slot == k]) if len(lat) else new_histogram()
            # Start/end in seconds from the run's start; max reported in ms (the log format's convention).
            writer.output_interval_histogram(hist, k * interval_s or 1e-9, (k + 1) * interval_s, 1e6)
    return n_intervals


def plot(res: LoadgenResult, path: str | Path, title: str = "zmqrt loadgen") -> None:
    """Latency percentile spectrum (x: percentile on a log "nines" scale) and latency over send time."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    fig, (ax_spec, ax_time) = plt.subplots(1, 2, figsize=(13, 5))
    ok = res.status == "ok"
    lat_us = (res.done_ns - res.intended_ns) / 1e3
    t0 = int(res.intended_ns.min()) if len(res) else 0
    t_s = (res.intended_ns - t0) / 1e9
    groups = [("overall", ok)]
    if len(res.config.mix) > 1:
        groups += [(e.label, ok & (res.entry == i)) for i, e in enumerate(res.config.mix)]
    for label, sel in groups:
        v = np.sort(lat_us[sel])
        if not len(v):
            continue
        # Percentile p of the k-th of n sorted samples; x = 1/(1-p) so 90%, 99%, 99.9% are evenly spaced.
        pct = (np.arange(1, len(v) + 1) - 0.5) / len(v)
        ax_spec.plot(1.0 / (1.0 - pct), v, label=label, lw=2.0 if label == "overall" else 1.0)
    ax_spec.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax_spec.set_xticks(ticks)
    ax_spec.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax_spec.set_xlim(1, max(10.0, 1.0 / (0.5 / max(1, int(ok.sum())))))
    ax_spec.set_xlabel("percentile")
    ax_spec.set_ylabel("latency from intended send (µs)")
    ax_spec.set_title("latency by percentile")
    ax_spec.grid(True, which="both", alpha=0.3)
    ax_spec.legend(fontsize="small")

    for i, e in enumerate(res.config.mix):
        sel = ok & (res.entry == i)
        ax_time.scatter(t_s[sel], lat_us[sel], s=3, alpha=0.6, label=e.label)
    bad = res.status != "ok"
    if bad.any():
        top = float(lat_us[ok].max()) if ok.any() else 1.0
        ax_time.scatter(t_s[bad], np.full(int(bad.sum()), top * 1.1), s=8, marker="x", color="red",
                        label="not ok (lost/rejected/expired/error)")
    ax_time.set_yscale("log")
    ax_time.set_xlabel("intended send time (s)")
    ax_time.set_ylabel("latency (µs)")
    ax_time.set_title("latency over time")
    ax_time.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize="small", markerscale=3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
