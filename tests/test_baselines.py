"""Baseline builder (CSV / JSONL / Parquet / columns), storage and the `skewwatch baseline` command."""
from __future__ import annotations

import gzip
import io
import json
import sys

import msgpack
import numpy as np
import pandas as pd
import pytest

from baselines import accumulate
from baselines.build import MIN_ROWS, BuildError, build_baseline, build_baseline_from_columns
from baselines.profile import QUANTILE_PROBS, SCHEMA, Baseline, BaselineError
from baselines.show import baseline_json, format_baseline
from stream.commands import progress
from stream.commands.cli import main as cli

#: the library builds these small fixtures; files under MIN_ROWS rows are refused by default
#: (tests/test_baseline_build_inputs.py)
SMALL = {"min_rows": 1}
#: the fixtures profile columns named confidence/pred/label as features on purpose
pytestmark = pytest.mark.filterwarnings("ignore::baselines.build.BuildWarning")


def write_csv(path, text):
    path.write_text(text.strip() + "\n")
    return path


def mixed_rows(n=400, seed=1):
    """A CSV with every case: numbers, junk, blanks, bool-like, codes, classification outputs."""
    rng = np.random.default_rng(seed)
    lines = ["amount,country,active,zip,confidence,pred,label,note"]
    for i in range(n):
        amount = f"{rng.normal(50, 10):.3f}"
        if i == 3:
            amount = "abc"  # invalid
        elif i == 4:
            amount = "inf"  # invalid
        elif i % 10 == 5:
            amount = ""  # missing
        elif i == 6:
            amount = "NA"  # missing (a null spelling)
        country = ["US", "FR", "NA", ""][i % 4]  # "NA" is Namibia here; "" is missing
        active = ["true", "False"][i % 2]
        conf = "1.5" if i == 7 else f"{rng.random():.3f}"
        pred = i % 2
        label = pred if i % 5 else 1 - pred  # 80 % correct
        lines.append(f"{amount},{country},{active},{i:05d},{conf},{pred},{label},")
    return "\n".join(lines)


# ---- CSV ---------------------------------------------------------------------------------
def test_csv_kinds_counts_and_roles(tmp_path):
    path = write_csv(tmp_path / "train.csv", mixed_rows())
    b = build_baseline(path, model="credit", version="3", confidence_column="confidence",
                       prediction_column="pred", label_column="label", **SMALL)
    assert list(b.features) == ["amount", "country", "active", "zip", "note"]
    assert b.model == "credit" and b.version == "3" and b.n_rows == 400 and b.source == str(path)

    amount = b.features["amount"]
    assert amount.kind == "numeric"
    assert (amount.n_invalid, amount.n_missing) == (2, 41)  # abc, inf / 40 blanks + "NA"
    assert amount.count == 400 - 43
    assert 45 < amount.mean < 55 and 8 < amount.std < 12

    country = b.features["country"]
    assert country.kind == "categorical" and country.n_missing == 100
    assert country.categories == {"FR": 1 / 3, "NA": 1 / 3, "US": 1 / 3}

    active = b.features["active"]  # CSV text is kept as written, booleans included
    assert active.kind == "categorical" and active.categories == {"False": 0.5, "true": 0.5}

    assert b.features["zip"].kind == "numeric"  # digits look like numbers unless told otherwise
    assert b.features["note"].kind == "categorical" and b.features["note"].n_missing == 400

    assert b.confidence.count == 399 and b.confidence.n_invalid == 1  # 1.5 is outside [0, 1]
    assert b.prediction.kind == "categorical" and b.prediction.categories == {"0": 0.5, "1": 0.5}
    assert b.metric == {"name": "accuracy", "value": 0.8, "n": 400}


def test_csv_overrides(tmp_path):
    path = write_csv(tmp_path / "train.csv", mixed_rows())
    b = build_baseline(path, model="m", categorical=["zip"], exclude=["note", "label"], **SMALL)
    assert "note" not in b.features and "label" not in b.features
    zip_ = b.features["zip"]
    assert zip_.kind == "categorical" and "00007" in zip_.categories and zip_.n_distinct == 400
    # without roles, confidence and pred are plain features
    assert b.features["confidence"].kind == "numeric" and b.features["pred"].kind == "numeric"
    assert b.confidence is None and b.prediction is None and b.metric is None


def test_regression_prediction_gives_mae(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.normal(size=1000)
    frame = pd.DataFrame({"x": rng.normal(size=1000), "y_hat": y + 0.5, "y": y})
    frame.to_csv(tmp_path / "reg.csv", index=False)
    b = build_baseline(tmp_path / "reg.csv", model="m", prediction_column="y_hat", label_column="y")
    assert b.prediction.kind == "numeric"
    assert b.metric["name"] == "mae" and b.metric["n"] == 1000
    assert b.metric["value"] == pytest.approx(0.5, abs=1e-3)  # the CSV rounds floats
    assert list(b.features) == ["x"]


def test_gzipped_csv_equals_plain(tmp_path):
    text = mixed_rows()
    plain = write_csv(tmp_path / "t.csv", text)
    zipped = tmp_path / "t.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    a = build_baseline(plain, model="m", **SMALL).to_dict()
    z = build_baseline(zipped, model="m", **SMALL).to_dict()
    for d in (a, z):
        d.pop("created"), d.pop("source")
    assert a == z


def test_chunking_does_not_change_the_profile(tmp_path):
    """Chunks of 7 rows give the profile of one chunk: exact counts and the same sample."""
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame({
        "x": rng.normal(size=n),  # larger than the reservoir: the sampled path
        "k": rng.integers(0, 7, n),  # few values: the exact path
        "c": rng.choice(["a", "b", "c", "d"], n),
        "conf": rng.random(n),
    })
    frame.loc[frame.index % 13 == 0, "x"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    kwargs = dict(model="m", confidence_column="conf", reservoir_size=500)
    small = build_baseline(tmp_path / "t.csv", chunk_rows=7, **kwargs)
    whole = build_baseline(tmp_path / "t.csv", chunk_rows=10_000, **kwargs)
    for name in ("x", "k", "c"):
        s, w = small.features[name], whole.features[name]
        assert (s.count, s.n_missing, s.n_invalid) == (w.count, w.n_missing, w.n_invalid)
        if s.kind == "numeric":
            assert (s.min, s.max) == (w.min, w.max)
            assert s.mean == pytest.approx(w.mean, rel=1e-12, abs=1e-12)
            assert s.std == pytest.approx(w.std, rel=1e-12)
            np.testing.assert_array_equal(s.quantiles, w.quantiles)
            np.testing.assert_array_equal(s.bin_edges, w.bin_edges)
            np.testing.assert_array_equal(s.bin_freqs, w.bin_freqs)
        else:
            assert s.categories == w.categories
    np.testing.assert_array_equal(small.confidence.quantiles, whole.confidence.quantiles)


# ---- JSONL and Parquet ---------------------------------------------------------------------
def test_jsonl_event_format(tmp_path):
    lines = []
    for i in range(300):
        features = {"amount": float(i), "country": ["US", "FR", "DE"][i % 3], "flag": i % 2 == 0}
        if i == 10:
            features["amount"] = "12.5"  # a string in a numeric feature: invalid
        if i % 50 == 1:
            del features["country"]  # absent: missing
        if i >= 100:
            features["late"] = i  # appears later: missing before
        lines.append(json.dumps({"model": "credit", "model_version": "1", "request_id": f"r{i}",
                                 "features": features, "prediction": ["yes", "no"][i % 2],
                                 "confidence": 0.9, "label": ["yes", "no"][i % 2]}))
    lines.insert(5, "")  # blank lines are skipped
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    b = build_baseline(path, model="credit", confidence_column="confidence",
                       prediction_column="prediction", label_column="label", chunk_rows=64, **SMALL)
    assert list(b.features) == ["amount", "country", "flag", "late"]  # metadata is not a feature
    assert b.features["amount"].kind == "numeric" and b.features["amount"].n_invalid == 1
    assert b.features["country"].n_missing == 6
    assert b.features["flag"].kind == "categorical" and b.features["flag"].categories == {"false": 0.5, "true": 0.5}
    late = b.features["late"]
    assert late.kind == "numeric" and (late.count, late.n_missing) == (200, 100) and late.min == 100
    assert b.confidence.count == 300 and b.prediction.categories == {"no": 0.5, "yes": 0.5}
    assert b.metric == {"name": "accuracy", "value": 1.0, "n": 300}


def test_flat_ndjson_and_bad_line(tmp_path):
    path = tmp_path / "t.ndjson"
    path.write_text('{"a": 1, "b": "x"}\n{"a": null, "b": "y"}\n')
    b = build_baseline(path, model="m", **SMALL)
    assert b.features["a"].count == 1 and b.features["a"].n_missing == 1
    path.write_text('{"a": 1}\n{"a": 2\n')
    with pytest.raises(BuildError, match=r"t.ndjson:2: invalid JSON"):
        build_baseline(path, model="m")
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(BuildError, match=r"t.ndjson:2: not a JSON object"):
        build_baseline(path, model="m")


def test_parquet_flat_and_event_shaped(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n = 1000
    rng = np.random.default_rng(4)
    flat = pa.table({
        "amount": pa.array(np.where(np.arange(n) % 10 == 0, None, rng.normal(size=n)).tolist(), pa.float64()),
        "count": pa.array(rng.integers(0, 5, n)),
        "country": pa.array(rng.choice(["US", "FR"], n)).dictionary_encode(),
        "ok": pa.array(rng.random(n) < 0.3),
        "score": pa.array(rng.random(n)),
    })
    pq.write_table(flat, tmp_path / "flat.parquet", row_group_size=300)
    b = build_baseline(tmp_path / "flat.parquet", model="m", confidence_column="score", chunk_rows=256)
    kinds = {k: p.kind for k, p in b.features.items()}
    assert kinds == {"amount": "numeric", "count": "numeric", "country": "categorical", "ok": "categorical"}
    assert b.features["amount"].n_missing == 100 and b.features["count"].integer_valued
    assert set(b.features["country"].categories) == {"US", "FR"}
    assert set(b.features["ok"].categories) == {"true", "false"}
    assert b.confidence.count == n and b.n_rows == n

    features = [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}, {"a": None, "b": "x"}]
    events = pa.table({"model": ["m"] * 3, "features": features})
    pq.write_table(events, tmp_path / "events.parquet")
    b = build_baseline(tmp_path / "events.parquet", model="m", exclude=["model"], **SMALL)
    assert list(b.features) == ["a", "b"] and b.features["a"].n_missing == 1


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(BuildError, match=r"skewwatch\[parquet\]"):
        build_baseline(path, model="m")


def test_missing_file_unknown_format_unknown_column(tmp_path):
    with pytest.raises(BuildError, match="no such file"):
        build_baseline(tmp_path / "nope.csv", model="m")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(BuildError, match="unknown training data format"):
        build_baseline(tmp_path / "t.xlsx", model="m")
    path = write_csv(tmp_path / "t.csv", "a,b\n1,2")
    with pytest.raises(BuildError, match="--categorical column 'zzz' is not in the data"):
        build_baseline(path, model="m", categorical=["zzz"])
    with pytest.raises(BuildError, match="--confidence-column column 'c'"):
        build_baseline(path, model="m", confidence_column="c")
    with pytest.raises(BuildError, match="needs a prediction column"):
        build_baseline(path, model="m", label_column="a")


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.jsonl", "t.parquet"])
def test_progress_callback(tmp_path, name):
    frame = pd.read_csv(write_csv(tmp_path / "source.csv", mixed_rows(250)))
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    elif ".jsonl" in name:
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    calls = []
    build_baseline(path, model="m", chunk_rows=100, progress=lambda *report: calls.append(report), **SMALL)
    assert [rows for rows, _, _ in calls] == [100, 200, 250]
    size = path.stat().st_size
    assert all(0 < read <= total == size for _, read, total in calls) and calls[-1][1] == size


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_builder_draws_nothing(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "t.csv", mixed_rows(250))
    monkeypatch.setattr(sys, "stderr", FakeTerminal())  # the display is the CLI's, even on a terminal
    build_baseline(path, model="m", chunk_rows=100, **SMALL)
    assert sys.stderr.getvalue() == ""


def test_cli_progress_line_on_a_terminal_only(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "t.csv", mixed_rows(1000))
    argv = ["baseline", "build", str(path), "-o", str(tmp_path / "b.msgpack"), "--model", "m",
            "--confidence-column", "confidence", "--prediction-column", "pred", "--label-column", "label"]
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(progress, "DELAY", 0.0)  # drawn from the first chunk on, at every chunk
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    assert cli(argv) == 0
    *_, last, erased = terminal.getvalue().split("\r")
    assert last.startswith("\x1b[Kt.csv: 1,000 rows read, ") and last.endswith(" rows/s, 100%, ETA 0:00"), last
    assert erased.startswith("\x1b[Kwrote "), erased  # the line is erased before the summary
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: only the summary
    assert cli(argv) == 0
    assert sys.stderr.getvalue().startswith("wrote ") and "\r" not in sys.stderr.getvalue()


# ---- profiles from columns -----------------------------------------------------------------
def test_numeric_profile_exact_when_column_fits_the_sample():
    rng = np.random.default_rng(5)
    x = rng.lognormal(size=5000)
    p = build_baseline_from_columns("m", {"x": x}).features["x"]
    assert (p.count, p.min, p.max) == (5000, x.min(), x.max())
    assert p.mean == pytest.approx(x.mean(), rel=1e-12) and p.std == pytest.approx(x.std(), rel=1e-12)
    np.testing.assert_allclose(p.quantiles, np.quantile(x, QUANTILE_PROBS), rtol=1e-12)
    assert len(p.bin_edges) == 19 and np.all(np.diff(p.bin_edges) > 0)
    counted = np.bincount(np.searchsorted(p.bin_edges, x, side="left"), minlength=20) / len(x)
    np.testing.assert_allclose(p.bin_freqs, counted)
    assert p.discrete_values is None and not p.integer_valued and p.top_values == ()


def test_discrete_column_is_exact_beyond_the_sample():
    rng = np.random.default_rng(6)
    k = rng.integers(0, 10, 20_000).astype(float)
    p = build_baseline_from_columns("m", {"k": k}, reservoir_size=100).features["k"]
    np.testing.assert_allclose(p.quantiles, np.quantile(k, QUANTILE_PROBS), atol=1e-12)
    np.testing.assert_array_equal(p.discrete_values, np.arange(10.0))
    np.testing.assert_allclose(p.discrete_freqs, np.bincount(k.astype(int)) / len(k))
    assert p.integer_valued and len(p.top_values) == 10
    assert np.all(np.diff(p.bin_edges) > 0) and p.bin_edges[-1] < 9
    counted = np.bincount(np.searchsorted(p.bin_edges, k, side="left"), minlength=len(p.bin_edges) + 1) / len(k)
    np.testing.assert_allclose(p.bin_freqs, counted)


def test_sampled_quantiles_are_close_and_keep_the_extremes():
    rng = np.random.default_rng(7)
    x = rng.normal(size=200_000)
    p = build_baseline_from_columns("m", {"x": x}, reservoir_size=20_000).features["x"]
    assert (p.quantiles[0], p.quantiles[-1]) == (x.min(), x.max())
    true_cdf = np.searchsorted(np.sort(x), p.quantiles[1:-1]) / len(x)
    assert np.max(np.abs(true_cdf - QUANTILE_PROBS[1:-1])) < 0.015  # DKW-scale error of a 20k sample
    assert p.bin_freqs.sum() == pytest.approx(1.0)


def test_default_fill_shows_in_top_values():
    rng = np.random.default_rng(8)
    x = rng.normal(size=50_000)
    x[rng.random(50_000) < 0.1] = -1.0  # a default fill
    p = build_baseline_from_columns("m", {"x": x}, reservoir_size=10_000).features["x"]
    value, share = p.top_values[0]
    assert value == -1.0 and share == pytest.approx(0.1, abs=0.015)


def test_categorical_top_k_other_bucket_and_bounded_counter(monkeypatch):
    values = [f"c{i % 10}" for i in range(1000)] + [None] * 10 + [{"nested": 1}]
    p = build_baseline_from_columns("m", {"c": values}, top_k=3).features["c"]
    assert len(p.categories) == 3 and p.n_distinct == 10
    assert p.other_freq == pytest.approx(0.7) and sum(p.categories.values()) + p.other_freq == pytest.approx(1.0)
    assert (p.n_missing, p.n_invalid) == (10, 1)

    monkeypatch.setattr(accumulate, "CATEGORY_COUNTER_CAP", 20)
    heavy = ["hot"] * 500 + [f"rare{i}" for i in range(500)]
    p = build_baseline_from_columns("m", {"c": heavy}, chunk_rows=50).features["c"]
    assert p.categories["hot"] == 0.5  # frequent categories survive pruning
    assert 20 < p.n_distinct <= 501  # a lower bound once pruned
    assert sum(p.categories.values()) + p.other_freq == pytest.approx(1.0)


def test_typed_columns_missing_and_invalid():
    b = build_baseline_from_columns(
        "m",
        {"x": [1.0, None, float("nan"), float("inf"), "2", True, {"a": 1}] + [3] * 60,
         "n": np.arange(67)},
        confidence=[0.5, -0.1, None, 1.0, 0.2, 0.3, 2.0] + [0.5] * 60,
        prediction=[1, 0, 1, 1, 0, 0, 1] + [1] * 60,
        labels=[1.0, 0.0, 0.0, 1.0, None, 0.0, 1.0] + [0] * 60,
    )
    x = b.features["x"]
    assert (x.count, x.n_missing, x.n_invalid) == (61, 2, 4)  # inf, "2", True, {...} are invalid
    assert b.confidence.count == 64 and b.confidence.n_invalid == 2 and b.confidence.n_missing == 1
    assert b.metric == {"name": "accuracy", "value": 5 / 66, "n": 66}  # 1 and 1.0 are the same class
    assert set(b.features) == {"x", "n"}


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(BuildError, match="different lengths"):
        build_baseline_from_columns("m", {"a": [1, 2], "b": [1]})


# ---- storage ---------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    path = write_csv(tmp_path / "t.csv", mixed_rows())
    b = build_baseline(path, model="credit", confidence_column="confidence", prediction_column="pred",
                       label_column="label", categorical=["zip"], **SMALL)
    b.save(tmp_path / "b.msgpack")
    loaded = Baseline.load(tmp_path / "b.msgpack")
    assert loaded.to_dict() == b.to_dict()


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(9)
    b = build_baseline_from_columns("credit", {"amount": rng.normal(size=500), "country": ["US", "FR"] * 250},
                                    confidence=rng.random(500), version="2")
    path = tmp_path / "b.msgpack"
    b.save(path)
    return path


def corrupt_files(saved):
    raw = saved.read_bytes()
    d = msgpack.unpackb(raw)
    wrong_version = dict(d, schema_version=99)
    bad_quantiles = json.loads(json.dumps(d))
    bad_quantiles["features"]["amount"]["quantiles"] = [0.0] * 10
    return {
        "truncated": (raw[: len(raw) // 2], "not a msgpack file"),
        "garbage": (b"\x00\xff garbage", "not a msgpack file"),
        "foreign": (msgpack.packb({"hello": "world"}), "not a skewwatch baseline"),
        "json": (json.dumps(d).encode(), "not a msgpack file"),
        "wrong version": (msgpack.packb(wrong_version), "schema version 99 is not supported"),
        "bad quantiles": (msgpack.packb(bad_quantiles), "quantiles must be 1001"),
    }


def test_corrupt_baselines_raise_a_clear_error(saved, tmp_path):
    for case, (raw, message) in corrupt_files(saved).items():
        path = tmp_path / f"{case}.msgpack"
        path.write_bytes(raw)
        with pytest.raises(BaselineError, match=message):
            Baseline.load(path)


def test_cli_show_corrupt_baseline_exits_2_with_one_line(saved, tmp_path, capsys):
    for case, (raw, message) in corrupt_files(saved).items():
        path = tmp_path / f"{case}.msgpack"
        path.write_bytes(raw)
        assert cli(["baseline", "show", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and message in err and "Traceback" not in err


# ---- show and the command --------------------------------------------------------------------
def test_format_baseline_lists_every_feature(saved):
    text = format_baseline(Baseline.load(saved))
    assert text.startswith("model credit  version 2  rows 500")
    assert "confidence  numeric, 500 values" in text
    table = text.split("\n\n", 1)[1].splitlines()
    assert table[0].split()[:3] == ["feature", "kind", "count"]
    assert table[1].split()[:3] == ["amount", "numeric", "500"]
    assert table[2].split()[:3] == ["country", "categorical", "500"] and "US 50%" in table[2]


def test_cli_build_and_show(tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", mixed_rows(1000))
    out = tmp_path / "b.msgpack"
    code = cli(["baseline", "build", str(train), "-o", str(out), "--model", "credit", "--version", "7",
                "--confidence-column", "confidence", "--prediction-column", "pred", "--label-column", "label",
                "--categorical", "zip", "--exclude", "note"])
    assert code == 0 and "wrote" in capsys.readouterr().err
    b = Baseline.load(out)
    assert b.version == "7" and b.features["zip"].kind == "categorical" and "note" not in b.features

    assert cli(["baseline", "show", str(out)]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in ("amount", "country", "active", "zip")) and "accuracy 0.8" in text

    assert cli(["baseline", "show", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["schema"] == SCHEMA and len(d["features"]["amount"]["quantiles"]) == 1001
    assert json.loads(baseline_json(b)) == d


@pytest.mark.parametrize("args, message", [
    (["build", "{tmp}/nope.csv", "-o", "{tmp}/b", "--model", "m"], "no such file"),
    (["build", "{tmp}/t.txt", "-o", "{tmp}/b", "--model", "m"], "unknown training data format"),
    (["build", "{tmp}/t.csv", "-o", "{tmp}/b", "--model", "m", "--categorical", "zzz"], "'zzz' is not in the data"),
    (["build", "{tmp}/t.csv", "-o", "{tmp}/missing-dir/b", "--model", "m"], "No such file or directory"),
    (["show", "{tmp}/nope.msgpack"], "cannot read baseline"),
])
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    write_csv(tmp_path / "t.csv", "a,b\n" + "1,x\n" * MIN_ROWS)
    (tmp_path / "t.txt").write_text("a,b\n1,x\n")
    code = cli(["baseline"] + [a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_role_profiles_are_named_by_their_role():
    rng = np.random.default_rng(3)
    b = build_baseline_from_columns("m", {"x": rng.normal(size=500)}, confidence=rng.uniform(size=500),
                                    prediction=rng.integers(0, 2, 500), labels=rng.integers(0, 2, 500))
    assert (b.confidence.name, b.prediction.name) == ("confidence", "prediction")
