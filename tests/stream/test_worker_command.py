"""`skewwatch worker` refuses to start on a baselines directory it cannot read."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_the_worker_refuses_a_baselines_directory_it_cannot_read(tmp_path, kind):
    """One line on stderr and exit 2, before it connects to anything (the broker here does not
    exist): a worker without baselines would otherwise consume the topic and dead-letter it."""
    path = tmp_path / "baselines"
    if kind == "a file":
        path.write_text("")
    env = dict(os.environ, SKEWWATCH_BROKER="kafka://127.0.0.1:9", SKEWWATCH_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-m", "stream.commands.cli", "worker", "--baselines", str(path)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    why = "No such file or directory" if kind == "missing" else "Not a directory"
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [f"skewwatch worker: cannot read the baselines directory {path}: {why}"]
