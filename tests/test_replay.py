"""`skewwatch replay`: same alerts as the monitors, every bad input counted and dead-lettered."""
import doctest
import json
import os
import subprocess
import sys

import msgpack
import numpy as np
import orjson
import pytest

from baselines.build import build_baseline_from_columns
from detectors.model import ModelMonitor
from stream.commands.cli import main
from tests.stream.helpers import poison_monitors

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def baseline_file(tmp_path_factory):
    rng = np.random.default_rng(7)
    b = build_baseline_from_columns(
        "credit",
        {"x": rng.normal(0.5, 0.2, 20_000), "color": rng.choice(["red", "green", "blue"], 20_000)},
        version="1",
        categorical=("color",),
    )
    path = tmp_path_factory.mktemp("b") / "credit.msgpack"
    b.save(path)
    return path, b


def _events(n, seed=1, shift_at=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 0.2, n)
    if shift_at is not None:
        x[shift_at:] = rng.normal(0.3, 0.4, n - shift_at)
    colors = rng.choice(["red", "green", "blue"], n)
    return [{"model": "credit", "features": {"x": float(v), "color": str(c)}} for v, c in zip(x, colors)]


def _run(capsys, *argv):
    code = main(["replay", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def _strip_ts(alerts):
    return [{k: v for k, v in a.items() if k != "ts"} for a in alerts]


def test_replay_gives_the_monitors_alerts_whatever_the_file_batching(tmp_path, capsys, baseline_file):
    path, baseline = baseline_file
    events = _events(6000, shift_at=3000)
    single = tmp_path / "single.jsonl"
    single.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    lists = tmp_path / "lists.jsonl"
    lists.write_bytes(b"".join(orjson.dumps(events[i:i + 333]) + b"\n" for i in range(0, len(events), 333)))

    expected = [a.to_dict() for a in ModelMonitor(baseline).update_batch(events)]
    assert any(a["feature"] == "x" for a in expected), "the shift must be alerted for this test to mean anything"
    for f, batch in ((single, 1000), (lists, 7)):
        code, alerts, err = _run(capsys, f, "--baseline", path, "--batch-size", batch)
        assert code == 0
        assert _strip_ts(alerts) == _strip_ts(expected)
        assert "6000 events" in err and "rejected 0" in err


def test_msgpack_stream_input(tmp_path, capsys, baseline_file):
    path, baseline = baseline_file
    events = _events(3000, shift_at=1000)
    f = tmp_path / "events.msgpack"
    f.write_bytes(b"".join(msgpack.packb(events[i:i + 100]) for i in range(0, 3000, 100)))
    code, alerts, err = _run(capsys, f, "--baseline", path)
    assert code == 0 and "3000 events" in err
    assert _strip_ts(alerts) == _strip_ts([a.to_dict() for a in ModelMonitor(baseline).update_batch(events)])


def test_bad_input_is_counted_by_reason_and_dead_lettered_never_a_crash(tmp_path, capsys, baseline_file):
    path, _ = baseline_file
    good = orjson.dumps({"model": "credit", "features": {"x": 0.5, "color": "red"}})
    lines = [
        good,
        b"{not json",
        b"[1, 2",
        b'"just a string"',
        b'{"features": {"x": 1}}',
        b'{"model": "credit", "features": [1]}',
        b'{"model": "fraud", "features": {"x": 1}}',
        b"x" * 2000,  # over --max-message-bytes
        b"\xff\xfe\x00garbage",
        orjson.dumps({"model": "credit", "features": {"x": "oops", "color": 5}, "confidence": 9}),
        good,
    ]
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    dl = tmp_path / "dead.jsonl"
    code, _, err = _run(capsys, f, "--baseline", path, "--dead-letter", dl, "--max-message-bytes", 1000)
    assert code == 0
    dead = [json.loads(line) for line in dl.read_text().splitlines()]
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == sorted(["not_decodable", "not_decodable", "not_an_object", "missing_model",
                              "features_not_object", "unknown_model", "oversized", "not_decodable"])
    assert all(d["detail"] and "raw_b64" in d for d in dead)
    assert any(d["raw"] == "{not json" and d["source"] == {"file": str(f), "line": 2} for d in dead)
    assert "3 events" in err  # two good events and the one with bad values
    assert "rejected 8" in err and "unknown_model 1" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["replay", "missing.jsonl", "--baseline", "{b}"], "no such file"),
        (["replay", "{e}", "--baseline", "nope.msgpack"], "cannot read baseline"),
        (["replay", "{e}", "--baseline", "{e}"], "not a msgpack file"),
    ],
)
def test_wrong_arguments_exit_2_with_one_clear_line(tmp_path, baseline_file, argv, message):
    path, _ = baseline_file
    events = tmp_path / "e.jsonl"
    events.write_text('{"model": "credit", "features": {}}\n')
    argv = [a.format(b=path, e=events) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "stream.commands.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("block", [7, 64, 1 << 16])
def test_line_blocks_numbers_lines_and_drops_only_the_long_ones_whatever_the_read_size(monkeypatch, block):
    import io

    from stream.commands import replay

    monkeypatch.setattr(replay, "_READ_BLOCK", block)
    lines = [b"a", b"", b"x" * 100, b"bb", b"y" * 21, b"z" * 20, b"c"]  # no newline after the last one
    got = [(n, line) for first, chunk in replay._line_blocks(io.BytesIO(b"\n".join(lines)), 20)
           for n, line in enumerate(chunk, first)]
    assert got == [(i + 1, line if len(line) <= 20 else None) for i, line in enumerate(lines)]


def test_replay_dead_letters_an_event_a_monitor_raises_on_and_carries_on_like_the_worker(
        tmp_path, capsys, baseline_file, monkeypatch):
    """An engine bug on one event costs that event (dead-lettered as monitor_error) in replay as in
    the worker: both take detectors.processing, and give the alerts of a run without it."""
    from stream.worker.service import PartitionMonitors, Record

    path, baseline = baseline_file
    events = _events(6000, shift_at=3000)
    poison = [10, 4000]
    marked = [dict(e, request_id="poison") if i in poison else e for i, e in enumerate(events)]
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in marked))
    without = [e for i, e in enumerate(events) if i not in poison]
    clean = [a.to_dict() for a in ModelMonitor(baseline).update_batch(without)]
    assert any(a["feature"] == "x" for a in clean), "the shift must be alerted for this test to mean anything"
    poison_monitors(monkeypatch)
    dl = tmp_path / "dead.jsonl"
    code, alerts, err = _run(capsys, f, "--baseline", path, "--dead-letter", dl)
    assert code == 0 and "5998 events" in err and "rejected 2: monitor_error 2" in err
    dead = [json.loads(line) for line in dl.read_text().splitlines()]
    assert [(d["reason"], json.loads(d["raw"])["request_id"]) for d in dead] == [("monitor_error", "poison")] * 2
    assert "TypeError" in dead[0]["detail"]
    assert _strip_ts(alerts) == _strip_ts(clean)

    worker = PartitionMonitors(0, [baseline])
    result = worker.process([Record(orjson.dumps(e), 0, i) for i, e in enumerate(marked)])
    assert [(i, r.reason) for i, r in result.rejects] == [(i, "monitor_error") for i in poison]
    assert _strip_ts(a.to_dict() for a in result.alerts) == _strip_ts(clean)


# ---- the operator's day (issue 18): no false all-clear ----------------------------------------------
def _write_jsonl(path, events):
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def test_events_no_baseline_was_loaded_for_exit_1_naming_their_models_and_the_loaded_ones(
        tmp_path, capsys, baseline_file):
    path, _ = baseline_file
    events = [dict(e, model="fraud") for e in _events(300)] + [dict(e, model="churn") for e in _events(20)]
    code, alerts, err = _run(capsys, _write_jsonl(tmp_path / "e.jsonl", events), "--baseline", path)
    assert code == 1 and alerts == []
    assert "rejected 320: unknown_model 320" in err
    error = err.strip().splitlines()[-1]
    assert error.startswith("skewwatch replay: error: no event was monitored")
    assert "'fraud' (300)" in error and "'churn' (20)" in error and "loaded: 'credit'" in error
    assert error.index("'fraud'") < error.index("'churn'")  # most frequent first


def test_the_models_named_are_bounded_most_frequent_first(tmp_path, capsys, baseline_file):
    path, _ = baseline_file
    events = [dict(e, model=f"m{k}") for k in range(8) for e in _events(10 + k)]
    code, _, err = _run(capsys, _write_jsonl(tmp_path / "e.jsonl", events), "--baseline", path)
    error = err.strip().splitlines()[-1]
    assert code == 1
    assert [f"'m{k}'" in error for k in range(8)] == [False] * 3 + [True] * 5
    assert "3 more models (33 events)" in error


def test_an_input_without_a_single_usable_event_exits_1(tmp_path, capsys, baseline_file):
    path, _ = baseline_file
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, _, err = _run(capsys, empty, "--baseline", path)
    assert code == 1 and "no event was monitored: the input holds no events" in err
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"{oops\nnot json\n")
    code, _, err = _run(capsys, garbage, "--baseline", path)
    assert code == 1 and "no event was monitored: all of the input was rejected (not_decodable 2)" in err


def test_some_events_without_a_baseline_are_named_in_the_summary_and_the_run_is_ok(tmp_path, capsys, baseline_file):
    path, _ = baseline_file
    events = _events(500) + [dict(e, model="fraud") for e in _events(7)]
    code, _, err = _run(capsys, _write_jsonl(tmp_path / "e.jsonl", events), "--baseline", path)
    assert code == 0 and "500 events" in err and "rejected 7: unknown_model 7" in err
    assert "replay: 7 events are for models without a baseline: 'fraud' (7); baselines loaded: 'credit'" in err
    assert "error" not in err


def test_made_up_model_names_are_counted_in_bounded_memory(monkeypatch, baseline_file):
    from collections import Counter

    from stream.commands import replay

    monkeypatch.setattr(replay, "MAX_MODELS_COUNTED", 3)
    r = replay.Replay(replay.ModelRouter([baseline_file[1]]), replay.Limits(), 100, lambda alerts, events: None)
    r._add([{"model": f"m{i % 5}\x1b[2J", "features": {}} for i in range(50)])
    r.flush()
    assert len(r.unmonitored_models) == 4 and r.unmonitored_models[None] == 20
    sentence = replay.unmonitored_sentence(r.unmonitored_models, ["credit"])
    assert sentence == ("50 events are for models without a baseline: 'm0\\x1b[2J' (10), 'm1\\x1b[2J' (10), "
                        "'m2\\x1b[2J' (10) and more models (20 events); baselines loaded: 'credit'")
    long_name = replay.unmonitored_sentence(Counter({"a" * 100: 1}), [])
    assert long_name.endswith(f"'{'a' * 64}...' (1); baselines loaded: none")


# ---- bad values inside accepted events (issue 18, item 2) ---------------------------------------------
@pytest.fixture(scope="module")
def credit_with_confidence(tmp_path_factory):
    rng = np.random.default_rng(3)
    b = build_baseline_from_columns(
        "credit", {"age": rng.integers(18, 80, 5000), "state": rng.choice(["CA", "NY"], 5000)},
        confidence=rng.random(5000), categorical=("state",))
    path = tmp_path_factory.mktemp("b") / "credit.msgpack"
    b.save(path)
    return path


def test_one_event_with_bad_values_is_counted_per_feature_and_for_the_confidence(tmp_path, capsys,
                                                                                 credit_with_confidence):
    f = _write_jsonl(tmp_path / "e.jsonl", [{"model": "credit", "features": {"age": "forty", "state": "CA"},
                                              "confidence": 1.7}])
    code, _, err = _run(capsys, f, "--baseline", credit_with_confidence)
    assert code == 0 and "1 events" in err
    assert "replay: credit: missing or invalid values: age (invalid 1); confidence (invalid 1)" in err


def test_bad_and_missing_values_are_counted_over_the_whole_replay(tmp_path, capsys, credit_with_confidence):
    events = ([{"model": "credit", "features": {"age": 30, "state": "CA"}, "confidence": 0.5}] * 2500
              + [{"model": "credit", "features": {"age": None, "state": ["CA"]}}] * 3
              + [{"model": "credit", "features": {"state": "NY"}, "confidence": "high"}] * 2)
    f = _write_jsonl(tmp_path / "e.jsonl", events)
    code, _, err = _run(capsys, f, "--baseline", credit_with_confidence, "--batch-size", 7)
    assert code == 0
    assert ("replay: credit: missing or invalid values: age (missing 5); state (invalid 3); "
            "confidence (invalid 2, missing 3)") in err
    # the clean file says nothing of bad values
    clean = _write_jsonl(tmp_path / "clean.jsonl", events[:10])
    code, _, err = _run(capsys, clean, "--baseline", credit_with_confidence)
    assert code == 0 and "invalid values" not in err


# ---- one-line errors, no tracebacks (issue 18, item 3) -------------------------------------------------
def _cli(*argv):
    return [sys.executable, "-m", "stream.commands.cli", *map(str, argv)]


def test_a_reader_that_goes_away_ends_replay_quietly_with_status_141(tmp_path, baseline_file):
    path, _ = baseline_file
    f = _write_jsonl(tmp_path / "e.jsonl", _events(6000, shift_at=3000))  # alerts to write
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first alert is written
    proc = subprocess.run(_cli("replay", f, "--baseline", path), stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
    # as the operator types it: the first alert, nothing on stderr
    command = " ".join(_cli("replay", f, "--baseline", path)) + " | head -1"
    shell = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert json.loads(shell.stdout)["model"] == "credit"
    assert "Traceback" not in shell.stderr and "Error" not in shell.stderr
    assert shell.returncode in (0, 141)  # 0 when replay wrote everything before head closed the pipe


def test_a_reader_that_goes_away_ends_baseline_show_as_it_ends_replay(baseline_file):
    # `baseline show B | head` exited 0 where replay exits 141: a script could not tell a cut listing
    path, _ = baseline_file
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(_cli("baseline", "show", path), stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_a_dead_letter_file_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, baseline_file):
    path, _ = baseline_file
    f = _write_jsonl(tmp_path / "e.jsonl", _events(10))
    proc = subprocess.run(_cli("replay", f, "--baseline", path, "--dead-letter", tmp_path / "no" / "dead.jsonl"),
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("skewwatch replay: error: ") and len(proc.stderr.splitlines()) == 1
    assert "no/dead.jsonl" in proc.stderr


# ---- --pretty (issue 18, item 4) ----------------------------------------------------------------------------
def test_pretty_prints_each_alert_as_skewwatch_alerts_does(tmp_path, capsys, baseline_file):
    from stream.commands.alerts import format_alert

    path, _ = baseline_file
    events = [dict(e, ts=1_700_000_000 + i) for i, e in enumerate(_events(6000, shift_at=3000))]
    f = _write_jsonl(tmp_path / "e.jsonl", events)
    code, alerts, _ = _run(capsys, f, "--baseline", path)
    assert code == 0 and alerts
    assert main(["replay", str(f), "--baseline", str(path), "--pretty"]) == 0
    out, err = capsys.readouterr()
    assert out == "".join(format_alert(a) + "\n\n" for a in alerts)
    assert f"alerts {len(alerts)}" in err


def test_doctests():
    # stream/ is not in pytest's doctest paths (stream.worker.app builds a Faust app on import)
    from stream.commands import replay

    assert doctest.testmod(replay).failed == 0


def test_the_columnar_decoder_gives_replay_what_decoded_events_give(tmp_path, baseline_file):
    """JSONL replayed through the columnar decoder (the command's default) and through decoded event
    dicts: the same alerts, counts and dead letters (a line's reject names its line either way),
    with blank, whitespace-only, CRLF, list, bad, oversized and unknown-model lines among the events."""
    import io
    import random

    from stream.commands import replay

    path, baseline = baseline_file
    rng = random.Random(3)
    events = _events(5000, seed=4, shift_at=2500)
    odd = [b"", b"  \t", b"{oops", b"[1, 2]", b'{"model": "fraud", "features": {}}', b"y" * 3000,
           b'{"model": "credit", "features": {"x": 1, "x": "dup"}}', b'{"model": "credit", "features": 3}']
    lines, k = [], 0
    while k < len(events):
        roll = rng.random()
        if roll < 0.04:
            lines.append(rng.choice(odd))
        elif roll < 0.06:
            lines.append(orjson.dumps(events[k:k + 5]))
            k += 5
        else:
            lines.append(orjson.dumps(events[k]) + (b"\r" if roll < 0.1 else b""))
            k += 1
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    outcomes = []
    for columnar in (True, False):
        found, dead = [], io.BytesIO()
        r = replay.Replay(replay.ModelRouter([baseline]), replay.Limits(max_message_bytes=2000), 300,
                          lambda alerts, _, found=found: found.extend(a.to_dict() for a in alerts), dead)
        r.columnar = columnar
        r.run_file(str(f), "auto")
        r.flush()
        letters = sorted((d["reason"], d["detail"], d["raw_b64"], d["source"].get("line", -1))
                         for d in map(json.loads, dead.getvalue().splitlines()))
        outcomes.append((found, r.events, dict(r.rejected), dict(r.unmonitored_models), letters))
    assert outcomes[0] == outcomes[1]
    found, monitored, rejected, _, _ = outcomes[0]
    assert any(a["feature"] == "x" for a in found) and monitored > 4900 and rejected
