"""The worker's status page `/` as the on-call engineer sees it: a real worker on the embedded broker
fed events that drift, the page fetched over HTTP and rendered by headless Chromium (DOM and screenshot)."""
from __future__ import annotations

import json

import orjson
import pytest

from stream.worker import pages
from tests.browser import HtmlStructure, chromium, decode_png, near
from tests.integration.conftest import produce, wait_for
from tests.stream.helpers import events, training_baseline

pytestmark = pytest.mark.integration

CRITICAL_RED = "#c62828"  # the page's critical badge and border (stream/worker/pages.py)


def test_the_status_page_shows_the_drifting_feature_first_in_a_real_browser(deployment, follow, tmp_path):
    training_baseline("credit").save(deployment.baselines / "credit.msgpack")
    training_baseline("fraud", seed=1).save(deployment.baselines / "fraud.msgpack")  # gets no events
    (deployment.baselines / "churn.msgpack").write_bytes(b"not a baseline")  # disabled, with the reason
    worker = deployment.worker().wait_ready()
    cfg = deployment.cfg
    stream = events("credit", 1000, seed=31) + events("credit", 1000, seed=32, amount_mean=160.0, t0=1_764_000_010.0)
    produce(deployment.bootstrap, cfg.input_topic,
            [(b"credit", orjson.dumps(stream[i:i + 50])) for i in range(0, len(stream), 50)])
    produce(deployment.bootstrap, cfg.input_topic,
            [(b"credit", b"{truncated json"), (b"ghost", orjson.dumps({"model": "ghost", "features": {}}))])
    alerts_topic = follow(cfg.alert_topic)
    wait_for(lambda: worker.metric('skewwatch_events_total{model="credit"}') == 2000, 30, "2000 events counted")
    status = wait_for(lambda: (s := worker.status()).get("rejected") == {"not_decodable": 1, "unknown_model": 1}
                      and s, 30, "the two rejects counted on /status.json")
    assert set(status["last_event_at"]) == {"credit"}

    def every_alert_counted(records):
        counted = sum(v for k, v in worker.metrics().items()
                      if k.startswith("skewwatch_alerts_total{") and 'model="credit"' in k)
        return counted and len(records) == counted

    alerts_topic.wait(every_alert_counted, 30, "every alert the worker counted on the alert topic")
    sent = [json.loads(r.value) for r in alerts_topic.records]
    amount = [a for a in sent if a["feature"] == "amount"]
    assert any(a["kind"] == "drift" for a in amount)
    newest_of_kind = {a["kind"]: a for a in amount}  # what the page keeps: amount's newest alert of each kind
    shown = [a for a in amount if a in newest_of_kind.values() and a["severity"] == "critical"][-1]

    # the page as served, then as Chromium builds it
    served = worker.get("/")
    assert served is not None and f"<meta http-equiv=refresh content={pages.REFRESH_SECONDS}>" in served
    url = f"http://127.0.0.1:{worker.web_port}/"
    dom = chromium(tmp_path, "--dump-dom", url).stdout.decode("utf-8", "replace")
    page = HtmlStructure()
    page.feed(dom)
    text = page.text()
    first_card = text.index("critical amount ·")
    # what needs a person first: the rejects, the disabled model, then credit's alerted feature with its
    # sentence, and only then the table of every model
    assert text.index("2 rejected events since the worker started") < text.index("Disabled: not monitored")
    assert text.index("churn: baseline unusable") < text.index("credit 2000 events") < first_card
    assert first_card < text.index(shown["diagnosis"]) < text.index("All models")
    assert "unknown_model 1 no baseline for model 'ghost' (1)" in text
    assert "fraud no events yet" in text
    assert "None" not in text

    png = tmp_path / "status.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,1400", url)
    img = decode_png(png.read_bytes())
    assert img.shape == (1400, 1200, 3)
    assert img.std() > 20  # not a blank page
    assert near(img, CRITICAL_RED) > 300  # the red of the rejects banner and the critical badge and border
