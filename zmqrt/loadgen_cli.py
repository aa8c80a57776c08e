"""``zmqrt loadgen``: an open-loop load generator and latency benchmark against a running zmqrt server.

``add_loadgen_parser(subparsers)`` adds the subcommand (``zmqrt.cli`` calls it); ``main(argv)`` is the same
command standalone (``tools/loadgen.py``). Settings come from flags, a TOML scenario (``--scenario``), or
both: a flag given on the command line wins over the scenario's value. Exit status: 0 when every task got a
result and every checked output matched, 1 when some were lost or mismatched, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ingest.loadgen import ARRIVALS, LoadgenConfig, MixEntry, load_scenario, parse_mix, run_loadgen

DEFAULTS = {"rate": 1000.0, "arrival": "constant", "timeout": 5.0, "duration": 5.0}


def add_loadgen_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "loadgen", help="open-loop load generator and latency benchmark",
        description="Send tasks to a zmqrt server open loop, at --rate (constant or Poisson arrivals) for "
                    "--duration seconds or --count tasks, and measure each task's latency from its intended send "
                    "time (coordinated-omission free). Prints live progress and a percentile table; optionally "
                    "writes JSON, an HdrHistogram log and a plot.",
        epilog='examples:\n  zmqrt loadgen --endpoint tcp://127.0.0.1:5555 --rate 10000 --duration 5\n'
               '  zmqrt loadgen --endpoint EP --mix "kernel=vector_add,size=256,priority=0,deadline_us=50,weight=3"'
               ' \\\n      --mix "kernel=matmul,size=1024,priority=2,deadline_us=200" --json out.json --plot out.png\n'
               '  zmqrt loadgen --endpoint EP --scenario examples/scenarios/mixed.toml --processes 4',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True, metavar="EP", help="the server's --ingest endpoint; "
                   "several separated by commas for engines that bind their own (zmqrt serve --devices LIST --fanout "
                   "direct), dealt round-robin")
    p.add_argument("--scenario", metavar="FILE.toml", help="task mix ([[task]] tables) and run settings")
    g = p.add_argument_group("schedule")
    g.add_argument("--rate", type=float, metavar="HZ", help=f"tasks per second, all producers together "
                   f"(default {DEFAULTS['rate']:g})")
    g.add_argument("--duration", type=float, metavar="S", help=f"seconds of sending (default "
                   f"{DEFAULTS['duration']:g} unless --count)")
    g.add_argument("--count", type=int, metavar="N", help="number of tasks (instead of --duration)")
    g.add_argument("--arrival", choices=ARRIVALS, help="constant intervals or Poisson arrivals (default constant)")
    g.add_argument("--processes", type=int, default=1, metavar="N", help="producer processes sharing the schedule, "
                   "each with its own socket, for rates one Python process cannot send (default 1)")
    g.add_argument("--collector", action="store_true", help="each producer's results go to a second process of "
                   "its own, so a result never waits for the sender to look; for rates where one thread cannot "
                   "both send and receive (the round trip from the actual send is then the server and the sockets "
                   "only; default: one thread does both)")
    g.add_argument("--timeout", type=float, metavar="S", help="after the last send, wait this long for results; "
                   f"a task without one is lost (default {DEFAULTS['timeout']:g})")
    g.add_argument("--seed", type=int, help="seed of the schedule, the mix draw and the inputs (default random)")
    m = p.add_argument_group("task mix (one entry from these flags, plus any --mix and scenario entries)")
    m.add_argument("--kernel", help="kernel of the flag entry (default vector_add)")
    m.add_argument("--size", type=int, help="about this many elements per input (default 256)")
    m.add_argument("--priority", type=int, help="0 is the most urgent (default: the server's)")
    m.add_argument("--deadline-us", type=float, help="deadline from the server's receipt, µs")
    m.add_argument("--period-us", type=float, help="period for rate-monotonic scheduling, µs")
    m.add_argument("--weight", type=float, help="relative share of the tasks (default 1)")
    m.add_argument("--mix", action="append", default=[], metavar="SPEC",
                   help='a mix entry, repeatable: "kernel=saxpy,size=256,priority=0,deadline_us=50,weight=3,'
                        'alpha=2.0" (other keys are kernel params)')
    o = p.add_argument_group("checks and output")
    o.add_argument("--check-fraction", type=float, default=0.0, metavar="F",
                   help="compare this fraction of outputs with numpy within each kernel's tolerance (default 0)")
    o.add_argument("--json", metavar="FILE", help="write counts, percentiles, config and per-entry results")
    o.add_argument("--hdr-log", metavar="FILE", help="write an HdrHistogram interval log (1 s intervals, ns)")
    o.add_argument("--plot", metavar="FILE.png", help="write the percentile spectrum and latency-over-time plot")
    o.add_argument("--pool-size", type=int, default=16, metavar="N", help="distinct inputs per mix entry "
                   "(generated before sending; default 16)")
    c = p.add_argument_group("security (a server started with --curve-secret/--allowed-keys)")
    c.add_argument("--curve-secret", metavar="FILE", help="this producer's NAME.key_secret (from `zmqrt keys`; its "
                   "NAME.key must be in the server's --allowed-keys directory)")
    c.add_argument("--server-public", metavar="FILE", help="the server's public NAME.key")
    o.add_argument("-q", "--quiet", action="store_true", help="no live progress (it shares the sender's thread "
                   "when --processes is 1)")
    p.set_defaults(handler=cmd_loadgen)
    return p


def _flag_entry(args: argparse.Namespace) -> MixEntry | None:
    given = {k: getattr(args, k) for k in ("kernel", "size", "priority", "deadline_us", "period_us", "weight")
             if getattr(args, k) is not None}
    if not given:
        return None
    return MixEntry(**{"kernel": "vector_add", "size": 256, "weight": 1.0, **given})


def build_config(args: argparse.Namespace) -> tuple[LoadgenConfig, str]:
    """Flags and scenario -> :class:`LoadgenConfig` and a title; raises ``ValueError`` with a clear message."""
    scenario = load_scenario(args.scenario) if args.scenario else None
    mix: list[MixEntry] = list(scenario.mix) if scenario else []
    mix += [parse_mix(text) for text in args.mix]
    flag_entry = _flag_entry(args)
    if flag_entry is not None:
        mix.append(flag_entry)
    if not mix:
        mix = [MixEntry()]
    if flag_entry is not None and flag_entry.weight <= 0:
        raise ValueError(f"--weight must be positive, got {flag_entry.weight}")
    if flag_entry is not None and flag_entry.size < 1:
        raise ValueError(f"--size must be at least 1, got {flag_entry.size}")

    def pick(flag: Any, from_scenario: Any, default: Any) -> Any:
        if flag is not None:
            return flag
        return from_scenario if from_scenario is not None else default

    # How long: the command line beats the scenario, and a count beats a duration within either.
    if args.count is not None and args.duration is not None:
        raise ValueError("give --duration or --count, not both")
    count, duration = args.count, args.duration
    if count is None and duration is None and scenario is not None:
        count, duration = scenario.count, (scenario.duration_s if scenario.count is None else None)
    if count is None and duration is None:
        duration = DEFAULTS["duration"]
    cfg = LoadgenConfig(
        endpoint=args.endpoint, mix=mix,
        rate_hz=float(pick(args.rate, scenario.rate_hz if scenario else None, DEFAULTS["rate"])),
        duration_s=duration, count=count,
        arrival=pick(args.arrival, scenario.arrival if scenario else None, DEFAULTS["arrival"]),
        timeout_s=float(pick(args.timeout, scenario.timeout_s if scenario else None, DEFAULTS["timeout"])),
        check_fraction=args.check_fraction, seed=pick(args.seed, scenario.seed if scenario else None, None),
        processes=args.processes, pool_size=args.pool_size, collector=args.collector,
        curve_secret=args.curve_secret, server_public=args.server_public)
    cfg.validate()
    title = f"zmqrt loadgen: {scenario.name or Path(args.scenario).stem}" if scenario else "zmqrt loadgen"
    return cfg, title


def cmd_loadgen(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.loadgen_report import plot, rich_table, summarize, write_hdr_log

    console = Console(stderr=True)
    try:
        cfg, title = build_config(args)
    except (ValueError, OSError) as e:
        console.print(f"zmqrt loadgen: {e}", style="red", markup=False, highlight=False)
        return 2
    what = f"{cfg.count} tasks" if cfg.count is not None else f"{cfg.duration_s:g} s"
    console.print(f"zmqrt loadgen -> {cfg.endpoint}: {what} at {cfg.rate_hz:g} Hz ({cfg.arrival}), "
                  f"{len(cfg.mix)} mix entr{'y' if len(cfg.mix) == 1 else 'ies'}, {cfg.processes} producer(s)",
                  markup=False, highlight=False)
    progress_bar = None
    callback = None
    if not args.quiet:
        # Refreshed from the progress callback (~10x/s), not a refresh thread: with one producer the callback
        # runs between sends, and a second thread would contend for the GIL at arbitrary moments instead.
        progress_bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                TimeElapsedColumn(), console=console, auto_refresh=False, transient=False)
        bar = progress_bar.add_task("sending", total=None, info="")
        progress_bar.start()
        first = [0.0, 0]

        def callback(sent: int, received: int, total: int) -> None:
            import time

            now = time.perf_counter()
            if not first[0]:
                first[0] = now
            elapsed = now - first[0]
            rate = received / elapsed if elapsed > 0 else 0.0
            progress_bar.update(bar, total=total, completed=received, refresh=True,
                                info=f"sent {sent}/{total}  received {received}  {rate:,.0f}/s")

    try:
        result = run_loadgen(cfg, callback)
    except (ValueError, RuntimeError) as e:
        console.print(f"zmqrt loadgen: {e}", style="red", markup=False, highlight=False)
        return 2
    finally:
        if progress_bar is not None:
            progress_bar.stop()
    summary = summarize(result)
    # Piped output has no terminal width; give the 15-column table room instead of rich's 80 columns.
    out = Console() if sys.stdout.isatty() else Console(width=170)
    out.print(rich_table(summary, title))
    _print_details(out, summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        out.print(f"JSON: {args.json}", markup=False, highlight=False)
    if args.hdr_log:
        write_hdr_log(result, args.hdr_log)
        out.print(f"HDR log: {args.hdr_log}", markup=False, highlight=False)
    if args.plot:
        plot(result, args.plot, title)
        out.print(f"plot: {args.plot}", markup=False, highlight=False)
    c = summary["overall"]["counts"]
    return 1 if c["lost"] or c["mismatches"] else 0


def _print_details(out: Any, summary: dict[str, Any]) -> None:
    c = summary["overall"]["counts"]
    line = (f"sent {c['sent']}, ok {c['ok']} (missed {c['missed']}), rejected {c['rejected']}, expired "
            f"{c['expired']}, error {c['error']}, lost {c['lost']}")
    codes = {**c["rejected_by_code"], **{f"error {k}": v for k, v in c["error_by_code"].items()}}
    if codes:
        line += " [" + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items())) + "]"
    if c["checked"]:
        line += f"; outputs checked {c['checked']}, mismatches {c['mismatches']}"
    out.print(line, markup=False, highlight=False)
    server = summary["overall"]["server_us"]
    if server:
        out.print("server stages µs (p50/p99): " + ", ".join(
            f"{s} {v['p50']:.1f}/{v['p99']:.1f}" for s, v in server.items()), markup=False, highlight=False)
    for msg in summary["mismatch_messages"][:5]:
        out.print(f"mismatch: {msg}", style="red", markup=False, highlight=False)
    if summary["duplicates"]:
        out.print(f"duplicate results: {summary['duplicates']}", style="red", markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """``zmqrt loadgen`` as a standalone program (``tools/loadgen.py``)."""
    parser = argparse.ArgumentParser(prog="zmqrt")  # usage then reads "zmqrt loadgen ..."
    sub = parser.add_subparsers(dest="command", required=True)
    add_loadgen_parser(sub)
    args = parser.parse_args(["loadgen", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
