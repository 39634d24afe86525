"""The agent's work without Faust: decoding, routing, dead letters, checkpoints and restore."""
from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import threading
import zlib

import msgpack
import orjson
import pytest
from prometheus_client import CollectorRegistry

from baselines.profile import Baseline
from detectors.processing import process_messages
from detectors.routing import ModelRouter
from stream.worker.metrics import Metrics
from stream.worker.service import (
    CHECKPOINT_VERSION,
    DetectionService,
    PartitionMonitors,
    Record,
    RejectLog,
    parse_checkpoint_key,
)
from tests.stream.helpers import as_json, credit_baseline, events  # noqa: F401 (fixtures)


def scrape(metrics: Metrics) -> dict[str, float]:
    out = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            out[s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"] = s.value
    return out


def test_process_messages_routes_json_and_msgpack_and_says_where_each_reject_came_from(credit_baseline):
    router = ModelRouter([credit_baseline])
    good = events("credit", 3, seed=1)
    payloads = [
        orjson.dumps(good[0]),
        msgpack.packb([good[1], good[2]]),  # one message, two events
        b"\xc1 not msgpack, not json",
        orjson.dumps({"model": "nobody", "features": {}}),
        orjson.dumps([good[0], {"model": "credit"}]),  # second element has no features
    ]
    alerts, rejects, counts = process_messages(router, payloads)
    assert alerts == []
    assert counts == {"credit": 4}
    assert [(i, r.reason) for i, r in rejects] == [(2, "not_decodable"), (3, "unknown_model"),
                                                   (4, "features_not_object")]
    assert router.monitor("credit").events_seen == 4


def test_process_messages_dead_letters_events_of_a_disabled_model_with_the_reason(credit_baseline):
    router = ModelRouter([credit_baseline])
    router.disable_model("credit", "baseline file /b/credit.msgpack was deleted")
    _, rejects, counts = process_messages(router, as_json(events("credit", 2, seed=1)))
    assert not counts
    assert [r.reason for _, r in rejects] == ["baseline_unavailable"] * 2
    assert "was deleted" in rejects[0][1].detail


def test_batching_does_not_change_the_alerts(credit_baseline):
    stream = as_json(events("credit", 1500, seed=2) + events("credit", 2500, seed=3, amount_mean=160.0))
    one = ModelRouter([credit_baseline])
    whole = [a.to_dict() for a in process_messages(one, stream).alerts]
    other = ModelRouter([credit_baseline])
    pieces = [a.to_dict() for i in range(0, len(stream), 97) for a in process_messages(other, stream[i:i + 97]).alerts]
    assert whole and [a["alert_id"] for a in whole] == [a["alert_id"] for a in pieces]
    assert any(a["kind"] == "drift" and a["feature"] == "amount" for a in whole)


def credit_service(tmp_path, credit_baseline) -> DetectionService:
    """A worker's service over a baselines directory holding the credit model's baseline."""
    credit_baseline.save(tmp_path / "credit.msgpack")
    service = DetectionService(str(tmp_path), Metrics(CollectorRegistry()))
    service.rescan()
    return service


def records(payloads: list[bytes], partition: int = 0, start: int = 0) -> list[Record]:
    return [Record(p, partition, start + i, "in") for i, p in enumerate(payloads)]


def test_restored_monitor_skips_events_its_checkpoint_already_counts(credit_baseline):
    stream = as_json(events("credit", 300, seed=4))
    live = PartitionMonitors(2, [credit_baseline])
    live.process(records(stream[:200], partition=2))
    blobs = live.checkpoints()
    assert list(blobs) == ["2/credit"] and live.checkpoints() == {}  # only changed monitors are written again

    # a crash: the consumer resumes from an older committed offset (150); 150..199 are re-delivered
    restored = PartitionMonitors(2, [credit_baseline])
    assert restored.restore("credit", blobs["2/credit"])
    for start in range(150, 300, 20):  # re-delivered in several batches
        restored.process(records(stream[start:start + 20], partition=2, start=start))
    live.process(records(stream[200:300], partition=2, start=200))
    assert restored.router.monitor("credit").events_seen == live.router.monitor("credit").events_seen == 300
    assert restored.router.state_dict("credit") == live.router.state_dict("credit")


def test_checkpoint_of_another_baseline_or_garbage_is_not_restored(credit_baseline):
    from tests.stream.helpers import training_baseline

    live = PartitionMonitors(0, [credit_baseline])
    live.process(records(as_json(events("credit", 50, seed=5))))
    blob = live.checkpoints()["0/credit"]
    rebuilt = PartitionMonitors(0, [training_baseline("credit", seed=9, version="2")])
    assert not rebuilt.restore("credit", blob)
    assert not rebuilt.restore("credit", b"\x00garbage")
    assert rebuilt.router.monitor("credit").events_seen == 0
    assert not PartitionMonitors(0, []).restore("credit", blob)  # model without a baseline here


def test_checkpoints_are_msgpack_with_the_offset_and_never_pickle(credit_baseline):
    live = PartitionMonitors(1, [credit_baseline])
    live.process(records(as_json(events("credit", 10, seed=6)), partition=1, start=40))
    data = msgpack.unpackb(live.checkpoints()["1/credit"], raw=False, strict_map_key=False)
    assert data["v"] == CHECKPOINT_VERSION == 3 and data["meta"]["offset"] == 49 and data["n"] == 0
    assert data["meta"]["baseline"] == credit_baseline.fingerprint
    state = msgpack.unpackb(zlib.decompress(data["data"]), raw=False, strict_map_key=False)
    assert state["events_seen"] == 10


def test_a_checkpoint_restores_against_the_same_baseline_rebuilt(credit_baseline):
    """The same training data profiled again (a new `created`) is the same baseline: its fingerprint."""
    live = PartitionMonitors(0, [credit_baseline])
    live.process(records(as_json(events("credit", 50, seed=5))))
    rebuilt = dataclasses.replace(credit_baseline, created=credit_baseline.created + 86_400.0)
    restored = PartitionMonitors(0, [rebuilt])
    assert restored.restore("credit", live.checkpoints()["0/credit"])
    assert restored.router.state_dict("credit") == live.router.state_dict("credit")


def test_a_checkpoint_of_the_old_format_starts_the_monitor_fresh_and_says_why(credit_baseline, caplog):
    live = PartitionMonitors(0, [credit_baseline])
    live.process(records(as_json(events("credit", 50, seed=5))))
    # how format 2 wrote it: plain msgpack, one record
    old = {"v": 2, "offset": 49, "committed_floor": -1, "baseline": credit_baseline.fingerprint,
           "state": live.router.state_dict("credit")}
    fresh = PartitionMonitors(0, [credit_baseline])
    with caplog.at_level("WARNING", logger="skewwatch.worker"):
        assert not fresh.restore("credit", msgpack.packb(old, use_bin_type=True))
    assert fresh.router.monitor("credit").events_seen == 0
    assert "checkpoint format 2, this worker reads format 3); starting fresh" in caplog.text


def test_a_rebuilt_baseline_file_of_the_same_data_keeps_the_monitors(tmp_path, credit_baseline):
    service = credit_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    service.process(monitors, records(as_json(events("credit", 40, seed=4))))
    path = tmp_path / "credit.msgpack"
    dataclasses.replace(credit_baseline, created=credit_baseline.created + 86_400.0).save(path)
    mtime = path.stat().st_mtime_ns + 10**9  # seen as changed, however coarse the file system's clock
    os.utime(path, ns=(mtime, mtime))
    assert [c.kind for c in service.rescan()] == ["loaded"]
    assert monitors.router.monitor("credit").events_seen == 40


def test_service_builds_partition_monitors_from_its_checkpoints_and_counts_metrics(tmp_path, credit_baseline):
    credit_baseline.save(tmp_path / "credit.msgpack")
    metrics = Metrics(CollectorRegistry())
    service = DetectionService(str(tmp_path), metrics)
    service.rescan()
    stream = as_json(events("credit", 120, seed=7))
    first = service.monitors_for(3, lambda: [])
    broken = [b"{broken", orjson.dumps({"model": "x", "features": {}})]
    service.process(first, records(stream[:100] + broken, partition=3))
    saved = service.checkpoints() | service.positions()
    assert [parse_checkpoint_key(k) for k in saved] == [(3, "credit", None), (3, "", None)]

    # partition 3 moves to another worker, which starts from the table
    other = DetectionService(str(tmp_path), Metrics(CollectorRegistry()))
    other.rescan()
    table = list(saved.items()) + [("1/credit", b"not for this partition")]
    moved = other.monitors_for(3, lambda: table)
    assert moved.router.monitor("credit").events_seen == 100

    samples = scrape(metrics)
    assert samples["skewwatch_events_total{model=credit}"] == 100
    assert samples["skewwatch_rejected_events_total{reason=not_decodable}"] == 1
    assert samples["skewwatch_rejected_events_total{reason=unknown_model}"] == 1
    assert samples["skewwatch_baseline_loaded{model=credit}"] == 1


def test_dead_letter_record_carries_reason_original_bytes_and_position(tmp_path, credit_baseline):
    service = credit_service(tmp_path, credit_baseline)
    raw = b"\xff\xfe binary junk"
    _, [letter] = service.process(service.monitors_for(0, lambda: []), [Record(raw, 0, 17, "skewwatch.predictions")])
    assert letter["reason"] == "not_decodable" and letter["detail"]
    assert base64.b64decode(letter["raw_b64"]) == raw and letter["raw"] is None
    assert letter["source"] == {"topic": "skewwatch.predictions", "partition": 0, "offset": 17}
    orjson.dumps(letter)  # JSON-ready


def test_baseline_changes_reach_every_partition(tmp_path, credit_baseline):
    credit_baseline.save(tmp_path / "credit.msgpack")
    metrics = Metrics(CollectorRegistry())
    service = DetectionService(str(tmp_path), metrics)
    service.rescan()
    assert service.baseline("credit").model == "credit" and service.baseline("ghost") is None
    a, b = service.monitors_for(0, lambda: []), service.monitors_for(1, lambda: [])
    (tmp_path / "credit.msgpack").unlink()
    service.rescan()
    assert a.router.models == b.router.models == [] and service.baseline("credit") is None
    assert "was deleted" in service.unavailable["credit"]
    assert scrape(metrics)["skewwatch_baseline_loaded{model=credit}"] == 0
    late = service.monitors_for(2, lambda: [])  # a partition assigned later also knows
    _, [letter] = service.process(late, records(as_json(events("credit", 1, seed=1)), partition=2))
    assert letter["reason"] == "baseline_unavailable" and "was deleted" in letter["detail"]


def test_a_half_written_copy_over_the_served_file_never_disables_nor_resets_the_model(tmp_path, credit_baseline):
    # a plain `cp` of the same baseline over the served file: it used to disable the model, and
    # the completed file started a fresh monitor (events_seen 200 -> 100)
    service = credit_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    stream = as_json(events("credit", 300, seed=4))
    service.process(monitors, records(stream[:200]))
    path = tmp_path / "credit.msgpack"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert service.rescan() == []
    _, dead = service.process(monitors, records(stream[200:250], start=200))
    path.write_bytes(whole)
    assert [c.kind for c in service.rescan()] == ["loaded"]
    _, dead_after = service.process(monitors, records(stream[250:], start=250))
    assert dead == dead_after == [] and monitors.router.monitor("credit").events_seen == 300


def test_a_broken_file_of_a_served_model_keeps_its_last_good_baseline_with_a_warning(tmp_path, credit_baseline,
                                                                                      caplog):
    service = credit_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    service.process(monitors, records(as_json(events("credit", 40, seed=4))))
    (tmp_path / "credit.msgpack").write_bytes(b"corrupt")
    with caplog.at_level("WARNING", logger="skewwatch.worker"):
        assert service.rescan() == []  # maybe still being written
        assert [c.kind for c in service.rescan()] == ["kept"]  # settled: unusable
    assert "credit.msgpack: not a msgpack file" in caplog.text and "keeps the baseline last loaded" in caplog.text
    assert service.models == ["credit"] and service.unavailable == {}
    assert scrape(service.metrics)["skewwatch_baseline_loaded{model=credit}"] == 1
    # it was only in the log: a gauge and the status say which file needs fixing, until it is
    assert scrape(service.metrics)["skewwatch_baseline_file_problem{model=credit}"] == 1
    assert "credit.msgpack cannot be loaded" in service.baseline_file_problems["credit"]
    _, dead = service.process(monitors, records(as_json(events("credit", 10, seed=5)), start=40))
    assert dead == [] and monitors.router.monitor("credit").events_seen == 50
    credit_baseline.save(tmp_path / "credit.msgpack")
    assert [c.kind for c in service.rescan()] == ["loaded"]
    assert service.baseline_file_problems == {}
    assert "skewwatch_baseline_file_problem{model=credit}" not in scrape(service.metrics)


def test_a_copy_of_a_baseline_is_a_logged_conflict_and_deleting_either_copy_keeps_the_model(
        tmp_path, credit_baseline, caplog):
    service = credit_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    stream = as_json(events("credit", 40, seed=4))
    service.process(monitors, records(stream[:10]))
    original, copy = tmp_path / "credit.msgpack", tmp_path / "credit-backup.msgpack"
    shutil.copy(original, copy)
    with caplog.at_level("WARNING", logger="skewwatch.worker"):
        assert [c.kind for c in service.rescan()] == ["conflict"]
    assert "credit-backup.msgpack declares model 'credit' too" in caplog.text
    assert "credit-backup.msgpack declares the model too" in service.baseline_file_problems["credit"]
    assert scrape(service.metrics)["skewwatch_baseline_file_problem{model=credit}"] == 1
    copy.unlink()  # it used to disable credit until the original was touched
    assert service.rescan() == [] and service.models == ["credit"]
    assert service.baseline_file_problems == {}  # no change was reported, the problem is gone all the same
    assert "skewwatch_baseline_file_problem{model=credit}" not in scrape(service.metrics)
    service.process(monitors, records(stream[10:20], start=10))

    shutil.copy(original, copy)
    service.rescan()
    original.unlink()  # the copy takes over, the monitor goes on
    assert [(c.kind, c.path) for c in service.rescan()] == [("loaded", copy)]
    _, dead = service.process(monitors, records(stream[20:], start=20))
    assert dead == [] and monitors.router.monitor("credit").events_seen == 40


async def test_rescan_off_loop_reads_the_files_in_a_thread(tmp_path, credit_baseline, monkeypatch):
    service = DetectionService(str(tmp_path), Metrics(CollectorRegistry()))
    credit_baseline.save(tmp_path / "credit.msgpack")
    readers = []
    load = Baseline.load.__func__

    def recording_load(cls, path):
        readers.append(threading.get_ident())
        return load(cls, path)

    monkeypatch.setattr(Baseline, "load", classmethod(recording_load))
    assert [c.kind for c in await service.rescan_off_loop()] == ["loaded"]
    assert service.models == ["credit"] and readers and threading.get_ident() not in readers


def test_reject_log_writes_at_most_one_line_per_reason_per_interval(caplog):
    from detectors.events import Reject

    now = [0.0]
    log = RejectLog(interval=10.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="skewwatch.worker"):
        for t in (0.0, 1.0, 2.0, 9.0, 10.5):
            now[0] = t
            log.add(Reject("not_decodable", "invalid JSON", b"x"))
        log.add(Reject("unknown_model", "no baseline for 'x'", b"x"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("rejected 1 ") and lines[1].startswith("rejected 4 ") and "unknown_model" in lines[2]


def test_reject_log_reports_the_counts_it_held_back_once_their_interval_is_over(caplog):
    """A burst's held-back rejects are reported by the next flush after the interval, not only
    when (if ever) another reject of the same reason comes: the logged counts add up."""
    from detectors.events import Reject

    now = [0.0]
    log = RejectLog(interval=10.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="skewwatch.worker"):
        for t in (0.0, 0.1, 0.2, 3.0):
            now[0] = t
            log.add(Reject("not_decodable", f"invalid JSON at {t}", b"x"))
        now[0] = 9.9
        log.flush()  # too early: still within the interval of the first line
        now[0] = 10.0
        log.flush()
        log.flush()  # nothing left to report
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("rejected 1 message(s)/event(s) as not_decodable") and "at 0.0" in lines[0]
    assert lines[1].startswith("rejected 3 message(s)/event(s) as not_decodable") and "at 3.0" in lines[1]


def test_records_delivered_twice_in_one_run_are_processed_once(tmp_path, credit_baseline):
    service = credit_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    stream = records(as_json(events("credit", 80, seed=8)) + [b"{bad"])
    service.process(monitors, stream[:40])
    _, letters = service.process(monitors, stream[20:])  # the consumer went back to offset 20
    assert monitors.router.monitor("credit").events_seen == 80
    assert len(letters) == 1


def test_records_delivered_twice_within_one_batch_are_processed_once(credit_baseline):
    # a seek back mid-fetch can hand one batch the same offsets twice, after a restored
    # checkpoint too
    stream = records(as_json(events("credit", 60, seed=8)))
    live = PartitionMonitors(0, [credit_baseline])
    live.process(stream[:30])
    restored = PartitionMonitors(0, [credit_baseline])
    assert restored.restore("credit", live.checkpoints()["0/credit"])
    restored.process(restored.unseen(stream[20:45] + stream[25:60]))
    assert restored.router.monitor("credit").events_seen == 60


def test_a_recreated_log_is_counted_from_its_start(tmp_path, credit_baseline):
    """A broker that lost its records starts the partition's offsets again: the records of the
    new log must not be skipped as covered by the old log's checkpoints, whether the monitors
    stay in memory or are rebuilt from the checkpoint table after a rebalance."""
    service = credit_service(tmp_path, credit_baseline)
    stream = records(as_json(events("credit", 90, seed=9)))
    kept = service.monitors_for(0, lambda: [])
    service.process(kept, stream[:60])
    table = list(service.checkpoints().items())
    assert service.observe_end_offsets({0: 60}) == []
    assert service.observe_end_offsets({0: 75}) == []

    assert service.observe_end_offsets({0: 10}) == [0]  # the log was recreated
    service.process(kept, records([r.value for r in stream[60:70]]))  # offsets 0..9 again
    assert kept.router.monitor("credit").events_seen == 70

    service.drop_partitions([0])  # a rebalance: rebuilt from the old log's checkpoint
    rebuilt = service.monitors_for(0, lambda: table)
    service.process(rebuilt, records([r.value for r in stream[60:90]]))
    assert rebuilt.router.monitor("credit").events_seen == 90
    assert service.observe_end_offsets({0: 30}) == []  # growing again


def test_a_recreated_log_rewrites_the_position_marker_before_its_first_record(tmp_path, credit_baseline):
    """The broker came back empty and a checkpoint round ran before the new log's first record: the
    partition's marker must be written again (offset -1), or the old log's marker, still in the
    table, makes the rebuilt monitors skip the new log's records as counted (seen after a 5 s
    broker outage: the new log's first 165 records skipped)."""
    service = credit_service(tmp_path, credit_baseline)
    stream = records(as_json(events("credit", 90, seed=19)))
    monitors = service.monitors_for(0, lambda: [])
    service.process(monitors, stream[:60])
    table = dict(service.checkpoints()) | service.positions()
    assert service.observe_end_offsets({0: 60}) == [] and service.observe_end_offsets({0: 0}) == [0]
    table |= service.checkpoints()  # the round before any record of the new log
    table |= service.positions()
    service.drop_partitions([0])  # a rebalance rebuilds the monitors from the table
    rebuilt = service.monitors_for(0, lambda: list(table.items()))
    service.process(rebuilt, records([r.value for r in stream[60:90]]))  # offsets 0..29 of the new log
    assert rebuilt.take_seek() is None
    assert rebuilt.router.monitor("credit").events_seen == 90


def test_a_recreated_log_noticed_during_a_revokes_checkpoint_round_is_counted_from_its_start(tmp_path,
                                                                                           credit_baseline):
    """Seen after a 300 s broker outage (docs/reliability.md): the broker came back empty, the group's
    rejoin revoked the partition, and the revoke's checkpoint round wrote the monitors' records (the
    old log's offsets) before the lag timer noticed the new log, and its position marker after (it
    waits for the broker's confirmation in between). The marker used to clear the partition's
    'recreated' mark, so the monitors rebuilt at the reassignment skipped the new log's first
    records as covered by the old log's checkpoint (2,500 events short)."""
    service = credit_service(tmp_path, credit_baseline)
    stream = records(as_json(events("credit", 90, seed=29)))
    monitors = service.monitors_for(0, lambda: [])
    service.process(monitors, stream[:60])
    assert service.observe_end_offsets({0: 60}) == []
    table = dict(service.checkpointing([0]))  # the revoke's round: records of the old log's offsets
    assert service.observe_end_offsets({0: 0}) == [0]  # noticed while the round awaits the broker
    table |= service.positions([0])
    service.drop_partitions([0])
    rebuilt = service.monitors_for(0, lambda: list(table.items()))
    service.process(rebuilt, records([r.value for r in stream[60:90]]))  # offsets 0..29 of the new log
    assert rebuilt.take_seek() is None
    assert rebuilt.router.monitor("credit").events_seen == 90


def test_a_recreated_log_that_outgrew_the_old_one_is_counted_from_its_start(tmp_path, credit_baseline):
    """The end offset of the new log never went back where the worker could see it (the new log
    was already longer than the old one): to monitors rebuilt from the checkpoints, the first
    record delivered lies below the offset the group committed, which the consumer never resumes
    below, so nothing is skipped. (Monitors kept in memory take such records for Faust's
    re-deliveries, which are far more common: docs/reliability.md, "Recreated input log".)"""
    service = credit_service(tmp_path, credit_baseline)
    stream = records(as_json(events("credit", 160, seed=10)))
    kept = service.monitors_for(0, lambda: [])
    service.process(kept, stream[:60])
    service.checkpoints()
    service.offsets_committed()  # offsets 0..59 committed right after that checkpoint
    service.process(kept, stream[60:70])
    table = list(service.checkpoints().items())  # holds the floor known then: 60
    service.offsets_committed()
    assert service.observe_end_offsets({0: 70}) == [] and service.observe_end_offsets({0: 100}) == []

    new_log = records([r.value for r in stream[70:160]])  # offsets 0..89 of a recreated log
    service.drop_partitions([0])  # rebuilt from the old log's checkpoint, which holds a floor
    rebuilt = service.monitors_for(0, lambda: table)
    service.process(rebuilt, new_log)
    assert rebuilt.router.monitor("credit").events_seen == 70 + 90


def test_records_delivered_again_below_the_committed_offset_are_duplicates(tmp_path, credit_baseline):
    """Faust hands over records below the committed offset again while running: the last one it
    delivered (its read offset), or a run of them after its seek to an older committed offset at a
    restart (150..154 again after this worker committed 155). They are duplicates, not the first
    records of a recreated log (taking them so counted a partition's 5,000 events again)."""
    service = credit_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    stream = records(as_json(events("credit", 60, seed=18)))
    service.process(monitors, stream[:40])
    service.checkpoints()
    service.offsets_committed()
    service.process(monitors, stream[39:45])
    service.process(monitors, stream[30:60])
    assert monitors.router.monitor("credit").events_seen == 60


def test_a_restart_resumes_at_the_committed_offset_without_counting_twice(tmp_path, credit_baseline):
    """What the committed floor must never mistake for a recreated log: re-delivery from the
    committed offset after a rebalance, after a crash, and after a seek back within one run."""
    service = credit_service(tmp_path, credit_baseline)
    stream = records(as_json(events("credit", 100, seed=11)))
    monitors = service.monitors_for(0, lambda: [])
    service.offsets_committed()  # nothing checkpointed yet
    service.process(monitors, stream[:40])
    table = list(service.checkpoints().items())
    service.offsets_committed()
    assert monitors.committed_floor == 40
    service.process(monitors, stream[40:70])  # processed, neither checkpointed nor committed
    service.process(monitors, stream[40:80])  # a seek back to the committed offset: 40..69 again
    assert monitors.router.monitor("credit").events_seen == 80

    service.drop_partitions([0])  # a rebalance brings the partition back: from the checkpoint at 39
    rebalanced = service.monitors_for(0, lambda: table)
    assert rebalanced.committed_floor == 40  # the checkpoint predates the commit; the worker kept it
    service.process(rebalanced, stream[40:90])
    assert rebalanced.router.monitor("credit").events_seen == 90

    restarted_service = credit_service(tmp_path, credit_baseline)  # kill -9: a new process
    restarted = restarted_service.monitors_for(0, lambda: table)
    restarted_service.process(restarted, stream[40:100])
    assert restarted.router.monitor("credit").events_seen == 100


def _restored(tmp_path, credit_baseline, stream, upto: int):
    """A service whose partition 0 was processed up to `upto` (exclusive), checkpointed with its
    position marker, then rebuilt from the table (a restart)."""
    service = credit_service(tmp_path, credit_baseline)
    service.process(service.monitors_for(0, lambda: []), stream[:upto])
    table = list(service.checkpoints().items()) + list(service.positions().items())
    restarted = credit_service(tmp_path, credit_baseline)
    return restarted, restarted.monitors_for(0, lambda: table)


def test_records_fetched_but_never_delivered_after_a_restore_are_read_again(tmp_path, credit_baseline, caplog):
    """Faust drops a record it fetches while its flow is suspended (the changelog recovery of a
    restart) and moves on: after a restore at offset 39 the first record delivered is 45. The
    worker seeks back to 40 once, drops what Faust still hands over from before the seek, and
    counts every event once (this lost 80-2,250 events per restart with a backlog)."""
    stream = records(as_json(events("credit", 90, seed=12)))
    service, monitors = _restored(tmp_path, credit_baseline, stream, 40)
    with caplog.at_level("WARNING", logger="skewwatch.worker"):
        service.process(monitors, stream[45:60])
    assert monitors.take_seek() == 40 and monitors.take_seek() is None
    assert "offsets 40..44 were fetched but never delivered to the worker" in caplog.text
    assert monitors.router.monitor("credit").events_seen == 40
    service.process(monitors, stream[60:70])  # fetched before the seek: dropped
    service.process(monitors, stream[40:50])  # the re-read
    service.process(monitors, stream[50:90])
    assert monitors.take_seek() is None
    assert monitors.router.monitor("credit").events_seen == 90


def test_a_gap_within_a_run_is_read_again_and_processing_resumes_within_the_batch(tmp_path, credit_baseline):
    service = credit_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    stream = records(as_json(events("credit", 80, seed=13)))
    service.process(monitors, stream[:30])
    service.process(monitors, stream[30:35] + stream[37:50])  # 35, 36 never delivered
    assert monitors.take_seek() == 35
    assert monitors.router.monitor("credit").events_seen == 35
    service.process(monitors, stream[50:55] + stream[35:80])  # the rest of the old fetch, then the re-read
    assert monitors.router.monitor("credit").events_seen == 80


def test_a_hole_in_the_log_is_read_twice_then_passed_with_a_warning(tmp_path, credit_baseline, caplog):
    """A compacted topic or transaction markers leave offsets that never come: the seek back is
    made once, and a second gap at the same offset is taken as a hole."""
    stream = records(as_json(events("credit", 60, seed=14)))
    service, monitors = _restored(tmp_path, credit_baseline, stream, 40)
    service.process(monitors, stream[45:50])
    assert monitors.take_seek() == 40
    with caplog.at_level("WARNING", logger="skewwatch.worker"):
        service.process(monitors, stream[45:60])  # the re-read starts at 45 again
    assert monitors.take_seek() is None
    assert "offsets 40..44 are not in the log (read twice" in caplog.text
    assert monitors.router.monitor("credit").events_seen == 40 + 15


def test_the_position_marker_vouches_for_idle_models(tmp_path, credit_baseline, caplog):
    """A model idle since its last checkpoint is not rewritten: without the partition's position
    marker its old offset would make the restart read from there again (and dead-letter the
    rejects since then twice) or see a gap; with it the restart resumes exactly after the marker."""
    from tests.stream.helpers import training_baseline

    training_baseline("fraud", seed=3).save(tmp_path / "fraud.msgpack")
    service = credit_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    fraud = as_json(events("fraud", 10, seed=15))
    credit = as_json(events("credit", 60, seed=16))
    service.process(monitors, records(fraud + credit[:20]))
    table = dict(service.checkpoints()) | service.positions()
    service.process(monitors, records(credit[20:60], start=30))  # fraud idle: only credit rewritten
    written = service.checkpoints()
    assert sorted(written) == ["0/credit"]
    table |= written
    positions = service.positions()
    assert sorted(positions) == ["0/"]
    table |= positions
    assert service.positions() == {}  # nothing moved since

    restarted = credit_service(tmp_path, credit_baseline)
    restarted.rescan()
    rebuilt = restarted.monitors_for(0, lambda: list(table.items()))
    more = records(as_json(events("fraud", 5, seed=17)), start=70)
    with caplog.at_level("WARNING", logger="skewwatch.worker"):
        restarted.process(rebuilt, more)
    assert rebuilt.take_seek() is None and "never delivered" not in caplog.text
    assert rebuilt.router.monitor("fraud").events_seen == 15
    assert rebuilt.router.monitor("credit").events_seen == 60


def test_a_scrape_reads_only_each_models_busiest_monitor_and_only_when_it_changed(tmp_path, credit_baseline,
                                                                                  monkeypatch):
    from detectors.model import ModelMonitor
    read = []
    snapshot = ModelMonitor.snapshot
    monkeypatch.setattr(ModelMonitor, "snapshot", lambda monitor: read.append(monitor) or snapshot(monitor))
    service = credit_service(tmp_path, credit_baseline)
    metrics = service.metrics
    home, stray, _ = (service.monitors_for(p, lambda: []) for p in (0, 1, 2))
    service.process(home, records(as_json(events("credit", 300, seed=8)), partition=0))
    service.process(stray, records(as_json(events("credit", 5, seed=9)), partition=1))
    service.update_gauges()
    assert read == [home.router.monitor("credit")]
    assert scrape(metrics)["skewwatch_drift_score{feature=amount,model=credit}"] >= 0
    service.update_gauges()  # nothing new
    service.process(stray, records(as_json(events("credit", 5, seed=10)), partition=1, start=5))
    service.update_gauges()  # new events on another partition than the busiest: its gauges do not change
    assert read == [home.router.monitor("credit")]
    assert service.snapshots()["credit"]["events_seen"] == 300


# ---- big checkpoints: split under the record limit (stream/worker/checkpoint_codec.py) -----------------
def small_records_service(tmp_path, credit_baseline) -> DetectionService:
    """A service whose checkpoint records are at most 1,024 bytes: the credit model's takes several."""
    tmp_path.mkdir(exist_ok=True)
    credit_baseline.save(tmp_path / "credit.msgpack")
    service = DetectionService(str(tmp_path), Metrics(CollectorRegistry()), max_checkpoint_bytes=1024)
    service.rescan()
    return service


def write(table: dict[str, bytes], written: dict[str, bytes | None]) -> None:
    """What the agent does with `checkpoints()`: set each record, delete those given as None."""
    for key, blob in written.items():
        if blob is None:
            table.pop(key, None)
        else:
            table[key] = blob


def test_a_big_checkpoint_is_split_under_the_limit_and_restored_whole(tmp_path, credit_baseline):
    service = small_records_service(tmp_path, credit_baseline)
    stream = records(as_json(events("credit", 300, seed=4)))
    service.process(service.monitors_for(0, lambda: []), stream[:200])
    table: dict[str, bytes] = {}
    written = service.checkpoints()
    keys = [parse_checkpoint_key(k) for k in written]
    assert len(keys) > 2 and keys[-1] == (0, "credit", None)  # the head after its chunks
    assert keys[:-1] == [(0, "credit", (0, i)) for i in range(len(keys) - 1)]
    assert max(map(len, written.values())) <= 1024
    write(table, written)

    other = small_records_service(tmp_path / "other", credit_baseline)
    moved = other.monitors_for(0, lambda: list(table.items()))
    assert moved.router.monitor("credit").events_seen == 200
    assert moved.router.state_dict("credit") == service.partitions[0].router.state_dict("credit")

    # the next checkpoint: the other generation, then the first one's chunks deleted
    other.process(moved, stream[200:])
    written = other.checkpoints()
    chunks = [c for _, _, c in map(parse_checkpoint_key, written) if c is not None]
    assert {g for g, _ in chunks} == {0, 1} and [written[k] for k in written if k.startswith("0#0.")] == [None] * (
        len(keys) - 1)
    write(table, written)
    assert all(parse_checkpoint_key(k)[2][0] == 1 for k in table if k != "0/credit")
    again = small_records_service(tmp_path / "again", credit_baseline).monitors_for(0, lambda: list(table.items()))
    assert again.router.monitor("credit").events_seen == 300


def test_a_crash_between_a_checkpoints_chunks_and_its_head_restores_the_previous_one(tmp_path, credit_baseline):
    service = small_records_service(tmp_path, credit_baseline)
    stream = records(as_json(events("credit", 300, seed=4)))
    monitors = service.monitors_for(0, lambda: [])
    service.process(monitors, stream[:200])
    table: dict[str, bytes] = {}
    write(table, service.checkpoints())
    service.process(monitors, stream[200:])
    newer = service.checkpoints()
    write(table, {k: v for k, v in newer.items() if parse_checkpoint_key(k)[2] is not None and v is not None})
    restored = small_records_service(tmp_path / "r", credit_baseline).monitors_for(0, lambda: list(table.items()))
    assert restored.router.monitor("credit").events_seen == 200 and restored.last_offset == 199


def test_a_checkpoint_with_a_missing_or_foreign_chunk_starts_the_monitor_fresh_and_says_why(tmp_path, credit_baseline,
                                                                                          caplog):
    service = small_records_service(tmp_path, credit_baseline)
    monitors = service.monitors_for(0, lambda: [])
    service.process(monitors, records(as_json(events("credit", 200, seed=4))))
    table = dict(service.checkpoints())
    service.process(monitors, records(as_json(events("credit", 10, seed=5)), start=200))
    foreign = {k: v for k, v in service.checkpoints().items() if v is not None and k.startswith("0#1.")}
    for damaged, why in ((dict(table, **{"0#0.1/credit": None}), "chunk 0.1 of"),
                         ({**table, "0#0.1/credit": foreign["0#1.1/credit"]}, "another checkpoint")):
        caplog.clear()
        items = [(k, v) for k, v in damaged.items() if v is not None]
        with caplog.at_level("WARNING", logger="skewwatch.worker"):
            service = small_records_service(tmp_path / why[:5], credit_baseline)
            fresh = service.monitors_for(0, lambda items=items: items)
        assert fresh.router.monitor("credit").events_seen == 0
        assert "cannot restore 'credit'" in caplog.text and why in caplog.text and "starting fresh" in caplog.text


def test_the_chunks_of_a_checkpoint_that_was_not_restored_are_deleted_by_the_next_one(tmp_path, credit_baseline):
    from tests.stream.helpers import training_baseline

    service = small_records_service(tmp_path, credit_baseline)
    service.process(service.monitors_for(0, lambda: []), records(as_json(events("credit", 200, seed=4))))
    table: dict[str, bytes] = {}
    write(table, service.checkpoints())
    other = DetectionService(str(tmp_path / "other"), Metrics(CollectorRegistry()), max_checkpoint_bytes=1024)
    (tmp_path / "other").mkdir()
    training_baseline("credit", seed=9, version="2").save(tmp_path / "other" / "credit.msgpack")  # another baseline
    other.rescan()
    fresh = other.monitors_for(0, lambda: list(table.items()))
    assert fresh.router.monitor("credit").events_seen == 0
    other.process(fresh, records(as_json(events("credit", 10, seed=5)), start=200))
    assert any(k.startswith("0#0.") for k in table)
    write(table, other.checkpoints())
    assert not any(k.startswith("0#0.") for k in table)  # the unrestored checkpoint's chunks: deleted


def test_a_partition_holds_monitors_only_for_the_models_whose_events_it_saw_or_restored(tmp_path, credit_baseline):
    from tests.stream.helpers import training_baseline

    training_baseline("fraud", seed=3).save(tmp_path / "fraud.msgpack")
    service = credit_service(tmp_path, credit_baseline)
    home = service.monitors_for(1, list)
    service.process(home, records(as_json(events("credit", 30, seed=1)), partition=1))
    assert home.router.monitored == ["credit"] and service.monitors_for(0, list).router.monitored == []
    blobs = service.checkpoints()
    assert sorted(blobs) == ["1/credit"]
    # a restart: the checkpoint of (1, credit) creates that monitor at restore, and no other
    restarted = credit_service(tmp_path, credit_baseline)
    steps = list(restarted.restoring(1, lambda: blobs.items()))
    assert len(steps) == 1 and restarted.partitions[1].router.monitored == ["credit"]
    assert restarted.events_seen("credit") == 30 and restarted.events_seen("fraud") == 0
    assert restarted.monitors_for(0, lambda: blobs.items()).router.monitored == []
    # the monitors a batch's keys name are created a step each, before the batch is processed
    assert len(list(restarted.creating(restarted.partitions[1], ["fraud", "credit", "nobody"]))) == 1
    assert restarted.partitions[1].router.monitored == ["credit", "fraud"]


def test_a_baseline_changed_while_a_partition_is_being_restored_applies_to_it(tmp_path, credit_baseline):
    from tests.stream.helpers import training_baseline

    service = credit_service(tmp_path, credit_baseline)
    live = service.monitors_for(1, list)
    service.process(live, records(as_json(events("credit", 30, seed=1)), partition=1))
    blobs = {**service.checkpoints(), "1/other": b"\x00"}  # two steps
    restarted = credit_service(tmp_path, credit_baseline)
    steps = restarted.restoring(1, lambda: blobs.items())
    next(steps)  # credit restored; the worker's event loop runs a rescan now
    training_baseline("fraud", seed=3).save(tmp_path / "fraud.msgpack")
    restarted.rescan()
    list(steps)
    assert restarted.partitions[1].router.models == ["credit", "fraud"]


# ---- the hold: a model's events wait for more of its own; no checkpoint covers a waiting one ----
def _two_model_service(tmp_path, credit_baseline, hold_events: int) -> DetectionService:
    credit_baseline.save(tmp_path / "credit.msgpack")
    dataclasses.replace(credit_baseline, model="fraud").save(tmp_path / "fraud.msgpack")
    service = DetectionService(str(tmp_path), Metrics(CollectorRegistry()), hold_events=hold_events)
    service.rescan()
    return service


def _mixed_stream(n: int) -> list[bytes]:
    """credit events, and every 10th a fraud event (too few per batch to feed at once)."""
    credit, fraud = events("credit", n, seed=31), events("fraud", n, seed=32)
    return as_json([fraud[i] if i % 10 == 3 else credit[i] for i in range(n)])


def test_held_events_are_not_processed_offsets_until_fed_and_a_checkpoint_covers_none(tmp_path, credit_baseline):
    """fraud's events wait in the hold while credit's are fed: the partition's offset stops before
    the oldest waiting one, a checkpoint is refused while any waits, and after `flush` (what the
    worker does before every checkpoint) it covers everything. A restart from that checkpoint,
    the records re-delivered from an older commit, counts every event once: the states of a
    worker that never held nor restarted."""
    stream = records(_mixed_stream(600))
    service = _two_model_service(tmp_path, credit_baseline, hold_events=100)
    monitors = service.monitors_for(0, lambda: [])
    alerts, letters = service.process(monitors, stream[:200])
    assert service.held() == 20 and monitors.last_offset == 2  # fraud's first event, offset 3, waits
    assert monitors.router.monitor("credit").events_seen == 180 and monitors.router.monitor("fraud").events_seen == 0
    with pytest.raises(RuntimeError, match="held events must be fed"):
        service.checkpoints()
    service.process(monitors, stream[200:250])
    assert monitors.last_offset == 2
    service.flush()
    assert service.held() == 0 and monitors.last_offset == 249
    table = {**service.checkpoints(), **service.positions()}
    service.offsets_committed()
    assert service.committable() == {} and monitors.committed_floor == 250

    service.process(monitors, stream[250:400])  # fraud's events wait again; then kill -9
    assert service.held() == 15 and monitors.last_offset == 252

    restarted = _two_model_service(tmp_path, credit_baseline, hold_events=100)
    again = restarted.monitors_for(0, lambda: list(table.items()))
    for start in range(200, 600, 70):  # re-delivered from before the commit, in other batches
        restarted.process(again, stream[start:start + 70])
    restarted.flush()
    reference = PartitionMonitors(0, [credit_baseline, dataclasses.replace(credit_baseline, model="fraud")])
    reference.process(stream)
    for model in ("credit", "fraud"):
        assert again.router.monitor(model).events_seen == reference.router.monitor(model).events_seen
        assert again.router.state_dict(model) == reference.router.state_dict(model)


def test_a_held_event_rejected_when_fed_is_dead_lettered_with_its_own_record(tmp_path, credit_baseline, monkeypatch):
    """A monitor that raises on a held event: its dead letter, sent when its model is fed, names its
    own record's offset, not one of the batch that fed it."""
    from tests.stream.helpers import poison_monitors

    stream = _mixed_stream(300)
    stream[13] = orjson.dumps(dict(orjson.loads(stream[13]), request_id="poison"))  # a fraud event
    service = _two_model_service(tmp_path, credit_baseline, hold_events=20)
    poison_monitors(monkeypatch)
    monitors = service.monitors_for(0, lambda: [])
    letters = []
    for start in range(0, 300, 50):
        letters += service.process(monitors, records(stream[start:start + 50], start=start))[1]
    letters += service.flush()[1]
    assert [(d["reason"], d["source"]["offset"], d["source"]["topic"]) for d in letters] == [
        ("monitor_error", 13, "in")]
    assert service.events_seen("fraud") == 29 and service.events_seen("credit") == 270


def test_the_hold_setting_defaults_to_the_engines_own(monkeypatch):
    from detectors.processing import HOLD_EVENTS
    from stream.worker import config

    monkeypatch.delenv("SKEWWATCH_HOLD_EVENTS", raising=False)
    assert config.load().hold_events == HOLD_EVENTS
