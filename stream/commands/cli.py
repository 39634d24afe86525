"""The `skewwatch` command. Each subcommand lives in its own module exposing
`configure(parser)` and `run(args) -> int`; only the chosen one is imported, so `baseline`
and `replay` start without loading Faust."""
from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["COMMANDS", "build_parser", "main"]

#: subcommand -> (module exposing `configure(parser)` and `run(args) -> int`, one-line help)
COMMANDS = {
    "baseline": ("stream.commands.baseline", "build or inspect a training baseline"),
    "replay": ("stream.commands.replay",
               "run the monitors over events (JSONL, msgpack) or a table (CSV, Parquet); alerts to stdout"),
    "worker": ("stream.worker.command", "run the stream service (Faust worker) against Kafka"),
    "broker": ("stream.devkit.broker", "run the embedded Kafka-protocol broker (Tansu) on 127.0.0.1"),
    "demo": ("stream.devkit.demo", "embedded broker + worker + synthetic traffic that drifts"),
    "alerts": ("stream.commands.alerts", "follow the alert topic and print alerts readably"),
    "report": ("stream.report.command",
               "a self-contained HTML report of a replay: distributions, statistics over time, diagnoses"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The `skewwatch` argument parser; only the subcommand `argv` names is configured (its module imported).

    Parameters
    ----------
    argv
        The arguments after the program name; their first one chooses the subcommand.

    Returns
    -------
    argparse.ArgumentParser
        The parser; the chosen subcommand's arguments carry its module as ``_module``.

    Examples
    --------
    >>> argv = ["baseline", "show", "credit.baseline"]
    >>> args = build_parser(argv).parse_args(argv)
    >>> args.command, args.baseline_command, args.baseline, args._module
    ('baseline', 'show', 'credit.baseline', 'stream.commands.baseline')
    """
    parser = argparse.ArgumentParser(
        prog="skewwatch",
        description="Streaming train-serve skew and drift detection for ML models.",
    )
    parser.add_argument("--version", action="version", version=f"skewwatch {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if argv and argv[0] == name:
            importlib.import_module(module).configure(p)
            p.set_defaults(_module=module)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skewwatch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """Run `skewwatch` with `argv` (default: the process's arguments); returns the exit status.

    Ctrl-C ends the command with status 130. The `skewwatch` console script and
    ``python -m stream.commands.cli`` call it; tests call it with an argument list.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return importlib.import_module(args._module).run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
