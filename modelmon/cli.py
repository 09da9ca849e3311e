"""The ``modelmon`` command line: the only module that imports both packages.

Each command imports its implementation lazily, so ``modelmon proxy`` never pays for scipy and
``modelmon status`` starts at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from modelmon import __version__
from modelmon.config import ConfigError, ModelmonConfig, load_config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _add_config(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config", "-c", type=Path, required=required, help="the modelmon YAML file"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelmon",
        description="Self-hosted model monitoring: a capture proxy and an analyzer.",
    )
    parser.add_argument("--version", action="version", version=f"modelmon {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    proxy = commands.add_parser("proxy", help="run the capture proxy")
    _add_config(proxy)

    analyzer = commands.add_parser("analyzer", help="run the analyzer service")
    _add_config(analyzer)

    up = commands.add_parser("up", help="run the proxy and the analyzer together, supervised")
    _add_config(up)

    baseline = commands.add_parser(
        "baseline", help="write statistics.json and constraints.json from training data"
    )
    _add_config(baseline, required=False)
    baseline.add_argument("--data", type=Path, required=True, help="a file or a capture folder")
    baseline.add_argument("--format", choices=["csv", "jsonl", "capture"], default=None)
    baseline.add_argument("--out", type=Path, default=None, help="output folder")
    baseline.add_argument(
        "--no-header", action="store_true", help="CSV without a header: columns _c0 … _cN"
    )

    analyze = commands.add_parser("analyze", help="one monitoring pass over captured files")
    _add_config(analyze)
    analyze.add_argument("--once", action="store_true", required=True, help="run once and exit")
    analyze.add_argument("--start", default=None, help="window start (ISO-8601 UTC)")
    analyze.add_argument("--end", default=None, help="window end (ISO-8601 UTC)")

    demo = commands.add_parser("demo", help="toy model + proxy + analyzer + drifting traffic")
    demo.add_argument("--dir", type=Path, default=None, help="working folder (default: a temp dir)")
    demo.add_argument("--seconds", type=float, default=90.0, help="stop after this long")
    demo.add_argument("--keep", action="store_true", help="keep running after the drift shows")

    status = commands.add_parser("status", help="print the monitor status")
    status.add_argument("--url", default=None, help="analyzer or proxy URL")
    _add_config(status, required=False)
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    return parser


def _config(path: Path | None) -> ModelmonConfig | None:
    return load_config(path) if path is not None else None


def run(args: argparse.Namespace) -> int:
    command = args.command
    if command == "proxy":
        from capture_proxy.main import run_proxy

        return run_proxy(load_config(args.config))
    if command == "analyzer":
        from analyzer.service import run_service

        return run_service(load_config(args.config))
    if command == "up":
        from modelmon.up import run_up

        return run_up(args.config)
    if command == "baseline":
        from analyzer.baseline_cli import run_baseline

        return run_baseline(
            _config(args.config), args.data, args.format, args.out, header=not args.no_header
        )
    if command == "analyze":
        from analyzer.batch import run_analyze_once

        return run_analyze_once(load_config(args.config), start=args.start, end=args.end)
    if command == "demo":
        from modelmon.demo import run_demo

        return run_demo(workdir=args.dir, seconds=args.seconds, keep=args.keep)
    if command == "status":
        from modelmon.status_cli import run_status

        return run_status(url=args.url, config=_config(args.config), raw=args.json)
    raise AssertionError(f"unhandled command {command}")  # argparse only allows the above


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return run(args)
    except ConfigError as exc:
        print(f"modelmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
