"""The `skewwatch` command itself (the subcommands have their own tests)."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_version_prints_the_installed_version_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "stream.commands.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"skewwatch {version('skewwatch')}"


def test_the_embedded_broker_listens_where_the_worker_looks_by_default():
    """`skewwatch broker` then `skewwatch worker`, both without --broker/--port, find each other."""
    from stream.commands.cli import build_parser
    from stream.worker import config

    args = build_parser(["broker"]).parse_args(["broker"])
    assert config.load({}).broker == f"kafka://127.0.0.1:{args.port}" == "kafka://127.0.0.1:9092"


def test_faust_start_up_banner_only_at_debug():
    """Faust's 17-line start-up table is noise in an operator's log at INFO (see also the worker's log
    in tests/integration/test_worker_output.py)."""
    import doctest

    from stream.worker import command

    assert doctest.testmod(command).failed == 0
