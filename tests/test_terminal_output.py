"""Human-readable output never passes a producer's control characters to the terminal.

Field names, categories, model names and versions come from the events (or the training data); an
ESC, BEL, CR, newline or bidirectional override in one must be shown escaped by every output meant
for a person: `skewwatch alerts` and the demo (both print with `format_alert`), `replay --pretty`
and its summary, `baseline show`, `report` (its summary and its page), the worker's log lines.
"""
from __future__ import annotations

import asyncio
import io
import logging
import re
from types import SimpleNamespace

import orjson
from mode.utils.logging import ExtensionFormatter
from prometheus_client import CollectorRegistry

from baselines.build import build_baseline_from_columns
from baselines.show import format_baseline
from stream.commands.alerts import format_alert
from stream.commands.cli import main
from stream.devkit import demo
from stream.worker.lifecycle import Worker
from stream.worker.metrics import Metrics
from stream.worker.service import DetectionService

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\r\n\u202e"
#: what a terminal would act on: C0 controls other than newline, DEL, C1 controls, bidi overrides
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: the hostile text as `printable` shows it
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\x0a\\u202e"


def _alert() -> dict:
    return {
        "kind": "data_quality", "severity": "warning", "model": "credit" + HOSTILE, "model_version": "1" + HOSTILE,
        "feature": "income" + HOSTILE, "detector": "unseen" + HOSTILE, "statistic": 41.0, "threshold": 38.0,
        "p_value": None, "events_seen": 120, "ts": None, "diagnosis": "new values " + HOSTILE,
        "baseline": {"top": {"US" + HOSTILE: 0.5}, "mean" + HOSTILE: 1.0},
        "current": {"top": {"FR" + HOSTILE: 0.5}, "mean" + HOSTILE: 2.0},
    }


def _clean(text: str, lines: int | None = None) -> None:
    """No control character a terminal would act on; the hostile name's newline escaped (so the
    text has `lines` lines, when given)."""
    assert not CONTROL.search(text), repr(text)
    if lines is not None:
        assert text.count("\n") == lines, repr(text)


def test_the_alert_printer_escapes_control_characters_from_the_alert():
    text = format_alert(_alert())
    _clean(text, format_alert({**_alert(), "feature": "income"}).count("\n"))
    assert "income" + SHOWN in text  # still readable: the escape is shown, not dropped


class _Records:
    """An alert topic's consumer (`async for record in consumer`) holding the given values."""

    def __init__(self, values: list[bytes]):
        self._values = iter(values)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return SimpleNamespace(value=next(self._values))
        except StopIteration:
            raise StopAsyncIteration from None


def test_the_demo_escapes_the_alerts_it_prints_and_its_summary(capsys):
    stats = demo._Stats()
    hostile = {**_alert(), "kind": "drift" + HOSTILE}
    asyncio.run(demo._print_alerts(_Records([orjson.dumps(hostile)]), stats))
    printed = capsys.readouterr().out
    _clean(printed, 2 + format_alert(hostile).count("\n") + 2)
    assert "income" + SHOWN in printed
    summary = demo._summary(stats)
    _clean(summary, demo._summary(demo._Stats()).count("\n") + 2)  # a header and the kind's line
    assert "drift" + SHOWN in summary


def _hostile_files(tmp_path):
    """A baseline whose model, numeric and categorical feature names and category are hostile, and
    events with a missing value, an invalid one, a hostile unexpected field and an unseen hostile
    category in the middle."""
    model, amount, city = "m" + HOSTILE, "amount" + HOSTILE, "city" + HOSTILE
    n = 2000
    base = build_baseline_from_columns(model, {amount: [float(i % 100) for i in range(n)],
                                               city: [("Paris" + HOSTILE, "Lyon")[i % 2] for i in range(n)]},
                                       categorical=[city])
    path = tmp_path / "b.msgpack"
    base.save(path)
    events = []
    for i in range(3000):
        features = {amount: float(i % 100) + (500.0 if i >= 1000 else 0.0), city: ("Paris" + HOSTILE, "Lyon")[i % 2]}
        if i >= 1500:
            features[city] = "new" + HOSTILE
            features["extra" + HOSTILE] = 1
        if i % 50 == 0:
            features[amount] = None if i % 100 else "n/a" + HOSTILE
        events.append({"model": model, "model_version": "2" + HOSTILE, "features": features})
    events.append({"model": "ghost" + HOSTILE, "features": {}})
    evs = tmp_path / "e.jsonl"
    evs.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path, evs


def test_replay_pretty_and_its_summary_escape_names_from_the_baseline_and_the_events(tmp_path, capsys):
    baseline, evs = _hostile_files(tmp_path)
    assert main(["replay", str(evs), "--baseline", str(baseline), "--pretty", "--include-examples"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"extra\\+x1b", out) and re.search(r"new\\+x1b", out)  # alerts quoting them were printed
    _clean(out)
    _clean(err, len([line for line in err.split("\n") if line.startswith("replay: ")]))
    assert "amount" + SHOWN + " (" in err and "'ghost" + SHOWN in err


def test_report_escapes_names_in_its_summary_and_its_page(tmp_path, capsys):
    baseline, evs = _hostile_files(tmp_path)
    page = tmp_path / "r.html"
    assert main(["report", str(evs), "--baseline", str(baseline), "-o", str(page)]) == 0
    err = capsys.readouterr().err
    _clean(err, len([line for line in err.split("\n") if line.startswith(("replay: ", "report: "))]))
    html = page.read_text()
    assert not CONTROL.search(html.replace("\t", "")), [m.group() for m in CONTROL.finditer(html)][:5]
    assert "amount" + SHOWN in html


def test_the_worker_log_escapes_names_from_baseline_files(tmp_path):
    """The worker's log (Faust sets up its handlers; `Worker` adds its filters to them) quotes file
    and model names: a hostile baseline file, and a broken one, cannot write raw control characters."""
    build_baseline_from_columns("m" + HOSTILE, {"x": [1.0, 2.0]}).save(tmp_path / f"m{HOSTILE}.msgpack")
    (tmp_path / f"broken{HOSTILE}.msgpack").write_bytes(b"\x00 not a baseline")
    out = io.StringIO()
    root = logging.getLogger("skewwatch.test-terminal-output")  # a stand-in for the root logger
    handler = logging.StreamHandler(out)
    handler.setFormatter(ExtensionFormatter(out, fmt="%(message)s"))  # Faust's (it formats args itself)
    root.addHandler(handler)
    worker = Worker.__new__(Worker)  # only its logging hook: Faust's part of it reads `spinner`
    worker.spinner = None
    worker.on_setup_root_logger(root, logging.INFO)
    service = DetectionService(str(tmp_path), Metrics(CollectorRegistry()))
    worker_log = logging.getLogger("skewwatch.worker")
    worker_log.addHandler(root.handlers[0])
    worker_log.setLevel(logging.INFO)
    try:
        service.rescan()
        service.rescan()  # a file that fails to load is judged once it looks the same on two scans
    finally:
        worker_log.removeHandler(root.handlers[0])
    text = out.getvalue()
    assert "loaded from" in text and "disabled" in text, text
    _clean(text, 2)
    assert f"m{SHOWN}.msgpack" in text and f"broken{SHOWN}.msgpack" in text


def test_baseline_show_escapes_control_characters_in_names_and_categories():
    b = build_baseline_from_columns("m" + HOSTILE, {"f" + HOSTILE: [1.0, 2.0], "c": ["a" + HOSTILE, "b"]},
                                    categorical=["c"])
    text = format_baseline(b)
    assert not CONTROL.search(text), repr(text)
    assert "f\\x1b]0;pwned" in text


def test_escaping_keeps_the_layout_and_escapes_a_newline_inside_a_name():
    b = build_baseline_from_columns("m", {"two\nlines": [1.0, 2.0]})
    text = format_baseline(b)
    assert "two\\x0alines" in text
    assert text.count("\n") == format_baseline(build_baseline_from_columns("m", {"x": [1.0, 2.0]})).count("\n")
    assert "\n" in format_alert(_alert())


def test_baseline_build_escapes_column_names_in_its_warnings_errors_and_summary(tmp_path, capsys):
    """Column names come from the training file: an output-like one is named in a warning, all of
    them in the error for a missing --exclude column, the model in the summary line."""
    rows = [[f"{i % 7}.5", f"{i % 3}"] for i in range(1200)]
    train = tmp_path / "t.csv"
    # an output-like name is matched after stripping whitespace: CR and newline around it still warn
    columns = f'"\r\nscore\r\n","amount{HOSTILE}"'
    train.write_text(columns + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    out = tmp_path / "b.msgpack"
    assert main(["baseline", "build", str(train), "--model", "m" + HOSTILE, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "--exclude \\x0d\\x0ascore\\x0d\\x0a" in err and "m" + SHOWN in err, err
    _clean(err, 2)  # the warning and the summary
    assert main(["baseline", "build", str(train), "--model", "m", "--exclude", "nope", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "amount" + SHOWN in err, err
    _clean(err, 1)
