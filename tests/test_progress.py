"""The status line of long `replay` / `report` runs (issue 18, item 4): on a terminal only, a few
redraws a second at most, percent and ETA when the input's size is known, erased at the end."""
import doctest
import io
import re

import numpy as np
import orjson
import pytest

from baselines.build import build_baseline_from_columns
from stream.commands import progress
from stream.commands.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
LINE = re.compile(r"\r\x1b\[K([^\r]*)")


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    rng = np.random.default_rng(5)
    build_baseline_from_columns("credit", {"x": rng.normal(0, 1, 2000)}).save(d / "b.msgpack")
    for k in range(2):
        events = [{"model": "credit", "features": {"x": float(v)}} for v in rng.normal(0, 1, 3000)]
        (d / f"e{k}.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return d


def test_nothing_but_on_a_terminal():
    assert progress.status_line("replay", 100, io.StringIO()) is None
    assert isinstance(progress.status_line("replay", 100, Terminal()), progress.StatusLine)


def test_redrawn_a_few_times_a_second_at_most_and_erased_at_the_end():
    out, clock = Terminal(), Clock(0.01)
    line = progress.StatusLine("replay", 10_000, out, clock=clock)
    for i in range(1, 1001):  # 10 s of updates, 100 a second
        line.update(i * 100, i * 10)
    drawn = LINE.findall(out.getvalue())
    assert 30 <= len(drawn) <= 10 * (1 / progress.INTERVAL) and drawn[0].startswith("replay: ")
    assert all(re.fullmatch(r"replay: [\d,]+ events read, [\d,]+ events/s, \d+%, ETA \d+:\d\d", d) for d in drawn)
    assert re.search(r", 9\d%, ETA 0:00$", drawn[-1])
    line.clear()
    assert out.getvalue().endswith("\r\x1b[K") and not LINE.findall(out.getvalue())[-1]


def test_a_short_run_draws_nothing_and_an_unknown_size_no_percent():
    out = Terminal()
    line = progress.StatusLine("report", None, out, clock=Clock(0.001))
    for i in range(500):  # 0.5 s: within the delay before the first draw
        line.update(i, None)
    line.clear()
    assert out.getvalue() == ""
    for i in range(2000):
        line.update(i, None)
    assert LINE.findall(out.getvalue()) and "%" not in out.getvalue() and "ETA" not in out.getvalue()


@pytest.mark.parametrize("command", ["replay", "report"])
def test_the_commands_draw_it_on_a_terminal_and_erase_it_before_the_summary(files, tmp_path, monkeypatch, command):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    argv = [command, str(files / "e0.jsonl"), str(files / "e1.jsonl"), "--baseline", str(files / "b.msgpack"),
            "--format", "jsonl"]
    assert main(argv + (["-o", str(tmp_path / "r.html")] if command == "report" else ["--batch-size", "100"])) == 0
    err = terminal.getvalue()
    drawn = LINE.findall(err)
    shares = [int(m) for m in re.findall(r"(\d+)%", "\n".join(drawn))]
    assert len(drawn) > 3 and shares == sorted(shares) and 0 < shares[-1] <= 100
    assert "6,000 events read" in "\n".join(drawn)
    summary = err[err.rindex("\r\x1b[K") + 4:]  # erased, then the summary on a clean line
    assert summary.startswith("replay: 6000 events in ")


def test_no_status_line_when_stderr_is_not_a_terminal(files, capsys, monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    assert main(["replay", str(files / "e0.jsonl"), "--baseline", str(files / "b.msgpack")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err and err.startswith("replay: 3000 events in")


def test_doctests():
    # stream/ is not in pytest's doctest paths (stream.worker.app builds a Faust app on import)
    assert doctest.testmod(progress).failed == 0
