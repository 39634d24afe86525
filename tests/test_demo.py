"""The demo's synthetic credit model, the alert pretty-printer, and `skewwatch demo` end to end."""
from __future__ import annotations

import doctest
import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import orjson
import pytest

from baselines.build import build_baseline_from_columns
from detectors.events import decode_message
from stream.commands import alerts as alerts_cmd
from stream.commands import cli
from stream.commands.alerts import bootstrap_servers, decode_alert, format_alert
from stream.devkit import processes
from stream.devkit.synthetic import credit, scenarios


# ---- the synthetic credit model -------------------------------------------------------------
def test_training_columns_have_every_feature_typed_as_documented():
    cols = credit.training(5_000, seed=3)
    assert set(cols) == set(credit.FEATURES) | {"prediction", "confidence", "label"}
    assert all(len(v) == 5_000 for v in cols.values())
    assert set(cols["term_months"].tolist()) == {12, 24, 36, 60}
    assert set(cols["channel"].tolist()) == {"web", "mobile", "branch"}
    assert set(cols["purpose"].tolist()) == set(credit.PURPOSES.tolist())
    assert cols["has_cosigner"].dtype == bool
    assert cols["num_open_accounts"].dtype.kind == "i"
    # income is lognormal: right-skewed, mean above median
    assert np.mean(cols["income"]) > np.median(cols["income"]) * 1.05
    missing = sum(v is None for v in cols["employment_years"])
    assert 20 <= missing <= 90  # ~1% of 5000
    assert set(cols["prediction"].tolist()) == {0, 1}
    assert np.all((cols["confidence"] >= 0.5) & (cols["confidence"] <= 1.0))
    # the model is informative: better than always predicting "no default"
    assert np.mean(cols["prediction"] == cols["label"]) > 1 - np.mean(cols["label"])


def test_training_is_seeded():
    a, b, c = credit.training(500, seed=1), credit.training(500, seed=1), credit.training(500, seed=2)
    assert a["income"].tolist() == b["income"].tolist()
    assert a["income"].tolist() != c["income"].tolist()


def test_traffic_runs_the_phases_in_order_with_their_lengths():
    phases = credit.scenario(300, 200, 100, None)
    seen = [phase.name for phase, _ in itertools.islice(credit.traffic(seed=4, phases=phases), 1_000)]
    assert seen[:600] == ["normal"] * 300 + ["shift"] * 200 + ["missing"] * 100
    assert seen[600:] == ["confidence"] * 400  # the last phase never ends


def test_traffic_events_follow_the_event_contract():
    events = [e for _, e in itertools.islice(credit.traffic(seed=5), 200)]
    decoded, rejects = decode_message(orjson.dumps(events))
    assert rejects == [] and len(decoded) == 200
    assert {e["model"] for e in events} == {credit.MODEL}
    assert len({e["request_id"] for e in events}) == 200
    assert all(set(e["features"]) == set(credit.FEATURES) for e in events)
    assert all(0.5 <= e["confidence"] <= 1 and e["prediction"] in (0, 1) for e in events)
    assert msgpack.unpackb(msgpack.packb(events)) == events  # plain Python values only


def _phase_events(n_per_phase: int = 4_000) -> dict[str, list[dict]]:
    by_phase: dict[str, list[dict]] = {}
    for phase, event in credit.traffic(seed=6, phases=credit.scenario(*(n_per_phase,) * 4)):
        by_phase.setdefault(phase.name, []).append(event)
    return by_phase


def test_each_phase_adds_its_problem():
    by_phase = _phase_events()

    def income(name):
        return np.median([e["features"]["income"] for e in by_phase[name]])

    def share(name, predicate):
        return np.mean([predicate(e) for e in by_phase[name]])

    def mobile(e):
        return e["features"]["channel"] == "mobile"

    def missing(e):
        return e["features"]["employment_years"] is None

    assert income("shift") / income("normal") == pytest.approx(0.7, abs=0.04)
    assert share("normal", mobile) == pytest.approx(0.30, abs=0.03)
    assert share("shift", mobile) == pytest.approx(0.55, abs=0.03)
    assert share("normal", missing) < 0.02 and share("shift", missing) < 0.02
    assert share("missing", missing) == pytest.approx(0.30, abs=0.03)
    conf = {name: np.mean([e["confidence"] for e in by_phase[name]]) for name in by_phase}
    assert conf["confidence"] < conf["missing"] - 0.1
    # problems pile up: the later phases keep the earlier ones
    assert income("confidence") / income("normal") == pytest.approx(0.7, abs=0.04)
    assert share("confidence", missing) == pytest.approx(0.30, abs=0.03)


def test_normal_traffic_matches_the_training_baseline():
    cols = credit.training(20_000, seed=0)
    baseline = build_baseline_from_columns(
        credit.MODEL,
        {name: cols[name] for name in credit.FEATURES},
        confidence=cols["confidence"].tolist(),
        prediction=cols["prediction"],
        categorical=credit.CATEGORICAL,
    )
    assert set(baseline.features) == set(credit.FEATURES)
    assert {n for n, p in baseline.features.items() if p.kind == "categorical"} == set(credit.CATEGORICAL)
    normal = _phase_events(2_000)["normal"]
    for name in ("income", "credit_score", "debt_to_income"):
        profile = baseline.features[name]
        served = np.array([e["features"][name] for e in normal])
        assert abs(served.mean() - profile.mean) < 0.1 * profile.std
    missing_rate = baseline.features["employment_years"].missing_rate
    assert missing_rate == pytest.approx(credit.EMPLOYMENT_MISSING_RATE, abs=0.005)


@pytest.mark.parametrize("module", [credit, alerts_cmd, cli, processes, scenarios], ids=lambda m: m.__name__)
def test_doctests(module):
    # stream/ is not in pytest's doctest paths (stream.worker.app builds a Faust app on import):
    # the examples of the modules that have some run here
    assert doctest.testmod(module).failed == 0


# ---- the alert pretty-printer ------------------------------------------------------------------
CATEGORY_ALERT = {
    "alert_id": "a1", "kind": "drift", "model": "credit", "model_version": "1", "feature": "channel",
    "detector": "psi", "statistic": 0.2612, "threshold": 0.2, "p_value": 3.2e-12, "events_seen": 18_000,
    "ts": 1764000204.1, "severity": "warning",
    "diagnosis": "mobile share up from 30% to 55%: real population change",
    "baseline": {"top": {"web": 0.55, "mobile": 0.30, "branch": 0.15}, "missing_rate": 0.0},
    "current": {"top": {"web": 0.35, "mobile": 0.55, "branch": 0.10}, "missing_rate": 0.0},
    "evidence": {},
}


def test_format_alert_shows_the_test_the_diagnosis_and_the_category_shares():
    text = format_alert(CATEGORY_ALERT)
    lines = text.splitlines()
    assert re.match(r"\d\d:\d\d:\d\d  WARNING  drift  credit v1 / channel$", lines[0])
    assert lines[1] == "  psi statistic 0.261 > threshold 0.2 (p=3.2e-12) after 18,000 events"
    assert lines[2] == "  diagnosis: mobile share up from 30% to 55%: real population change"
    assert "baseline: web 55%, mobile 30%, branch 15%" in text
    assert "current:  web 35%, mobile 55%, branch 10%" in text


def test_format_alert_copes_with_a_sparse_alert():
    text = format_alert({"kind": "serving", "model": "credit", "feature": None, "detector": "version",
                         "statistic": 1, "threshold": 0, "severity": "critical", "ts": None,
                         "baseline": {}, "current": {"model_version": "4"}})
    assert text.splitlines()[0] == "--:--:--  CRITICAL  serving  credit"
    assert "model_version" in text and "4" in text
    assert "diagnosis" not in text


def test_format_alert_heads_an_update_record_as_the_update_of_its_alert():
    # an update record was printed like a second alert of the same drift
    update = {**CATEGORY_ALERT, "alert_id": "a1b2c3", "update": True, "severity": "critical",
              "diagnosis": "income is 12x its training values: a unit change (years -> months)",
              "evidence": {"update": {"first_cause": "scale_shift", "events": [2009, 2104]}}}
    lines = format_alert(update).splitlines()
    assert re.match(r"\d\d:\d\d:\d\d  UPDATE  drift  credit v1 / channel$", lines[0])
    assert lines[1] == "  settles alert a1b2c3 (first diagnosed as scale_shift)"
    assert "UPDATE" not in format_alert(CATEGORY_ALERT)


def test_decode_alert_reads_json_and_msgpack():
    assert decode_alert(orjson.dumps(CATEGORY_ALERT)) == CATEGORY_ALERT
    assert decode_alert(msgpack.packb(CATEGORY_ALERT)) == CATEGORY_ALERT


def test_bootstrap_servers_accepts_faust_urls():
    assert bootstrap_servers("kafka://k1:9092;kafka://k2:9092") == "k1:9092,k2:9092"
    assert bootstrap_servers("k1:9092,k2:9092") == "k1:9092,k2:9092"


# ---- `skewwatch demo` end to end ---------------------------------------------------------------
ALERT_HEADLINE = re.compile(r"^\d\d:\d\d:\d\d  (WARNING|CRITICAL)  (\w+)  credit v1")


def _lines_of(process: subprocess.Popen) -> tuple[queue.Queue[str], threading.Thread]:
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in process.stdout], daemon=True)
    reader.start()
    return lines, reader


def _follow_alerts_prints_one(broker_url: str) -> str:
    """`skewwatch alerts --from-beginning` on the demo's broker: the first alert block's headline."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "stream.commands.cli", "alerts", "--broker", broker_url, "--from-beginning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines, _ = _lines_of(follower)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if ALERT_HEADLINE.match(line):
                return line
        return ""
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(10)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
def test_demo_prints_readable_alerts_and_ctrl_c_stops_everything():
    """The demo shows drift, data-quality and confidence alerts within ~30 s, names a status page that
    answers, `skewwatch alerts` follows the same topic, Ctrl-C ends the demo, its worker and its broker,
    and the worker's log it named is still there afterwards."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "stream.commands.cli", "demo", "--duration", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines, reader = _lines_of(demo)
    output: list[str] = []
    pids: list[int] = []
    broker_url = ""
    log_path = None
    kinds: set[str] = set()
    try:
        deadline = time.monotonic() + 40  # the 30 s, plus slack for a loaded CI machine
        while time.monotonic() < deadline and not {"drift", "data_quality", "confidence_drop"} <= kinds:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert demo.poll() is None, "\n".join(output)
                continue
            output.append(line)
            if m := re.search(r"embedded broker on (\S+) \(pid (\d+)\); worker pid (\d+), log (\S+)$", line):
                broker_url, pids = m.group(1), [int(m.group(2)), int(m.group(3))]
                log_path = Path(m.group(4))
            if m := ALERT_HEADLINE.match(line):
                kinds.add(m.group(2))
        text = "\n".join(output)
        assert any(line.startswith("metrics: http://127.0.0.1:") for line in output), text
        [status_url] = [m.group(1) for line in output
                        if (m := re.match(r"status page: (http://127\.0\.0\.1:\d+/) ", line))]
        with urllib.request.urlopen(status_url, timeout=5) as response:
            assert response.status == 200 and "credit" in response.read().decode()
        assert {"drift", "data_quality", "confidence_drop"} <= kinds, text
        assert "  diagnosis: " in text
        assert _follow_alerts_prints_one(broker_url), "skewwatch alerts printed no alert"
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 130
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
            for pid in pids:  # a killed demo cannot stop its children: do it here
                if _pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
    reader.join(10)  # the demo has exited: its stdout is at EOF
    while not lines.empty():
        output.append(lines.get())
    assert any(line.startswith("summary: ") for line in output), "\n".join(output)
    assert output[-1] == f"worker log kept: {log_path}"
    assert "baseline of model 'credit' loaded" in log_path.read_text(errors="replace")
    log_path.unlink()
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_pid_alive(p) for p in pids), "the demo left a broker or worker running"
