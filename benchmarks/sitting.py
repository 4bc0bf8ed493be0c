"""Every benchmark of docs/benchmarks.md, one after the other, in one sitting; each appends its JSON
line to `--out` (default docs/benchmarks.jsonl, emptied first). Then run `python -m
benchmarks.summary` to write docs/benchmarks.md and its chart.

    python -m benchmarks.sitting                 # everything (about 2 hours on 2 cores)
    python -m benchmarks.sitting --only a1,b2,c  # some of them, by the ids below
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

# (id, module, arguments): the order they run in.
PLAN: list[tuple[str, str, list[str]]] = [
    ("a1", "budget", ["--rps", "100"]),
    ("b1", "budget", ["--rps", "100", "--workers", "1", "--name", "b"]),
    ("b2", "budget", ["--rps", "100", "--workers", "2", "--name", "b"]),
    ("b4", "budget", ["--rps", "100", "--workers", "4", "--name", "b"]),
    ("a2", "budget", ["--rps", "50"]),
    ("a3", "budget", ["--rps", "50", "--workers", "2"]),
    ("a4", "budget", ["--rps", "100", "--latency-ms", "200", "--jitter-ms", "0"]),
    ("a5", "budget", ["--rps", "100", "--latency-ms", "200", "--jitter-ms", "0", "--workers", "2"]),
    ("c", "overhead", []),
    ("d", "warm", []),
    ("e1", "scale", ["--size", "1"]),
    ("e10", "scale", ["--size", "10"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.jsonl"))
    parser.add_argument("--only", help="comma-separated ids from the plan")
    parser.add_argument("--append", action="store_true", help="keep what --out already holds")
    args = parser.parse_args(argv)
    chosen = set(args.only.split(",")) if args.only else {name for name, _, _ in PLAN}
    if not args.append:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("")
    failed = []
    for name, module, options in PLAN:
        if name not in chosen:
            continue
        started = time.monotonic()
        print(f"[sitting] {name}: benchmarks.{module} {' '.join(options)}", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}", *options, "--out", str(args.out)]
        )
        print(
            f"[sitting] {name}: exit {done.returncode} in {time.monotonic() - started:.0f} s", file=sys.stderr
        )
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"[sitting] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
