"""Starting, watching and stopping the processes of tests, benchmarks and the demo: a free
loopback port, a worker on the embedded broker, its readiness, a metric from its `/metrics`, and
stopping a child by PID (SIGTERM, then SIGKILL)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from detectors.fmt import printable

__all__ = ["embedded_worker_env", "free_port", "metric_value", "start_worker", "stop_process", "stop_worker", "tail",
           "wait_until_serving"]

#: A clean Faust shutdown takes ~2 s; more means it is retrying a broker that is gone (a
#: terminal's Ctrl-C reaches the embedded broker too) and only SIGKILL ends it.
WORKER_STOP_TIMEOUT = 5.0


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """Stop a child by PID: SIGTERM, wait up to `timeout` s, then SIGKILL (a worker whose broker
    is gone can ignore SIGTERM); returns once it has exited."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A loopback TCP port nothing listens on right now.

    >>> 0 < free_port() < 65536
    True
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_worker_env(workdir: Path, *, app_id: str, web_port: int) -> dict[str, str]:
    """The environment of a worker on the embedded broker, its files under `workdir`
    (add SKEWWATCH_BROKER once the broker is up)."""
    env = dict(os.environ)
    env.update(
        SKEWWATCH_APP_ID=app_id,
        SKEWWATCH_BASELINES=str(workdir / "baselines"),
        SKEWWATCH_DATA_DIR=str(workdir / "data"),
        SKEWWATCH_WEB_HOST="127.0.0.1",
        SKEWWATCH_WEB_PORT=str(web_port),
        # The embedded broker's ListOffsets bug needs one record per produced batch.
        SKEWWATCH_SINGLE_RECORD_BATCHES="true",
    )
    (workdir / "baselines").mkdir(parents=True, exist_ok=True)
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`skewwatch worker` with this environment, its output to `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.commands.cli", "worker"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            # Own session: a terminal Ctrl-C reaches only its parent, which stops the worker
            # before the broker (the other order leaves the worker retrying a dead broker).
            start_new_session=True,
        )


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float) -> str | None:
    """Poll `url` until it answers 200; the problem as text if `process` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"the process exited with code {process.returncode} before serving {url}"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return None
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return f"{url} did not answer within {timeout:.0f} s"


def metric_value(text: str, name: str, labels: str = "") -> float:
    """One sample's value from Prometheus text (0 when absent).

    >>> metric_value('skewwatch_events_total{model="credit"} 12.0', "skewwatch_events_total", 'model="credit"')
    12.0
    """
    selector = re.escape(f"{{{labels}}}") if labels else ""
    found = re.search(rf"^{re.escape(name)}{selector} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def stop_worker(worker: subprocess.Popen) -> None:
    """Stop a worker started by `start_worker` (`stop_process` with WORKER_STOP_TIMEOUT)."""
    stop_process(worker, WORKER_STOP_TIMEOUT)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    # a worker's log quotes rejected input: its control characters are shown, not obeyed
    return f"{path} (last lines):\n" + "\n".join(map(printable, text[-lines:]))
