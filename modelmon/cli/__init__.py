"""The ``modelmon`` command line: the only module that imports both packages.

Each command imports its implementation lazily, so ``modelmon proxy`` never pays for scipy and
``modelmon status`` starts at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from modelmon import __version__
from modelmon.config import ConfigError, DaskConfig, ModelmonConfig, load_config

if TYPE_CHECKING:
    from analyzer.ingest.executor import Executor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Usage(Exception):
    """A command that cannot start as asked; the message is one line for stderr."""


class _HELP(argparse.HelpFormatter):
    """Every option's default in its help, unless the help says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _add_config(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        required=required,
        default=argparse.SUPPRESS if required else None,
        help="the modelmon YAML file (`modelmon config example` prints an annotated one)",
    )


def _path_or_url(value: str) -> Path | str:
    """A path, or an ``s3://`` ``gs://`` ``file://`` URL (kept as a ``str``)."""
    if "://" not in value:
        return Path(value)
    from modelmon.config_types import storage_url

    try:
        return storage_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_scheduler(parser: argparse.ArgumentParser) -> None:
    """Where a batch command's map runs (docs/dask.md); the same options on every such command."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="URL",
        help="run the map on this Dask scheduler, e.g. tcp://host:8786 (modelmon[dask]; "
        "default: analyzer.dask.scheduler, else local processes)",
    )
    where.add_argument(
        "--dask-workers",
        type=int,
        default=None,
        metavar="N",
        help="run the map on a Dask LocalCluster of N processes on this machine "
        "(default: analyzer.dask.workers, else local processes without Dask)",
    )


@contextmanager
def _executor(args: argparse.Namespace, config: ModelmonConfig | None) -> Iterator[Executor]:
    from analyzer.ingest.executor import DaskUnavailable, executor_for

    dask = config.analyzer.dask if config is not None else DaskConfig()
    if args.dask_workers is not None and args.dask_workers < 1:
        raise _Usage(f"--dask-workers must be at least 1, got {args.dask_workers}")
    try:
        executor = executor_for(dask, args.scheduler, args.dask_workers)
    except DaskUnavailable as exc:
        raise _Usage(str(exc)) from exc
    try:
        yield executor
    finally:
        executor.close()


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, about: str
) -> argparse.ArgumentParser:
    """A subcommand whose --help shows every option, with its default, ``--log-level`` too."""
    parser = commands.add_parser(name, help=about, description=about, formatter_class=_HELP)
    parser.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,  # absent: the one given before the command (default INFO)
        help="DEBUG, INFO, WARNING or ERROR (also accepted before the command; default: INFO)",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelmon",
        description="Self-hosted model monitoring: a capture proxy and an analyzer.",
        formatter_class=_HELP,
    )
    parser.add_argument("--version", action="version", version=f"modelmon {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_config(_command(commands, "proxy", "run the capture proxy"))
    _add_config(_command(commands, "analyzer", "run the analyzer service"))
    up = _command(
        commands,
        "up",
        "run the proxy and the analyzer together, supervised; the config (both processes' "
        "checks) is validated before anything starts",
    )
    _add_config(up)

    baseline = _command(
        commands, "baseline", "write statistics.json and constraints.json from training data"
    )
    _add_config(baseline, required=False)
    baseline.add_argument(
        "--data",
        type=_path_or_url,
        required=True,
        metavar="PATH|URL",
        help="a file or a capture folder, a path or an s3:// gs:// file:// URL",
    )
    baseline.add_argument(
        "--format",
        choices=["csv", "jsonl", "capture"],
        default=None,
        help="the kind of --data (default: from the file name)",
    )
    baseline.add_argument(
        "--out",
        type=_path_or_url,
        default=None,
        metavar="PATH|URL",
        help="output folder, a path or an s3:// gs:// file:// URL (default: analyzer.baseline's)",
    )
    baseline.add_argument(
        "--no-header", action="store_true", help="CSV without a header: columns _c0 … _cN"
    )
    baseline.add_argument(
        "--model-quality",
        action="store_true",
        help="the model-quality baseline (analyzer.model_quality's attributes name the label, "
        "prediction and probability columns; default --out: its baseline files' folder)",
    )
    baseline.add_argument(
        "--ground-truth",
        type=_path_or_url,
        default=None,
        metavar="PATH|URL",
        help="with --model-quality and a capture folder as --data: SageMaker's ground-truth "
        "folder ({yyyy}/{mm}/{dd}/{hh}/*.jsonl) to join to the captured predictions",
    )
    _add_scheduler(baseline)

    analyze = _command(
        commands,
        "analyze",
        "one monitoring pass over the captured files, then exit (SageMaker's report files); "
        "the continuous service is `modelmon analyzer`",
    )
    _add_config(analyze)
    analyze.add_argument(
        "--once",
        action="store_true",
        help="accepted for clarity: analyze always runs one pass and exits",
    )
    analyze.add_argument(
        "--start", default=None, help="window start (ISO-8601 UTC; default: the oldest file)"
    )
    analyze.add_argument(
        "--end", default=None, help="window end (ISO-8601 UTC; default: the newest record)"
    )
    analyze.add_argument(
        "--ground-truth",
        default=None,
        metavar="PATH|URL",
        help="SageMaker's ground-truth folder ({yyyy}/{mm}/{dd}/{hh}/*.jsonl), a path or an "
        "s3:// gs:// file:// URL: also write the model-quality reports "
        "(default: analyzer.model_quality.ground_truth.dir)",
    )
    analyze.add_argument(
        "--data",
        default=None,
        metavar="PATH|URL",
        help="the capture tree's root ({endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl[.gz] below "
        "it), a path or an s3:// gs:// file:// URL (default: capture.dir)",
    )
    analyze.add_argument(
        "--out",
        default=None,
        metavar="PATH|URL",
        help="where the report folders go, a path or an s3:// gs:// file:// URL "
        "(default: analyzer.reports_dir)",
    )
    _add_scheduler(analyze)

    backfill = _command(
        commands,
        "backfill",
        "fill the analyzer's database from an existing capture tree (the past: status, runs, "
        "reports); files already read are skipped, so it is safe to run again",
    )
    _add_config(backfill)
    backfill.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="DIR|URL",
        help="the capture tree: a folder, or s3://bucket/prefix, gs://…, file:///… (the "
        "{endpoint}/{variant}/yyyy/mm/dd/hh/ files below it)",
    )
    backfill.add_argument(
        "--start", default=None, help="from this hour (ISO-8601 UTC; default: retention_days ago)"
    )
    backfill.add_argument(
        "--end", default=None, help="before this time (ISO-8601 UTC; default: now)"
    )
    _add_scheduler(backfill)

    demo = _command(commands, "demo", "toy model + proxy + analyzer + drifting traffic")
    demo.add_argument(
        "--dir", type=Path, default=None, help="working folder (default: a temporary one)"
    )
    demo.add_argument(
        "--seconds",
        type=float,
        default=90.0,
        help="give up after this long (with --keep: run until then)",
    )
    demo.add_argument("--keep", action="store_true", help="keep running after the drift shows")

    status = _command(commands, "status", "print the monitor status")
    status.add_argument(
        "--url", default=None, help="analyzer or proxy URL (default: proxy.listen of --config)"
    )
    _add_config(status, required=False)
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    config = _command(commands, "config", "print the annotated example config, or check a file")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    actions.add_parser(
        "example",
        help="print the annotated example config (save it, then edit proxy.upstream)",
        description="Print the annotated example config shipped with modelmon.",
        formatter_class=_HELP,
    )
    check = actions.add_parser(
        "check",
        help="validate a config file and print it resolved (every default filled in)",
        description="Validate a config file as every command does; print the resolved "
        "config, or the errors (exit 2).",
        formatter_class=_HELP,
    )
    _add_config(check)
    return parser


def _config(path: Path | None) -> ModelmonConfig | None:
    return load_config(path) if path is not None else None


def run(args: argparse.Namespace) -> int:
    command = args.command
    # The config is read before a command's own imports: a bad file fails at once, cheaply.
    config = _config(getattr(args, "config", None))
    if command == "proxy":
        from capture_proxy.main import run_proxy

        assert config is not None  # --config is required
        return run_proxy(config)
    if command == "analyzer":
        from analyzer.service.app import run_service

        assert config is not None
        return run_service(config)
    if command == "up":
        from modelmon.cli.up import run_up

        return run_up(args.config, config)
    if command == "baseline":
        from modelmon.cli.baseline import run_baseline

        with _executor(args, config) as executor:
            return run_baseline(
                config,
                args.data,
                args.format,
                args.out,
                header=not args.no_header,
                executor=executor,
                model_quality=args.model_quality,
                ground_truth=args.ground_truth,
            )
    if command == "analyze":
        from analyzer.ingest.batch import run_analyze_once

        assert config is not None
        with _executor(args, config) as executor:
            return run_analyze_once(
                config,
                start=args.start,
                end=args.end,
                ground_truth=args.ground_truth,
                executor=executor,
                data=args.data,
                out=args.out,
            )
    if command == "backfill":
        from modelmon.cli.backfill import run_backfill_command

        assert config is not None
        with _executor(args, config) as executor:
            return run_backfill_command(config, args.source, args.start, args.end, executor)
    if command == "demo":
        from modelmon.cli.demo import run_demo

        return run_demo(workdir=args.dir, seconds=args.seconds, keep=args.keep)
    if command == "config":
        from modelmon.cli.config_cmd import run_config

        return run_config(args.config_command, config)
    if command == "status":
        from modelmon.cli.status import run_status

        return run_status(url=args.url, config=config, raw=args.json)
    raise AssertionError(f"unhandled command {command}")  # argparse only allows the above


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return run(args)
    except (ConfigError, _Usage) as exc:
        print(f"modelmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
