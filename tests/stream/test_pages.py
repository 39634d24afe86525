"""The worker's status page `/` as HTML (stream.worker.pages.render_status), on a real
DetectionService fed real events: what an on-call engineer needs first, every name escaped, and
no work per feature that is not shown. tests/integration/test_status_page.py renders it in Chromium."""
from __future__ import annotations

import asyncio
import doctest
import html
import time

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

import stream.worker.app as worker
from baselines.build import build_baseline_from_columns
from detectors.events import Reject
from detectors.fmt import number, percent
from detectors.model import ModelMonitor
from stream.worker import checkpoint_codec, pages
from stream.worker import service as service_module
from stream.worker.metrics import Metrics
from stream.worker.service import KEPT_ALERTS, DetectionService, Record, RejectTally
from tests.browser import HtmlStructure
from tests.stream.helpers import events, training_baseline

HOSTILE = "<script>alert(1)</script>\x1b[2J"


@pytest.fixture
def service(monkeypatch, tmp_path):
    """A service on a baselines directory holding credit and fraud, as the pages' `worker.service`."""
    training_baseline("credit", seed=0).save(tmp_path / "credit.msgpack")
    training_baseline("fraud", seed=1).save(tmp_path / "fraud.msgpack")
    metrics = Metrics(CollectorRegistry())
    svc = DetectionService(str(tmp_path), metrics)
    svc.rescan()
    monkeypatch.setattr(worker, "service", svc)
    monkeypatch.setattr(worker, "metrics", metrics)
    return svc


def feed(svc: DetectionService, payloads: list[bytes], partition: int = 0) -> list[dict]:
    """What the agent does with a batch: process it, then send (keep) each alert."""
    monitors = svc.monitors_for(partition, lambda: [])
    start = monitors.last_offset + 1
    alerts, _ = svc.process(monitors, [Record(p, partition, start + i) for i, p in enumerate(payloads)])
    records = [a.to_dict() for a in alerts]
    for r in records:
        svc.alert_sent(r)
    return records


def drifting(model: str = "credit", seed: int = 3) -> list[bytes]:
    return [orjson.dumps(e) for e in events(model, 200, seed=seed) + events(model, 600, seed=seed + 1,
                                                                             amount_mean=150.0)]


def parse(page: str) -> HtmlStructure:
    p = HtmlStructure()
    p.feed(page)
    p.close()
    assert p.errors == [] and p.stack == [], (p.errors, p.stack)
    return p


def test_an_alerted_feature_comes_first_with_its_sentence_and_readable_numbers(service):
    alerts = feed(service, drifting())
    feed(service, [orjson.dumps(e) for e in events("fraud", 50, seed=9)], partition=1)
    page = pages.render_status()
    text = parse(page).text()
    drift, quality = ([a for a in alerts if a["feature"] == "amount" and a["kind"] == kind][-1]
                      for kind in ("drift", "data_quality"))
    assert drift["severity"] == "critical" and quality["severity"] == "warning"
    # the model alerted, its section before the table of all models, amount's card first: its critical
    # drift in full, its newer data-quality warning in a line
    assert text.index("1 model alerted") < text.index("credit 800 events") < text.index("All models")
    first_card = page.index("<article")
    card = parse(page[first_card:page.index("</article>", first_card) + len("</article>")]).text()
    assert card.startswith(f"critical amount · drift · cusum {number(drift['statistic'])} over "
                           f"{number(drift['threshold'])} · at event {drift['events_seen']}, just now")
    assert html.unescape(html.escape(drift["diagnosis"])) in card
    assert f"also warning data_quality · {quality['detector']} " in card
    # training vs the alert's numbers, in the one number format
    assert f"mean {number(drift['baseline']['mean'])} {number(drift['current']['mean'])}" in card
    # the old page printed "drift by cusum: None > None" and every setting of every feature
    assert "None" not in text
    assert not {"cusum_threshold", "dof", "window_values", "adwin_width_blocks"} & set(text.split())
    assert "2 of 3 features without an alert" in text
    # fraud is fine: no section of its own, a row with its events and how long ago the last came
    assert "fraud no alert 50 just now" in text
    assert f"<meta http-equiv=refresh content={pages.REFRESH_SECONDS}>" in page[:page.index("</head>")]


def test_the_time_since_each_models_last_events_is_shown(service):
    feed(service, drifting())
    feed(service, [orjson.dumps(e) for e in events("fraud", 50, seed=9)], partition=1)
    service.last_event_at["fraud"] -= 3_600
    text = parse(pages.render_status(now=time.time() + 300)).text()
    assert "credit 800 events, the last 5 min ago" in text
    assert "fraud no alert 50 1 h ago" in text


def test_disabled_models_and_models_without_events_are_listed_with_the_reason(service, tmp_path):
    (tmp_path / "fraud.msgpack").unlink()
    (tmp_path / "scoring.msgpack").write_bytes(b"broken")
    training_baseline("churn", seed=2).save(tmp_path / "churn.msgpack")
    service.rescan()
    service.rescan()  # a file that fails to load is judged once it has settled (it may be half-written)
    text = parse(pages.render_status()).text()
    assert "0 models alerted, 2 disabled, 2 without events yet, 0 without alert" in text
    assert text.index("Disabled: not monitored") < text.index("fraud: baseline file") < text.index("All models")
    assert text.index("Disabled: not monitored") < text.index("scoring: baseline unusable") < text.index("All models")
    assert "churn no events yet 0 -" in text and "credit no events yet 0 -" in text


def test_a_served_models_unusable_file_is_listed_as_a_file_to_fix(service, tmp_path):
    (tmp_path / "credit.msgpack").write_bytes(b"broken")
    service.rescan()
    service.rescan()
    text = parse(pages.render_status()).text()
    assert "0 disabled" in text  # credit keeps its baseline: still monitored, its file needs a person
    assert text.index("Baseline files to fix") < text.index("credit: ") < text.index("All models")
    assert "credit.msgpack cannot be loaded; the model keeps the baseline last loaded" in text


def test_rejected_events_are_counted_by_reason_before_the_models(service):
    garbage = [b"{truncated", orjson.dumps({"model": "ghost", "features": {}}),
               orjson.dumps({"model": "ghost", "features": {}}), orjson.dumps({"model": "credit"})]
    feed(service, garbage)
    text = parse(pages.render_status()).text()
    assert text.index("4 rejected events since the worker started") < text.index("All models")
    assert "unknown_model 2 no baseline for model 'ghost' (2)" in text
    assert "not_decodable 1" in text and "features_not_object 1" in text


def test_hostile_names_are_shown_as_text(service, tmp_path):
    """Model and feature names come from baselines, unexpected field names and reject details
    from producers: none may add markup (or a terminal escape) to the page."""
    rng = np.random.default_rng(0)
    build_baseline_from_columns(HOSTILE, {HOSTILE: rng.normal(0, 1, 2000)}).save(
        tmp_path / "evil.msgpack")
    service.rescan()
    evs = [{"model": HOSTILE, "features": {HOSTILE: float(v), "<img src=x onerror=alert(2)>": 1}}
           for v in rng.normal(3, 1, 400)]
    alerts = feed(service, [orjson.dumps(e) for e in evs] + [orjson.dumps({"model": "<b>ghost</b>", "features": {}})])
    assert {a["feature"] for a in alerts} >= {HOSTILE, None}  # a drift and the unexpected field (schema)
    record = dict(alerts[0], next_step="<a href=//evil>click</a>")
    service.alert_sent(record)
    page = pages.render_status()
    p = parse(page)
    assert not {"script", "img"} & set(p.tags)
    assert not [a for a in p.attributes if a.startswith("on")]
    assert all(link.startswith(("#", "/")) and not link.startswith("//") for link in p.links), p.links
    assert "\x1b" not in page
    text = p.text()
    assert "<script>alert(1)</script>\\x1b[2J" in text  # the name itself, readable
    assert "<img src=x onerror=alert(2)>" in text and "<b>ghost</b>" in text
    assert "Next step: <a href=//evil>click</a>" in text


def test_rows_are_capped_per_model_newest_first_and_the_rest_counted(service):
    alert = [a for a in feed(service, drifting()) if a["kind"] == "drift"][-1]
    for i in range(pages.ALERT_ROWS + 3):  # other subjects alerting, one after the other
        service.alert_sent(dict(alert, feature=f"f{i:02d}", alert_id=f"id{i}"))
    page = pages.render_status()
    text = parse(page).text()
    assert page.count("<article") == pages.ALERT_ROWS
    shown = [f"f{i:02d}" for i in range(pages.ALERT_ROWS + 2, 2, -1)]
    assert [text.index(f"critical {name} ") for name in shown] == sorted(text.index(f"critical {n} ") for n in shown)
    assert "critical f02 " not in text and "critical amount " not in text
    assert "4 more alerted (older) not shown" in text


def test_an_update_record_replaces_its_alert_without_counting_another(service):
    """An update record (same alert_id, "update": true) re-diagnoses an alert: the page shows it in
    the alert's place and counts one alert, as skewwatch_alerts_total does."""
    record = feed(service, drifting())[-1]
    before = dict(service.alert_counts["credit"])
    service.alert_sent(dict(record, update=True, diagnosis="update: the cause, re-diagnosed"))
    assert service.alert_counts["credit"] == before
    assert service.alerted("credit")[0][0][1]["diagnosis"] == "update: the cause, re-diagnosed"


def test_the_alerts_kept_per_model_are_bounded(service):
    record = feed(service, drifting())[-1]
    for i in range(KEPT_ALERTS + 20):
        service.alert_sent(dict(record, feature=f"f{i}"))
    alerted = service.alerted("credit")
    assert len(alerted) == KEPT_ALERTS + 1  # the kept ones (amount's pushed out), and amount's brief from the monitor
    assert [alerts[0][1]["feature"] for alerts in alerted[:2]] == [f"f{KEPT_ALERTS + 19}", f"f{KEPT_ALERTS + 18}"]


def test_the_page_costs_the_alerted_features_not_every_features_statistics(service, monkeypatch):
    feed(service, drifting())
    feed(service, [orjson.dumps(e) for e in events("fraud", 50, seed=9)])

    def snapshot(self):
        raise AssertionError("the status page computed a snapshot of every feature")

    monkeypatch.setattr(ModelMonitor, "snapshot", snapshot)
    assert "amount" in pages.render_status()


def test_after_a_restart_the_restored_monitors_last_alerts_are_shown(service, tmp_path):
    feed(service, drifting())
    checkpoints = service.checkpoints()
    restarted = DetectionService(str(tmp_path), Metrics(CollectorRegistry()))
    restarted.rescan()
    restarted.monitors_for(0, lambda: checkpoints.items())
    worker.service = restarted  # monkeypatched by the fixture: restored at teardown
    text = parse(pages.render_status()).text()
    assert "1 model alerted" in text
    state = checkpoint_codec.decode(checkpoint_codec.read_head(checkpoints["0/credit"]), {}.get)  # one record
    last = ModelMonitor.from_state(  # what the checkpoint holds of amount's last alert
        training_baseline("credit", seed=0), state).last_alerts()["amount"]
    assert (f"{last['severity']} amount · {last['kind']} · {last['detector']} · at event {last['events_seen']}, "
            "before the worker restarted") in text
    assert "none since the worker started" in text  # its events were counted before the restart


def test_a_changed_baseline_forgets_the_alerts_against_the_old_one(service, tmp_path):
    feed(service, drifting())
    assert service.alerted("credit")
    service.rescan()  # the same file: nothing changes
    assert service.alerted("credit")
    training_baseline("credit", seed=5).save(tmp_path / "credit.msgpack")
    assert [c.kind for c in service.rescan()] == ["loaded"]
    assert service.alerted("credit") == []


def test_reject_details_are_bounded_per_reason():
    tally = RejectTally(details=3)
    for i in range(100):
        tally.add(Reject("not_decodable", f"invalid JSON at {i}" + "x" * 500, b""))
    assert tally.by_reason["not_decodable"] == 100
    details = tally.details("not_decodable", n=10)
    assert [n for _, n in details] == [1, 1, 1]
    assert all(len(d) == RejectTally.DETAIL_CHARS for d, _ in details)


def test_an_alert_in_brief_is_shown_plainly(service):
    """An alert without statistic, sentence or numbers (as a checkpoint keeps it): no "None"."""
    alert = [a for a in feed(service, drifting()) if a["kind"] == "drift"][-1]
    service.alert_sent({k: alert[k] for k in ("alert_id", "kind", "model", "feature", "detector", "events_seen",
                                              "severity")})
    text = parse(pages.render_status()).text()
    assert "None" not in text and "skewwatch alerts" in text


def test_doctests():
    # stream/ is not in pytest's doctest paths (stream.worker.app builds a Faust app on import)
    assert doctest.testmod(service_module).failed == 0


def test_a_categorical_alert_shows_the_shares_and_a_serving_alert_the_versions(service):
    evs = events("credit", 1000, seed=4)
    for e in evs[200:]:
        e["features"]["country"] = "FR"
        e["model_version"] = "2"
    alerts = feed(service, [orjson.dumps(e) for e in evs])
    assert {(a["feature"], a["kind"]) for a in alerts} >= {("country", "drift"), (None, "serving")}
    text = parse(pages.render_status()).text()
    fr = next(a for a in alerts if a["feature"] == "country" and a["kind"] == "drift")
    assert f"share of 'FR' {percent(fr['baseline']['top']['FR'])} {percent(fr['current']['top']['FR'])}" in text
    assert "warning serving · mixed_versions " in text and "model version 1 1 (200 events), 2 (800 events)" in text


class Ticker:
    """A task on the loop that wants to run every 10 ms: how late each tick was."""

    def __init__(self):
        self.late: list[float] = []
        self.task = asyncio.create_task(self._tick())

    async def _tick(self):
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            self.late.append(loop.time() - due)


def spin(seconds: float) -> None:
    """Hold the thread, as reading a monitor or generate_latest does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_the_metrics_text_is_built_off_the_event_loop(monkeypatch):
    """At 500 models the exposition text took 2.7-3.6 s, on the loop: processing, the other pages
    and the consumer's heartbeats waited. It is built in a thread now: a ticker on the loop keeps
    ticking while a slow exposition runs."""
    class SlowMetrics:
        def exposition(self) -> bytes:
            spin(0.5)
            return b"# slow\n"

    monkeypatch.setattr(worker, "metrics", SlowMetrics())
    monkeypatch.setattr(worker, "service", type("S", (), {"update_gauges": lambda self, budget: 0})())
    ticker = Ticker()
    await asyncio.sleep(0.02)
    assert await pages.metrics_text() == b"# slow\n"
    ticker.task.cancel()
    assert len(ticker.late) >= 10 and max(ticker.late) < 0.3, ticker.late


class Models:
    """A service whose stale models take `seconds` each to read, as Metrics.refresh reads them."""

    def __init__(self, pending: int, seconds: float, log: list[str] | None = None):
        self.pending, self.seconds, self.calls, self.log = pending, seconds, [], log if log is not None else []

    def update_gauges(self, budget: float) -> int:
        start, read = time.perf_counter(), 0
        while self.pending and (not read or time.perf_counter() - start < budget):
            spin(self.seconds)
            self.pending, read = self.pending - 1, read + 1
            self.log.append("read")
        self.calls.append(read)
        return read


async def test_a_scrape_reads_the_models_one_at_a_time_with_the_loop_free_in_between(monkeypatch):
    """The gauges were read in one go, up to REFRESH_BUDGET (plus one model) on the loop. Now a
    model at a time: with 20 ms per model and a 0.4 s budget, the ticker is never ~0.4 s late."""
    models = Models(pending=30, seconds=0.02)
    monkeypatch.setattr(worker, "service", models)
    monkeypatch.setattr(worker, "metrics", type("M", (), {"exposition": lambda self: b""})())
    monkeypatch.setattr(pages, "REFRESH_BUDGET", 0.4)
    ticker = Ticker()
    await asyncio.sleep(0.02)
    await pages.metrics_text()
    ticker.task.cancel()
    assert max(ticker.late) < 0.2, ticker.late
    assert 15 <= sum(models.calls) < 30 and set(models.calls) == {1}  # the budget held, a model per call


async def test_a_scrape_reads_cheap_models_several_a_turn_for_at_most_the_hold(monkeypatch):
    """Each turn read one model and paid a pass over the fleet (~1 ms at 500 models) besides it: a
    scrape read 21 of 500 busy models when a read cost ~1 ms (bench/scrape.py). Now REFRESH_HOLD's
    worth a turn: all 200 models of 0.2 ms within the budget, several a turn, the ticker never later
    than the hold and a read (and the loop's own jitter)."""
    models = Models(pending=200, seconds=0.0002)
    monkeypatch.setattr(worker, "service", models)
    monkeypatch.setattr(worker, "metrics", type("M", (), {"exposition": lambda self: b""})())
    monkeypatch.setattr(pages, "REFRESH_BUDGET", 10.0)
    ticker = Ticker()
    await asyncio.sleep(0.02)
    await pages.metrics_text()
    ticker.task.cancel()
    assert sum(models.calls) == 200 and max(models.calls) > 1, models.calls
    assert max(models.calls) <= pages.REFRESH_HOLD / 0.0002 + 1, models.calls
    assert max(ticker.late) < pages.REFRESH_HOLD + 0.01, ticker.late


async def test_a_scrape_reads_fewer_models_when_processing_keeps_the_loop_busy(monkeypatch):
    """Between two reads the loop runs processing: a scrape that waited for it after every model
    would take (read + batch) x models. It stops once REFRESH_BUDGET has passed since it started."""
    models = Models(pending=30, seconds=0.01)
    monkeypatch.setattr(worker, "service", models)
    monkeypatch.setattr(worker, "metrics", type("M", (), {"exposition": lambda self: b""})())
    monkeypatch.setattr(pages, "REFRESH_BUDGET", 0.15)

    async def processing():
        while True:
            spin(0.1)  # a micro-batch
            await asyncio.sleep(0)

    task = asyncio.create_task(processing())
    await asyncio.sleep(0)
    start = time.perf_counter()
    await pages.metrics_text()
    took = time.perf_counter() - start
    task.cancel()
    assert 1 <= sum(models.calls) <= 3 and took < 0.6, (models.calls, took)  # not 15 x 0.11 s


async def test_a_task_woken_during_a_read_runs_before_the_next_read(monkeypatch):
    """Between two reads the scrape yielded with sleep(0), which queued its next read ahead of the
    timers and I/O callbacks that fell due during the last one: a task they woke (processing,
    after a fetch) waited two or three reads. Now a 1-ms ticker ticks between every two reads."""
    log: list[str] = []
    monkeypatch.setattr(worker, "service", Models(pending=10, seconds=0.003, log=log))
    monkeypatch.setattr(worker, "metrics", type("M", (), {"exposition": lambda self: b""})())
    monkeypatch.setattr(pages, "REFRESH_BUDGET", 10.0)

    async def ticker():
        while True:
            await asyncio.sleep(0.001)
            log.append("tick")

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    await pages.metrics_text()
    task.cancel()
    reads = "".join("r" if entry == "read" else "t" for entry in log).strip("t")
    assert reads.count("r") == 10 and "rr" not in reads, reads
