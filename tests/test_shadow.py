"""Shadow mode (detectors/joins/shadow.py): a candidate model's predictions joined with production's
by request_id, agreement per window against the expected one, the separating features, the
labelled comparison, and the JoinMonitor wiring."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from detectors.alerts import Alert
from detectors.joins import JoinConfig, JoinMonitor, ShadowMonitor, parse_shadow_pairs, shadow_pairs_text
from detectors.joins.shadow import SHADOW_ALPHA, SHADOW_REGRESSION_TOLERANCE
from tests.stream.helpers import events, training_baseline

BASELINE = training_baseline("credit")
CLASSIFIER = dataclasses.replace(BASELINE, metric={"name": "accuracy", "value": 0.9, "n": 20_000})
REGRESSOR = dataclasses.replace(BASELINE, metric={"name": "mae", "value": 5.0, "n": 20_000})
PAIR = ("credit", "credit-v2")


def pair_events(n: int, candidate_of, seed: int = 1, production_of=lambda i, ev: 1) -> list[tuple[dict, dict]]:
    """(production, candidate) events of `n` requests; `candidate_of(i, event)` is the candidate's prediction."""
    out = []
    for i, ev in enumerate(events("credit", n, seed=seed)):
        ev["request_id"] = f"r{i}"
        ev["prediction"] = production_of(i, ev)
        cand = {**ev, "model": "credit-v2", "prediction": candidate_of(i, ev), "confidence": ev["confidence"] - 0.05}
        out.append((ev, cand))
    return out


def run(monitor, pairs, order=("production", "candidate")) -> list[Alert]:
    alerts = []
    for i, (prod, cand) in enumerate(pairs):
        first, second = (prod, cand) if order == ("production", "candidate") else (cand, prod)
        alerts += monitor.add_prediction(first, first["ts"], i + 1)
        alerts += monitor.add_prediction(second, second["ts"], i + 1)
    return alerts


def rng_flip(seed: int, rate: float):
    rng = np.random.default_rng(seed)
    return lambda i, ev: 1 - ev["prediction"] if rng.random() < rate else ev["prediction"]


# ---- pairs ------------------------------------------------------------------------------------------
def test_pairs_are_parsed_and_conflicts_refused():
    assert parse_shadow_pairs(["credit=credit-v2", "credit=credit-v3,fraud=fraud-b"]) == (
        ("credit", "credit-v2"), ("credit", "credit-v3"), ("fraud", "fraud-b"))
    assert shadow_pairs_text(parse_shadow_pairs("a = b ,, c=d")) == "a=b,c=d"
    for bad in ("credit", "=x", "x=", "x=x", "a=c,b=c", "a=b,b=c"):
        with pytest.raises(ValueError):
            parse_shadow_pairs(bad)


# ---- the join -----------------------------------------------------------------------------------------
def test_out_of_order_duplicate_and_never_matching_requests_are_joined_once_and_counted():
    shadow = ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get, JoinConfig(shadow_ttl=5.0, shadow_window=10))
    pairs = pair_events(30, lambda i, ev: 1)
    t0 = pairs[0][0]["ts"]
    alerts = run(shadow, pairs[:10], order=("candidate", "production"))  # the candidate first
    alerts += run(shadow, pairs[:5])  # both re-delivered: duplicates, not new comparisons
    alerts += run(shadow, pairs[10:20])
    lonely = {**pairs[20][1], "request_id": "only-candidate"}
    shadow.add_prediction(lonely, t0 + 0.3, 21)
    shadow.add_prediction({**pairs[21][0], "request_id": "late", "ts": t0 + 100.0}, t0 + 100.0, 22)  # expires it
    snap = shadow.snapshot()["credit=credit-v2"]
    assert alerts == []
    assert snap["joined"] == 20 and len(snap["windows"]) == 2
    assert snap["counts"] == {"matched": 20, "waiting": 1, "duplicate_production": 5, "duplicate_candidate": 5,
                              "expired_production": 0, "expired_candidate": 1}
    assert snap["windows"][0]["agreement"] == 1.0


def test_the_join_stays_bounded_by_its_cap():
    shadow = ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get, JoinConfig(max_entries=50))
    for i, (prod, _) in enumerate(pair_events(500, lambda i, ev: 1)):
        shadow.add_prediction(prod, prod["ts"], i + 1)  # the candidate never answers
    counts = shadow.counts["shadow credit=credit-v2"]
    assert counts["waiting"] == 50 and counts["expired_production"] == 450


# ---- agreement, its test and the separating features ------------------------------------------
def test_a_candidate_that_disagrees_on_a_segment_of_one_feature_is_alerted_naming_that_feature():
    """Synthetic scenario: from request 3000 the candidate answers differently where amount > 120."""
    shadow = ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get)
    flip = rng_flip(3, 0.02)  # 2% random disagreement everywhere: the reference level

    def candidate(i, ev):
        if i >= 3000 and ev["features"]["amount"] > 120 and i % 2:
            return 1 - ev["prediction"]
        return flip(i, ev)

    alerts = run(shadow, pair_events(8000, candidate))
    [alert] = alerts
    ev = alert.evidence
    assert alert.kind == "shadow" and alert.model == "credit" and alert.feature is None
    assert alert.detector == "shadow_join" and alert.p_value < SHADOW_ALPHA
    assert ev["cause"] == "shadow_disagreement" and ev["candidate"] == "credit-v2"
    assert ev["window"] == 4  # the first window after the change began (requests 3000-3999)
    top = ev["separating_features"][0]
    assert top["feature"] == "amount" and top["segment"].startswith("'amount' > 1")
    assert top["disagreement_in"] > 0.3 > 0.05 > top["disagreement_out"]
    assert [s["feature"] for s in ev["separating_features"]] == ["amount"]  # age and country do not separate
    assert ev["reference"]["source"] == "first_window" and ev["reference"]["agreement"] > 0.95
    assert ev["ci_low"] <= ev["agreement"] <= ev["ci_high"] < ev["expected_agreement"]
    assert "'amount' > 1" in alert.diagnosis and "credit-v2" in alert.diagnosis
    assert alert.next_step.startswith("hold the rollout of 'credit-v2': it disagrees with 'credit'")
    assert top["segment"] in alert.next_step
    assert alert.current["confidence_diff"]["mean"] == pytest.approx(-0.05)
    assert Alert.from_dict(alert.to_dict()) == alert


def test_a_categorical_segment_is_named_by_its_training_category():
    shadow = ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get)
    alerts = run(shadow, pair_events(3000, lambda i, ev: 0 if i >= 1000 and ev["features"]["country"] == "FR"
                                     else 1))
    [alert] = alerts
    assert alert.evidence["separating_features"][0]["segment"] == "'country' = 'FR'"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_candidate_that_keeps_its_agreement_gives_no_alert(seed):
    shadow = ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get)
    assert run(shadow, pair_events(20_000, rng_flip(seed, 0.1), seed=seed)) == []
    windows = shadow.snapshot()["credit=credit-v2"]["windows"]
    assert len(windows) == 20 and all(0.85 < w["agreement"] < 0.95 for w in windows)


def test_a_candidate_that_disagrees_from_the_start_needs_a_configured_minimum():
    pairs = pair_events(3000, rng_flip(4, 0.3))
    assert run(ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get), pairs) == []  # it is its own reference
    strict = ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get, JoinConfig(shadow_min_agreement=0.9))
    alerts = run(strict, pairs)
    assert [a.evidence["window"] for a in alerts] == [1]  # tested from the first window, one episode
    assert alerts[0].baseline == {"agreement": None, "expected": 0.9, "source": "configured", "n": None}
    assert alerts[0].evidence["separating_features"] == []
    assert "spread over the traffic" in alerts[0].diagnosis


def test_alert_ids_are_deterministic_and_belong_to_the_pair_and_the_baseline():
    pairs = pair_events(3000, lambda i, ev: 0 if i >= 1000 and ev["features"]["country"] == "FR" else 1)
    first, again = (run(ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get), pairs)[0] for _ in range(2))
    assert first.alert_id == again.alert_id
    other = [(p, {**c, "model": "credit-v3"}) for p, c in pairs]
    v3 = run(ShadowMonitor([("credit", "credit-v3")], {"credit": CLASSIFIER}.get), other)[0]
    rebuilt = dataclasses.replace(CLASSIFIER, metric={"name": "accuracy", "value": 0.8, "n": 10})
    new_baseline = run(ShadowMonitor([PAIR], {"credit": rebuilt}.get), pairs)[0]
    assert len({first.alert_id, v3.alert_id, new_baseline.alert_id}) == 3


def test_a_regression_pair_reports_the_differences_and_alerts_on_a_segment():
    """Regression: agreement is a difference within a tenth of the spread of production's predictions."""
    base = dataclasses.replace(REGRESSOR, prediction=BASELINE.features["amount"])
    shadow = ShadowMonitor([PAIR], {"credit": base}.get)
    noise = np.random.default_rng(5).normal(0, 0.2, 6000)
    pairs = pair_events(6000, lambda i, ev: ev["prediction"] + noise[i] + (15.0 if i >= 2000 and
                                                                          ev["features"]["age"] < 30 else 0.0),
                        production_of=lambda i, ev: ev["features"]["amount"])
    [alert] = run(shadow, pairs)
    tolerance = SHADOW_REGRESSION_TOLERANCE * base.prediction.std
    assert alert.evidence["task"] == "regression"
    assert alert.current["diff"]["tolerance"] == pytest.approx(tolerance)
    top = alert.evidence["separating_features"][0]
    assert top["feature"] == "age" and top["segment"].startswith("'age' <= ")
    assert f"predicts within {tolerance:.3g}" in alert.diagnosis
    first = shadow.snapshot()["credit=credit-v2"]["windows"][0]["diff"]
    assert abs(first["p50"]) < 0.1 and first["p95"] == pytest.approx(0.33, abs=0.1)


def test_regression_without_a_prediction_profile_takes_its_spread_from_the_first_window():
    shadow = ShadowMonitor([PAIR], {"credit": REGRESSOR}.get, JoinConfig(shadow_window=100))
    run(shadow, pair_events(200, lambda i, ev: ev["prediction"] + 1.0,
                            production_of=lambda i, ev: ev["features"]["amount"]))
    snap = shadow.snapshot()["credit=credit-v2"]
    assert snap["regression_tolerance"] == pytest.approx(2.0, rel=0.2)  # a tenth of amount's sd of 20
    assert snap["windows"][0]["agreement"] == 1.0


def test_unscorable_pairs_are_counted_not_compared():
    shadow = ShadowMonitor([PAIR], {"credit": CLASSIFIER}.get, JoinConfig(shadow_window=10))
    run(shadow, pair_events(20, lambda i, ev: None if i % 2 else 1))
    snap = shadow.snapshot()["credit=credit-v2"]
    assert (snap["joined"], snap["unscorable"], len(snap["windows"])) == (10, 10, 1)


# ---- labels -----------------------------------------------------------------------------------------
def labelled_pairs(n: int, production_accuracy: float, candidate_accuracy: float, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    prod_right, cand_right = rng.random(n) < production_accuracy, rng.random(n) < candidate_accuracy
    pairs = pair_events(n, lambda i, ev: int(labels[i] if cand_right[i] else 1 - labels[i]),
                        production_of=lambda i, ev: int(labels[i] if prod_right[i] else 1 - labels[i]))
    return pairs, [{"request_id": p["request_id"], "label": int(y)} for (p, _), y in zip(pairs, labels)]


@pytest.mark.parametrize(("candidate_accuracy", "verdict"), [(0.85, "candidate_worse"), (0.95, "candidate_better"),
                                                             (0.9, "no_real_difference")])
def test_labels_compare_the_two_models_with_a_paired_test(candidate_accuracy, verdict):
    joins = JoinMonitor({"credit": CLASSIFIER}.get, parity=False, shadow=[PAIR])
    pairs, labels = labelled_pairs(3000, 0.9, candidate_accuracy, seed=11)
    for prod, cand in pairs:
        joins.add_predictions([prod, cand])
    joins.add_labels(labels)
    summary = joins.snapshot()["shadow"]["credit=credit-v2"]["labels"]
    assert summary["n"] == 3000 and summary["test"] == "mcnemar" and summary["verdict"] == verdict
    assert summary["production"]["ci_low"] < 0.9 < summary["production"]["ci_high"]
    assert summary["difference_ci_low"] < candidate_accuracy - 0.9 < summary["difference_ci_high"]


def test_a_label_before_the_candidates_prediction_waits_for_it():
    joins = JoinMonitor({"credit": CLASSIFIER}.get, parity=False, shadow=[PAIR])
    (prod, cand), = pair_events(1, lambda i, ev: 0)
    joins.add_predictions([prod])
    joins.add_labels([{"request_id": "r0", "label": 0}])
    joins.add_predictions([cand])
    summary = joins.snapshot()["shadow"]["credit=credit-v2"]["labels"]
    assert summary["production"]["accuracy"] == 0.0 and summary["candidate"]["accuracy"] == 1.0


def test_a_candidates_events_never_take_productions_place_in_the_label_and_parity_joins():
    """A candidate with a baseline of its own, its event first: before the candidate was kept out of
    the label join, it matched the label, and production's event was dropped as a duplicate."""
    both = {"credit": CLASSIFIER, "credit-v2": dataclasses.replace(CLASSIFIER, model="credit-v2")}
    joins = JoinMonitor(both.get, shadow=[PAIR])
    pairs, labels = labelled_pairs(400, 0.9, 0.9, seed=2)
    for prod, cand in pairs:
        joins.add_predictions([cand, prod])
    joins.add_labels(labels)
    joins.add_feature_log([{"request_id": p["request_id"], "model": "credit", "features": p["features"]}
                           for p, _ in pairs])
    counts = joins.counts
    assert counts["labels"]["matched"] == 400 and counts["labels"]["duplicate_prediction"] == 0
    assert counts["feature_log"]["matched"] == 400 and "ignored" not in counts
    assert joins.snapshot()["performance"]["credit"]["labelled"] == 400
    assert "credit-v2" not in joins.snapshot()["performance"]
    assert counts["shadow credit=credit-v2 labels"]["matched"] == 400


def test_a_candidate_without_a_baseline_is_still_compared():
    joins = JoinMonitor({"credit": CLASSIFIER}.get, parity=False, labels=False, shadow=[PAIR])
    pairs = pair_events(2000, lambda i, ev: 1)
    for prod, cand in pairs:
        joins.add_predictions([prod, cand])
    assert joins.snapshot()["shadow"]["credit=credit-v2"]["joined"] == 2000
    assert "shadow credit=credit-v2 labels" not in joins.counts  # no labels: no pair waits for one


# ---- replay --shadow --------------------------------------------------------------------------------
@pytest.mark.parametrize("with_labels", [True, False])
def test_replay_shadow_alerts_and_summarises_the_pair(tmp_path, capsys, with_labels):
    # without --labels, replay read the events into columns and the shadow join got none of them;
    # the candidate's events (it has no baseline) were counted as those of a model without one
    import json

    import orjson

    from stream.commands.cli import main

    baseline = tmp_path / "credit.msgpack"
    CLASSIFIER.save(baseline)
    pairs, labels = labelled_pairs(4000, 0.9, 0.9, seed=8)
    rows = []
    for i, (prod, cand) in enumerate(pairs):
        if i >= 2000 and prod["features"]["country"] == "DE":
            cand["prediction"] = 1 - prod["prediction"]
        rows += [cand, prod] if i % 3 == 0 else [prod, cand]  # the candidate's answer sometimes first
    rows.append({**pairs[0][1], "request_id": "never-answered-by-production"})
    for label, (prod, _) in zip(labels, pairs):
        label["ts"] = prod["ts"] + 0.5
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("events", "labels")}
    paths["events"].write_bytes(b"\n".join(map(orjson.dumps, rows)) + b"\n")
    paths["labels"].write_bytes(b"\n".join(map(orjson.dumps, labels)) + b"\n")
    label_flags = ["--labels", str(paths["labels"])] if with_labels else []
    code = main(["replay", str(paths["events"]), "--baseline", str(baseline), *label_flags,
                 "--shadow", "credit=credit-v2", "--shadow-window", "500", "--join-ttl", "100"])
    out, err = capsys.readouterr()
    assert code == 0
    [alert] = [a for a in map(json.loads, out.splitlines()) if a["kind"] == "shadow"]
    assert alert["evidence"]["separating_features"][0]["segment"] == "'country' = 'DE'"
    assert alert["next_step"].startswith("hold the rollout of 'credit-v2'")
    assert "replay: join shadow credit=credit-v2: matched 4000, waiting 1" in err
    assert "replay: shadow 'credit=credit-v2': 4,000 requests joined, agreement" in err
    if with_labels:
        assert "candidate_worse" not in err and "(candidate) vs" in err and "candidate worse" in err
    assert "without a baseline" not in err and "replay: rejected 0\n" in err


def test_replay_refuses_a_malformed_shadow_pair(tmp_path, capsys):
    from stream.commands.cli import main

    baseline = tmp_path / "credit.msgpack"
    CLASSIFIER.save(baseline)
    events_file = tmp_path / "e.jsonl"
    events_file.write_text("{}\n")
    assert main(["replay", str(events_file), "-b", str(baseline), "--shadow", "credit"]) == 2
    assert "--shadow: 'credit' is not production=candidate" in capsys.readouterr().err


# ---- status page and report -------------------------------------------------------------------------
def alerted_snapshot() -> dict:
    joins = JoinMonitor({"credit": CLASSIFIER}.get, parity=False, shadow=[PAIR])
    pairs, labels = labelled_pairs(3000, 0.9, 0.9, seed=4)
    for i, (prod, cand) in enumerate(pairs):
        if i >= 1000 and prod["features"]["country"] == "FR":
            cand["prediction"] = 1 - prod["prediction"]
        joins.add_predictions([prod, cand])
    joins.add_labels(labels)
    return joins.snapshot()["shadow"]


def test_the_status_page_lists_each_pair_with_its_recent_agreement(monkeypatch):
    import sys
    import types

    from stream.worker import pages

    snapshot = alerted_snapshot()
    snapshot["<b>evil=x</b>"] = {"joined": 0}
    rows = "\n".join(pages.shadow_rows(snapshot))
    assert "<h2>Shadow candidates</h2>" in rows and "<b>credit=credit-v2</b>" in rows
    assert "badge warning'>disagrees" in rows  # the last window is below the expected agreement
    assert "100%, 100%, 100%" not in rows and "(n=3000)" in rows and "candidate worse" in rows
    assert "&lt;b&gt;evil=x&lt;/b&gt;" in rows and "<b>evil" not in rows.replace("<b><b>", "")
    monkeypatch.setitem(sys.modules, "stream.worker.joins", types.SimpleNamespace(joins=types.SimpleNamespace(
        shadow_snapshot=lambda: snapshot)))
    assert pages._shadow_snapshot() is snapshot
    monkeypatch.delitem(sys.modules, "stream.worker.joins")
    assert pages._shadow_snapshot() == {}


def test_the_report_draws_each_pairs_agreement_per_window(tmp_path):
    import orjson

    from stream.commands.cli import main

    baseline = tmp_path / "credit.msgpack"
    CLASSIFIER.save(baseline)
    pairs = pair_events(4000, lambda i, ev: 0 if i >= 2000 and ev["features"]["country"] == "FR" else 1)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps([p, c]) for p, c in pairs) + b"\n")
    out = tmp_path / "report.html"
    assert main(["report", str(path), "-b", str(baseline), "-o", str(out), "--shadow", "credit=credit-v2"]) == 0
    page = out.read_text()
    section = page[page.index('<section id="shadow">'):page.index("</section>", page.index('<section id="shadow">'))]
    assert "4,000 requests joined" in section and "4 windows" in section and "2 below it" in section
    assert section.count("<svg") == 1 and section.count("<path d=") == 2 + 1  # a diamond per window below it, + legend
    assert "shadow candidate disagrees" in page  # the alert's card in the production model's section
    assert "r1234" not in page


def test_the_gauges_show_each_pairs_last_window_and_nothing_before_it():
    from prometheus_client import CollectorRegistry

    from stream.worker.metrics import Metrics

    shadow = ShadowMonitor([PAIR, ("credit", "credit-v3")], {"credit": CLASSIFIER}.get, JoinConfig(shadow_window=100))
    run(shadow, pair_events(150, lambda i, ev: 0 if i % 10 == 0 else 1))
    metrics = Metrics(CollectorRegistry())
    metrics.observe_shadow(shadow.figures())
    text = metrics.exposition().decode()
    assert 'skewwatch_shadow_agreement{candidate="credit-v2",model="credit"} 0.9' in text
    assert 'skewwatch_shadow_joined{candidate="credit-v2",model="credit"} 150.0' in text
    assert 'skewwatch_shadow_confidence_diff{candidate="credit-v2",model="credit"} -0.05' in text
    assert 'skewwatch_shadow_expected_agreement{candidate="credit-v2"' in text
    assert 'skewwatch_shadow_joined{candidate="credit-v3",model="credit"} 0.0' in text  # no event of it yet
    assert 'skewwatch_shadow_agreement{candidate="credit-v3"' not in text
