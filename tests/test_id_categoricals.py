"""ID-like categoricals (tail numbers, store ids): a 4,000-level column whose baseline keeps only its
top 1,000 categories, or has not seen every level, alarms on nothing but a real change.

A faithful synthetic reproduction of the real case: the baseline is built from 50k (or 5k) rows of
one generator, production is 100k events of the same generator with another seed (exchangeable).
Before the held-out "other" share, every one of these no-change replays raised `unseen_category`
or `chi2` alerts: the top-K's own selection inflates its training shares (its "other" share is too
low) and the never-seen IDs that the training's singletons predict (Good-Turing) were not expected.
"""
from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
import pytest

from baselines.build import build_baseline_from_columns
from baselines.profile import Baseline, CategoricalProfile
from detectors.diagnosis import diagnose_categorical
from detectors.fmt import percent
from detectors.model import ModelMonitor
from stream.devkit.synthetic.scenarios import replay

LEVELS = 4_000
IDS = np.array([f"N{i:04d}K" for i in range(LEVELS)], dtype=object)  # tail-number-like
#: the 50 brand-new IDs a real shift moves traffic to
NEW_IDS = np.array([f"Z{i:03d}Q" for i in range(50)], dtype=object)


def shares(kind: str) -> np.ndarray:
    """Uniform over the levels, or Zipf-like (share ~ 1 / sqrt(rank), as flights per aircraft)."""
    w = np.ones(LEVELS) if kind == "uniform" else 1.0 / np.sqrt(np.arange(1, LEVELS + 1))
    return w / w.sum()


def draw(kind: str, n: int, seed: int) -> np.ndarray:
    return IDS[np.random.default_rng([seed, n]).choice(LEVELS, n, p=shares(kind))]


@cache
def id_baseline(kind: str, n_train: int) -> Baseline:
    return build_baseline_from_columns("flights", {"tail": draw(kind, n_train, seed=1).tolist()},
                                       categorical=["tail"])


def alerts_on(baseline: Baseline, values: np.ndarray) -> list:
    return replay(ModelMonitor(baseline), [{"model": "flights", "features": {"tail": v}} for v in values])


@pytest.mark.parametrize("kind, n_train", [("zipf", 50_000), ("uniform", 50_000), ("zipf", 5_000),
                                           ("uniform", 5_000)])
def test_no_change_replay_of_an_id_like_categorical_raises_no_alert(kind, n_train):
    alerts = alerts_on(id_baseline(kind, n_train), draw(kind, 100_000, seed=2))
    assert not alerts, [(a.detector, a.events_seen, a.diagnosis) for a in alerts]


def test_thirty_percent_of_traffic_moving_to_fifty_new_ids_alerts_as_new_category():
    values = draw("zipf", 20_000, seed=3)
    rng = np.random.default_rng(4)
    moved = np.flatnonzero(rng.random(10_000) < 0.3) + 10_000
    values[moved] = NEW_IDS[rng.integers(0, len(NEW_IDS), len(moved))]
    alerts = alerts_on(id_baseline("zipf", 50_000), values)
    assert alerts and all(a.events_seen > 10_000 for a in alerts), [(a.detector, a.events_seen) for a in alerts]
    first = alerts[0]
    assert first.events_seen <= 11_000 and first.evidence["cause"] == "new_category", (first.detector, first.diagnosis)
    # the sentence weighs the share outside the training categories against what training predicts
    assert "outside the training categories against" in first.diagnosis, first.diagnosis


def test_ids_sent_in_lower_case_alert_as_letter_case():
    values = draw("zipf", 20_000, seed=5)
    values[10_000:] = [v.lower() for v in values[10_000:]]
    alerts = alerts_on(id_baseline("zipf", 50_000), values)
    assert alerts and alerts[0].events_seen <= 10_200, [(a.detector, a.events_seen) for a in alerts]
    assert {a.evidence["cause"] for a in alerts} == {"letter_case"}, [a.diagnosis for a in alerts]


# ---- the baseline's held-out "other" share ---------------------------------------------------------
def test_held_out_other_share_is_good_turing_when_every_category_is_kept():
    values = draw("zipf", 5_000, seed=6).tolist()
    p = build_baseline_from_columns("m", {"c": values}, categorical=["c"], top_k=LEVELS).features["c"]
    seen = Counter(Counter(values).values())
    assert p.other_freq == 0.0 and (p.n_singletons, p.n_doubletons) == (seen[1], seen[2]) and seen[1] > 100
    assert p.heldout_other_freq == p.expected_other_freq == pytest.approx(seen[1] / 5_000)


@pytest.mark.parametrize("kind", ["uniform", "zipf"])
def test_held_out_other_share_undoes_the_top_k_selection(kind):
    p = id_baseline(kind, 50_000).features["tail"]
    truth = 1.0 - shares(kind)[np.isin(IDS, list(p.categories))].sum()  # of new values, outside the top-K
    assert len(p.categories) == 1_000 and p.other_freq < truth - 0.03  # the selection's bias
    assert p.heldout_other_freq == pytest.approx(truth, abs=0.01)


def test_a_baseline_built_before_the_held_out_share_still_loads_and_expects_its_other_share():
    d = id_baseline("zipf", 5_000).to_dict()
    for key in ("heldout_other_freq", "n_singletons", "n_doubletons"):
        del d["features"]["tail"][key]
    old = Baseline.from_dict(d).features["tail"]
    assert isinstance(old, CategoricalProfile)
    assert old.heldout_other_freq is None and old.expected_other_freq == old.other_freq
    ModelMonitor(Baseline.from_dict(d)).update_batch([{"model": "flights", "features": {"tail": "N0001K"}}])


def test_a_held_out_share_outside_zero_to_one_is_refused():
    d = id_baseline("zipf", 5_000).to_dict()
    d["features"]["tail"]["heldout_other_freq"] = 1.5
    with pytest.raises(ValueError, match="heldout_other_freq"):
        Baseline.from_dict(d)


# ---- the diagnosis words the long tail, not per-ID shares -----------------------------------------
def test_a_shift_of_an_id_like_feature_is_worded_by_its_long_tail_not_by_ids():
    p = id_baseline("uniform", 50_000).features["tail"]
    # 512 recent values: fewer than expected outside the top-K (values concentrate on its IDs)
    recent = Counter(np.random.default_rng(7).choice(list(p.categories), 300).tolist())
    outside = 212
    d = diagnose_categorical(p, recent, n_missing=0, n_total=512, n_values=sum(recent.values()) + outside)
    assert d.cause == "category_shift"
    assert d.sentence.startswith("category shares moved: values outside the training categories "
                                 f"{percent(p.expected_other_freq)} -> 41.4%"), d.sentence
    assert "rare training categories" in d.sentence and "'N" not in d.sentence, d.sentence
    assert d.evidence["largest_moves"] == {}
