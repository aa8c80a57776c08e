"""Render a stats snapshot (``zmqrt stats``) as rich tables: counters, then latency per stage and kernel."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def fetch_stats(endpoint: str, timeout_s: float = 5.0) -> dict | None:
    """One snapshot from a server's ``--stats`` REP endpoint, or None when it does not answer in time."""
    import msgpack
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(b"stats")
        if not sock.poll(int(timeout_s * 1000)):
            return None
        return msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close(linger=0)
        ctx.term()


def render(snap: dict, console: Console | None = None) -> None:
    console = console or Console()
    server = snap.get("server", {})
    if server:
        console.print(" · ".join(f"[bold]{k}[/]: {v:.1f}" if isinstance(v, float) else f"[bold]{k}[/]: {v}"
                                 for k, v in server.items()))
    counters = snap.get("counters", {})
    if counters:
        t = Table(title="outcomes")
        t.add_column("counter")
        t.add_column("value", justify="right")
        for k, v in counters.items():
            t.add_row(str(k), str(v))
        console.print(t)
    stages = snap.get("stages") or {}
    if stages:
        t = Table(title="latency by stage (µs)")
        cols = ("count", "p50", "p95", "p99", "p99.9", "max", "mean")
        t.add_column("stage")
        for c in cols:
            t.add_column(c, justify="right")
        for stage, row in stages.items():
            t.add_row(stage, *(_fmt(row, c) for c in cols))
        console.print(t)


def _fmt(row: dict, col: str) -> str:
    if col == "count":
        return f"{row.get('count', 0):,}"
    key = {"p50": "p50_ns", "p95": "p95_ns", "p99": "p99_ns", "p99.9": "p99_9_ns", "max": "max_ns",
           "mean": "mean_ns"}[col]
    v = row.get(key)
    return "-" if v is None else f"{v / 1e3:,.1f}"
