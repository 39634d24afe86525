"""Float-coded categoricals (issue 13): a CSV writes a code column of floats as `2.0`; the events
send the number 2, 2.0 or the text "2". One number, one category (baselines.profile.number_spelling,
docs/contracts.md), so untouched data does not alert; a code training never had still does."""
from __future__ import annotations

import json

import numpy as np
import pytest

from baselines.build import build_baseline, build_baseline_from_columns
from detectors.diagnosis import diagnose_categorical
from detectors.extract import FeatureColumns
from tests.test_baseline_build_inputs import replay_alerts, write_training_csv


def test_a_number_takes_the_training_spelling_of_the_same_number():
    cols = FeatureColumns([], ["code", "zip"], [["2.0", "1.0", "-3.5", "1"], ["02134", "7"]])
    values = [(2, "02134"), (2.0, "2134"), ("2", 7.0), ("2.00", "07"), (1, 7), ("-3.50", "7.0"), (4, None)]
    _, (codes, _, others), _ = cols.extract([{"code": c, "zip": z} for c, z in values])
    # "1.0" and "1" both write 1: the exact spelling first, then the first listed
    assert codes.tolist() == [[0, 0, 0, 0, 3, 2, 4], [0, 2, 1, 2, 1, 1, -1]]
    # leading zeros make an identity, not a number: "2134" and "07" stay unseen
    assert others == [[(6, "4")], [(1, "2134"), (3, "07")]]


def write_events(path, codes, n=3000, seed=1):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"model": "m", "features": {
                "amount": float(rng.normal(50, 10)), "country": str(rng.choice(["US", "FR", "DE"])),
                "is_new": bool(rng.random() < 0.5), "code": codes[int(rng.integers(len(codes)))]}}) + "\n")
    return path


@pytest.fixture
def csv_baseline(tmp_path):
    """A baseline from a CSV whose `code` column pandas wrote as floats: 1.0, 2.0, 3.0."""
    path = tmp_path / "b.msgpack"
    build_baseline(write_training_csv(tmp_path / "train.csv"), model="m", categorical=["code"]).save(path)
    return path


@pytest.mark.parametrize("codes", [[1, 2, 3], [1.0, 2.0, 3.0], ["1", "2", "3"], ["1.0", "2.0", "3.0"],
                                   [1, "2", 3.0]], ids=["ints", "floats", "strings", "csv-text", "mixed"])
def test_float_coded_csv_baseline_matches_the_events_numbers(tmp_path, capsys, csv_baseline, codes):
    assert replay_alerts(capsys, write_events(tmp_path / "e.jsonl", codes), csv_baseline) == []


def test_a_real_change_of_codes_still_alerts(tmp_path, capsys, csv_baseline):
    alerts = replay_alerts(capsys, write_events(tmp_path / "e.jsonl", [1, 2, 4]), csv_baseline)
    assert [(a["feature"], a["detector"]) for a in alerts][:1] == [("code", "unseen_category")]


def test_a_code_that_lost_its_leading_zero_is_unseen_and_reads_as_formatting():
    """Zip codes are identities: 2134 is not "02134" to the monitors, and the diagnosis names the respelling."""
    profile = build_baseline_from_columns("m", {"zip": ["02134", "02139", "10001"] * 400},
                                          categorical=("zip",)).features["zip"]
    d = diagnose_categorical(profile, {"2134": 200, "2139": 200, "10001": 200}, n_missing=0, n_total=600)
    assert d.cause == "formatting" and d.evidence["mappings"][0]["rule"] == "number_format", d.sentence
