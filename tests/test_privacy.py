"""Alerts carry statistics and category labels, not individual requests' values, unless asked."""
import json

import numpy as np
import orjson

from baselines.build import build_baseline_from_columns
from detectors.model import ModelMonitor, MonitorConfig
from stream.commands.cli import main

SECRET = "31337.25"


def _baseline():
    rng = np.random.default_rng(0)
    return build_baseline_from_columns("m", {"salary": rng.normal(50_000, 9_000, 5000)})


def _events():
    rng = np.random.default_rng(1)
    # from event 500 on, salaries arrive as strings ("numbers serialised as text")
    return [{"model": "m", "features": {"salary": float(v) if i < 500 else (SECRET if i % 2 else f"{v:.2f}")}}
            for i, v in enumerate(rng.normal(50_000, 9_000, 3000))]


def _alerts(config=None):
    return [a.to_dict() for a in ModelMonitor(_baseline(), config).update_batch(_events())]


def test_raw_values_are_not_quoted_by_default():
    alerts = _alerts()
    assert any(a["evidence"].get("cause") == "type_change" for a in alerts), [a["diagnosis"] for a in alerts]
    assert SECRET not in json.dumps(alerts)


def test_include_examples_quotes_them():
    alerts = _alerts(MonitorConfig(include_examples=True))
    assert SECRET in json.dumps(alerts)


def test_replay_flag(tmp_path, capsys):
    b = tmp_path / "b.msgpack"
    _baseline().save(b)
    f = tmp_path / "e.jsonl"
    f.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in _events()))
    assert main(["replay", str(f), "--baseline", str(b)]) == 0
    assert SECRET not in capsys.readouterr().out
    assert main(["replay", str(f), "--baseline", str(b), "--include-examples"]) == 0
    assert SECRET in capsys.readouterr().out
