"""Human-readable output never passes a producer's control characters to the terminal.

Field names, categories, model names and versions come from the events; an ESC or BEL in one must be
shown escaped by `skewwatch alerts`, the demo (both print with `format_alert`) and `baseline show`.
"""
from __future__ import annotations

import re

from baselines.build import build_baseline_from_columns
from baselines.show import format_baseline
from stream.commands.alerts import format_alert

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\r\u202e"
#: what a terminal would act on: C0 controls other than newline, DEL, C1 controls, bidi overrides
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _alert() -> dict:
    return {
        "kind": "data_quality", "severity": "warning", "model": "credit" + HOSTILE, "model_version": "1" + HOSTILE,
        "feature": "income" + HOSTILE, "detector": "unseen" + HOSTILE, "statistic": 41.0, "threshold": 38.0,
        "p_value": None, "events_seen": 120, "ts": None, "diagnosis": "new values " + HOSTILE,
        "baseline": {"top": {"US" + HOSTILE: 0.5}, "mean" + HOSTILE: 1.0},
        "current": {"top": {"FR" + HOSTILE: 0.5}, "mean" + HOSTILE: 2.0},
    }


def test_the_alert_printer_escapes_control_characters_from_the_alert():
    text = format_alert(_alert())
    assert not CONTROL.search(text), repr(text)
    assert "income\\x1b]0;pwned\\x07" in text  # still readable: the escape is shown, not dropped


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
