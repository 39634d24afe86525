"""`skewwatch worker`: the stream service (the same as `faust -A stream.worker.app worker`).

The flags are copied into the environment before `stream.worker.app` is imported, since the Faust
app is a module-level object configured from the environment (stream/worker/config.py).
"""
from __future__ import annotations

import argparse
import sys

from stream.worker import config
from stream.worker.baseline_dir import directory_problem

__all__ = ["configure", "faust_argv", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the worker's flags (one per setting of stream/worker/config.py) to `parser`."""
    config.add_arguments(parser)


def faust_argv(cfg) -> list[str]:
    """The command line handed to Faust's own `worker` command for the settings `cfg`.

    Faust prints a 17-line start-up table (its version, the app id, the transport, the directories)
    on stdout whatever the log level; `--quiet` keeps it (and the terminal's progress spinner) for
    `--log-level debug`, where such detail belongs. The worker's own start-up lines are logged.

    >>> from stream.worker import config
    >>> faust_argv(config.load({}))
    ['skewwatch worker', '--quiet', 'worker', '-l', 'info', '--web-host', '127.0.0.1', '--web-port', '6066']
    >>> faust_argv(config.load({"SKEWWATCH_LOG_LEVEL": "debug"}))[:3]
    ['skewwatch worker', 'worker', '-l']
    """
    quiet = [] if cfg.log_level.lower() == "debug" else ["--quiet"]
    return ["skewwatch worker", *quiet, "worker", "-l", cfg.log_level,
            "--web-host", cfg.web_host, "--web-port", str(cfg.web_port)]


def run(args: argparse.Namespace) -> int:
    """Run the worker until it is stopped; the exit status (2: bad settings or baselines directory)."""
    config.apply_to_env(args)
    try:
        cfg = config.load()
    except ValueError as e:
        print(f"skewwatch worker: {e}", file=sys.stderr)
        return 2
    # Refused here, before anything connects: a worker without its directory would consume the
    # input topic and dead-letter every event. (An existing directory without a usable baseline
    # is waited for instead: stream.worker.agents.wait_for_baselines.)
    problem = directory_problem(cfg.baselines)
    if problem:
        print(f"skewwatch worker: {problem}", file=sys.stderr)
        return 2
    from stream.worker.app import app

    sys.argv = faust_argv(cfg)
    try:
        app.main()  # Faust's own worker command: imports the agents and pages (autodiscover), signals, logging
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
