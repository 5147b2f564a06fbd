"""Run every benchmark and print one table (also written as JSON).

python -m bench [--quick] [--only NAME ...] [--latency-ms 0,50] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from bench.harness import Figure, Settings

# Each module has NAME and ``async def run(settings) -> list[Figure]``.
BENCHMARKS = [
    "bench.registration",
    "bench.polls",
    "bench.meetings",
    "bench.campaigns",
    "bench.petitions",
    "bench.broadcasts",
    "bench.footprint",
]
# Run at every latency given with --latency-ms.
THROUGHPUT = {"bench.registration", "bench.polls", "bench.campaigns", "bench.petitions"}


def table(figures: list[Figure]) -> str:
    """The figures as a Markdown table."""
    lines = ["| benchmark | measure | figure | target | met |", "| --- | --- | --- | --- | --- |"]
    for f in figures:
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        value = f"{f.value:,}" if isinstance(f.value, int | float) else str(f.value)
        lines.append(f"| {f.benchmark} | {f.measure} | {value} {f.unit} | {f.target} | {met} |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Figure]:
    """Run the chosen benchmarks one after another; the JSON is rewritten after each, and a
    benchmark that fails is reported as a failed figure while the others still run."""
    figures: list[Figure] = []
    latencies = [float(x) for x in args.latency_ms.split(",")]
    for module_name in BENCHMARKS:
        module = importlib.import_module(module_name)
        if args.only and not any(o in module_name for o in args.only):
            continue
        for latency in latencies if module_name in THROUGHPUT else [0.0]:
            settings = Settings(quick=args.quick, latency_ms=latency)
            started = time.monotonic()
            try:
                results = await module.run(settings)
            except Exception as error:
                traceback.print_exc()
                results = [
                    Figure(module.NAME, f"did not finish: {error}", 0, "", "finishes", False)
                ]
            for figure in results:
                if latency:
                    figure.benchmark += f" @{latency:g} ms"
            figures.extend(results)
            print(
                f"{module.NAME} (latency {latency:g} ms): {time.monotonic() - started:.1f} s",
                flush=True,
            )
            print(table(results), flush=True)
            write_json(Path(args.json), figures)
    return figures


def write_json(path: Path, figures: list[Figure]) -> None:
    """The figures so far, with the machine they were measured on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "figures": [f.as_dict() for f in figures],
            },
            ensure_ascii=False,
            indent=2,
        )
    )


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="tiny workloads (smoke test)")
    parser.add_argument("--only", nargs="*", default=[], help="run benchmarks matching names")
    parser.add_argument("--latency-ms", default="0", help="Bot API latencies, e.g. 0,50")
    parser.add_argument("--json", default="bench/results/latest.json")
    args = parser.parse_args()
    figures = asyncio.run(main_async(args))
    print()
    print(table(figures))
    path = Path(args.json)
    write_json(path, figures)
    print(f"\nwritten to {path}")
    if any(f.measure.startswith("did not finish") for f in figures):
        sys.exit(1)


if __name__ == "__main__":
    main()
