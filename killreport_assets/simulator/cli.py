"""`killreport esi-sim` / `python -m killreport_assets.simulator`: serve the simulator until SIGINT/SIGTERM.

On start it prints one machine-readable line, `listening on http://HOST:PORT`, which is what
`SimulatorProcess` waits for (so `--port 0` can pick a free port).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from killreport_assets.simulator.config import RATE_LIMIT_MODES, SimulatorConfig, parse_downtime
from killreport_assets.simulator.server import SimulatorServer


def _number(
    kind: Callable[[str], Any], low: float | None = None, high: float | None = None
) -> Callable[[str], Any]:
    """An argparse type: `kind` within [low, high]; argparse names the option in its error."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return convert


def _downtime(text: str) -> str:
    try:
        parse_downtime(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def configure_parser(parser: argparse.ArgumentParser) -> None:
    defaults = SimulatorConfig()
    add = parser.add_argument
    add(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; loopback only unless --allow-remote)",
    )
    add("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    add("--port", type=_number(int, 0, 65535), default=8080, help="port (default 8080; 0 picks a free one)")
    add(
        "--alliances",
        type=_number(int, 1),
        default=defaults.alliances,
        help="listed alliances (default %(default)s)",
    )
    add(
        "--corporations",
        type=_number(int, 1),
        default=defaults.corporations,
        help="member corporations of those alliances (default %(default)s); a few hundred more have none",
    )
    add("--seed", type=int, default=defaults.seed, help="universe seed (default %(default)s)")
    add(
        "--day",
        type=_number(int, 0),
        default=defaults.day,
        help="serve this day's drift (default %(default)s)",
    )
    add(
        "--cache-ttl",
        type=_number(int, 1),
        default=defaults.cache_ttl,
        help="seconds until Expires (default %(default)s)",
    )
    add("--latency-ms", type=_number(float, 0), default=defaults.latency_ms, help="mean added latency")
    add(
        "--jitter-ms",
        type=_number(float, 0),
        default=defaults.jitter_ms,
        help="latency varies by ± this much",
    )
    add(
        "--fault-rate",
        type=_number(float, 0, 1),
        default=defaults.fault_rate,
        help="fraction of requests answered 502/503/504 (default %(default)s)",
    )
    add(
        "--html-fault-share",
        type=_number(float, 0, 1),
        default=defaults.html_fault_share,
        help="share of those faults that are a load balancer's HTML 504 (default %(default)s)",
    )
    add(
        "--poison-corporation",
        type=_number(int, 1),
        action="append",
        default=[],
        metavar="ID",
        help="corporation ID that always answers 500 (repeatable)",
    )
    add(
        "--poison-alliance",
        type=_number(int, 1),
        action="append",
        default=[],
        metavar="ID",
        help="alliance ID that always answers 500 (repeatable)",
    )
    add(
        "--downtime",
        type=_downtime,
        metavar="HH:MM-HH:MM",
        help="daily UTC window answering 503 (e.g. 11:00-11:15)",
    )
    add(
        "--error-window",
        type=_number(int, 1),
        default=defaults.error_window,
        help="error-limit window, seconds",
    )
    add("--error-limit", type=_number(int, 1), default=defaults.error_limit, help="errors allowed per window")
    add(
        "--rate-limit-mode",
        choices=RATE_LIMIT_MODES,
        default=defaults.rate_limit_mode,
        help="legacy per-IP error limit (420) or token buckets (429); default %(default)s",
    )
    add("--bucket-tokens", type=_number(int, 1), default=defaults.bucket_tokens, help="tokens per bucket")
    add(
        "--bucket-window",
        type=_number(int, 1),
        default=defaults.bucket_window,
        help="bucket window in seconds; X-Ratelimit-Limit shows it as 15m, 1h or 10s",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        seed=args.seed,
        alliances=args.alliances,
        corporations=args.corporations,
        day=args.day,
        cache_ttl=args.cache_ttl,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        fault_rate=args.fault_rate,
        html_fault_share=args.html_fault_share,
        poison_corporations=frozenset(args.poison_corporation),
        poison_alliances=frozenset(args.poison_alliance),
        downtime=parse_downtime(args.downtime) if args.downtime else None,
        error_window=args.error_window,
        error_limit=args.error_limit,
        rate_limit_mode=args.rate_limit_mode,
        bucket_tokens=args.bucket_tokens,
        bucket_window=args.bucket_window,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"esi-sim: error: --host {args.host} is not a loopback address; add --allow-remote",
            file=sys.stderr,
        )
        return 2
    try:
        config = config_from_args(args)
    except ValueError as exc:  # cross-option checks; name the option the way the user typed it
        message = re.sub(r"^(\w+)", lambda m: "--" + m.group(1).replace("_", "-"), str(exc))
        print(f"esi-sim: error: {message}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with SimulatorServer(config, host=args.host, port=args.port) as server:
            print(f"listening on {server.url}", flush=True)
            stop.wait()
    except RuntimeError as exc:
        print(f"esi-sim: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
