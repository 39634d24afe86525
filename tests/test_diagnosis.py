"""Diagnosis rules: each on a seeded stream with exactly that defect, and a genuine shift of similar
size that must not be mislabelled as it."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from baselines.build import build_baseline_from_columns
from baselines.profile import QUANTILE_PROBS, CategoricalProfile, NumericProfile
from detectors.diagnosis import (
    ChangeTiming,
    Diagnosis,
    diagnose_categorical,
    diagnose_change_time,
    diagnose_numeric,
    diagnose_versions,
)

N_TRAIN = 20_000
N_RECENT = 512  # the monitor's ring buffer of recent values


def numeric_profile(values, name: str = "x") -> NumericProfile:
    profile = build_baseline_from_columns("m", {name: values}).features[name]
    assert isinstance(profile, NumericProfile)
    return profile


def categorical_profile(values, name: str = "c") -> CategoricalProfile:
    profile = build_baseline_from_columns("m", {name: values}, categorical=(name,)).features[name]
    assert isinstance(profile, CategoricalProfile)
    return profile


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def numeric(profile: NumericProfile, recent, *, n_missing: int = 0, n_invalid: int = 0, **kw) -> Diagnosis:
    recent = np.asarray(recent, dtype=np.float64)
    d = diagnose_numeric(profile, recent, n_missing=n_missing, n_invalid=n_invalid,
                         n_total=len(recent) + n_missing + n_invalid, **kw)
    json.dumps(d.alert_fields())  # evidence is JSON-ready
    return d


def categorical(profile: CategoricalProfile, values, *, n_missing: int = 0, **kw) -> Diagnosis:
    keys, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    d = diagnose_categorical(profile, dict(zip(keys.tolist(), counts.tolist())), n_missing=n_missing,
                             n_total=len(values) + n_missing, **kw)
    json.dumps(d.alert_fields())
    return d


@functools.cache
def latency_profile() -> NumericProfile:
    return numeric_profile(rng(0).lognormal(3.0, 0.8, N_TRAIN), "latency_ms")


@functools.cache
def score_profile() -> NumericProfile:
    """The seed's example feature, N(0.5, 0.2)."""
    return numeric_profile(rng(1).normal(0.5, 0.2, N_TRAIN), "score")


@pytest.fixture
def latency_ms() -> NumericProfile:
    return latency_profile()


@pytest.fixture
def score() -> NumericProfile:
    return score_profile()


# ---- the positive streams, one per diagnosis (also printed for docs/diagnosis.md by `python tests/test_diagnosis.py`)
def unit_change_example() -> Diagnosis:
    return numeric(latency_profile(), rng(2).lognormal(3.0, 0.8, N_RECENT) / 1000)


def numbers_as_strings_example() -> Diagnosis:
    valid = rng(5).normal(0.5, 0.2, 112)
    return numeric(score_profile(), valid, n_invalid=400, invalid_examples=["0.4312", "0.5127", " 0.61", "1e-3"])


def stuck_value_example() -> Diagnosis:
    recent = np.full(N_RECENT, 0.4137)
    recent[:5] = rng(9).normal(0.5, 0.2, 5)
    return numeric(score_profile(), recent)


def zero_fill_example() -> Diagnosis:
    train = rng(12).lognormal(3.0, 0.8, N_TRAIN).astype(object)
    train[rng(13).random(N_TRAIN) < 0.2] = None  # 20 % missing in training
    recent = rng(14).lognormal(3.0, 0.8, N_RECENT)
    recent[rng(15).random(N_RECENT) < 0.2] = 0.0  # serving fills them with 0
    return numeric(numeric_profile(train, "latency_ms"), recent, n_missing=0)


def integer_cast_example() -> Diagnosis:
    profile = numeric_profile(rng(20).normal(50, 3, N_TRAIN), "temperature")
    return numeric(profile, np.round(rng(21).normal(50, 3, N_RECENT)))


def float32_example() -> Diagnosis:
    return numeric(score_profile(), rng(24).normal(0.5, 0.2, N_RECENT).astype(np.float32))


def seed_example() -> Diagnosis:
    return numeric(score_profile(), rng(29).normal(0.3, 0.4, N_RECENT))


# ---- unit / scale change ---------------------------------------------------------------------
@pytest.mark.parametrize("factor, name",
                         [(1e-3, "1/1000"), (1000.0, "1000"), (1 / 60, "1/60"), (3600.0, "3600"), (100.0, "100")])
def test_unit_change_names_the_factor(latency_ms, factor, name):
    d = numeric(latency_ms, rng(2).lognormal(3.0, 0.8, N_RECENT) * factor)
    assert d.cause == "unit_change"
    assert d.evidence["factor"] == name
    assert d.is_pipeline_bug


def test_unit_change_sentence_and_evidence():
    d = unit_change_example()
    assert d.sentence.startswith("values look ~1/1000 of training at every quantile")
    assert d.evidence["ratio"] == pytest.approx(1e-3, rel=0.1)
    assert d.evidence["spread_ratio"] == pytest.approx(1e-3, rel=0.2)
    train_p50, prod_p50 = d.evidence["quantiles"]["p50"]
    assert prod_p50 / train_p50 == pytest.approx(1e-3, rel=0.15)


def test_unknown_large_ratio_is_a_scale_change(latency_ms):
    d = numeric(latency_ms, rng(2).lognormal(3.0, 0.8, N_RECENT) * 7.3)
    assert d.cause == "unit_change" and d.evidence["factor"] is None
    assert d.evidence["ratio"] == pytest.approx(7.3, rel=0.1)
    assert d.sentence == (f"values look ~{d.evidence['ratio']:.3g}x training at every quantile: "
                          "scale change in the serving pipeline")


def test_location_shift_of_a_narrow_feature_is_not_a_unit_change():
    """N(1000, 20) -> N(1500, 20): every quantile is ~1.5x training, but the spread did not scale."""
    profile = numeric_profile(rng(3).normal(1000, 20, N_TRAIN))
    d = numeric(profile, rng(4).normal(1500, 20, N_RECENT))
    assert d.cause == "location_shift"
    assert d.evidence["spread_ratio"] == pytest.approx(1.0, abs=0.2)


def test_location_shift_by_a_known_factor_is_not_a_unit_change():
    """N(100, 5) -> N(1000, 5): the median ratio is exactly 10, a known factor; the spread is not."""
    profile = numeric_profile(rng(3).normal(100, 5, N_TRAIN))
    assert numeric(profile, rng(4).normal(1000, 5, N_RECENT)).cause == "location_shift"


@pytest.mark.parametrize("factor, name", [(12.0, "12"), (1 / 12, "1/12"), (60.0, "60"), (100.0, "100")])
def test_unit_change_names_the_measured_factor_not_the_nearest_round_one(factor, name):
    """Years -> months is x12, not "10"; hPa -> Pa x100, of rounded readings (ties)."""
    profile = numeric_profile(np.round(rng(40).gamma(4.0, 3.0, N_TRAIN)) + 1)
    d = numeric(profile, (np.round(rng(41).gamma(4.0, 3.0, N_RECENT)) + 1) * factor)
    assert d.cause == "unit_change" and d.evidence["factor"] == name, d.sentence


@pytest.mark.parametrize("factor, name", [(2.54, "2.54"), (0.45359237, "0.4536"), (1 / 3.6, "1/3.6")])
def test_small_factors_are_named_on_a_precisely_measured_positive_feature(factor, name):
    """inches -> cm, lb -> kg, km/h -> m/s on a narrow positive feature (quantile ratios agree within 2 %)."""
    profile = numeric_profile(rng(42).normal(170, 10, N_TRAIN))
    d = numeric(profile, rng(43).normal(170, 10, N_RECENT) * factor)
    assert d.cause == "unit_change" and d.evidence["factor"] == name, d.sentence


def wind_speeds(seed: int, n: int) -> np.ndarray:
    """Daily wind in m/s as seattle-weather records it: on a 0.1 grid, 0.4 to ~10."""
    return np.round(np.clip(rng(seed).gamma(5.0, 0.65, n), 0.4, None), 1)


def test_a_small_factor_is_named_from_the_grid_the_values_moved_to():
    """m/s -> km/h on 40 recent values, 8 of them still from before the change (bench/realdata.py's
    seattle `wind`: the quantile ratios measure 3.1-3.5 there and spread 0.05, and x3.6 went unnamed):
    every value off training's 0.1 grid is 3.6 times a value on it."""
    profile = numeric_profile(wind_speeds(47, N_TRAIN))
    recent = np.concatenate([wind_speeds(48, 8), wind_speeds(49, 32) * 3.6])
    d = numeric(profile, recent)
    assert d.cause == "unit_change" and d.evidence["factor"] == "3.6", d.sentence
    assert d.evidence["grid"]["training_step"] == 0.1 and "off training's grid of 0.1" in d.sentence
    miles = np.round(rng(50).gamma(2.0, 520, N_TRAIN)) + 17  # flights' `distance`: whole miles
    d = numeric(numeric_profile(miles), (np.round(rng(51).gamma(2.0, 520, 40)) + 17) * 1.609344)
    assert d.cause == "unit_change" and d.evidence["factor"] == "1.609", d.sentence


@pytest.mark.parametrize("grow", [lambda x: 3 * x, lambda x: 3.6 * x + 0.05, lambda x: 1.6 * x])
def test_growth_of_a_feature_on_a_grid_is_not_named_by_the_grid(grow):
    """x3 keeps the 0.1 grid; x3.6 that leaves it for values that are not 3.6 times it (a
    measurement offset), x1.6 of whole miles: no value lattice, no factor read off it."""
    profile = numeric_profile(wind_speeds(47, N_TRAIN))
    d = numeric(profile, grow(wind_speeds(52, 96)))
    assert "grid" not in d.evidence, d.sentence


def test_a_feature_that_is_no_temperature_is_never_an_affine_conversion():
    """Delays in minutes (p99 far above any °C reading) that moved like x1.8 + 32 (a bad evening):
    only a temperature converts this way."""
    train = rng(68).gamma(3.0, 30, N_TRAIN) - 30
    profile = numeric_profile(np.round(train))
    d = numeric(profile, np.round((rng(69).gamma(3.0, 30, N_RECENT) - 30) * 1.8 + 32))
    assert "conversion" not in d.evidence, d.sentence


def test_doubling_of_a_wide_feature_is_not_kilograms_to_pounds():
    """x2 of a heavy-tailed feature measures a ratio of ~2.2 as often as 2: no small factor is named."""
    profile = numeric_profile(rng(44).lognormal(0, 2, N_TRAIN))
    for seed in range(20):
        assert numeric(profile, rng(100 + seed).lognormal(0, 2, N_RECENT) * 2).evidence.get("factor") is None


@pytest.mark.parametrize("conversion, convert", [("°C -> °F", lambda c: c * 1.8 + 32),
                                                 ("K -> °C", lambda c: c - 273.15)])
def test_affine_temperature_conversions(conversion, convert):
    train = rng(45).normal(12, 8, N_TRAIN)
    recent = rng(46).normal(12, 8, N_RECENT)
    if conversion == "K -> °C":  # training in kelvin, serving in celsius
        train, recent = train + 273.15, recent + 273.15
    d = numeric(numeric_profile(np.round(train, 1)), convert(np.round(recent, 1)))
    assert d.cause == "unit_change" and d.evidence["conversion"] == conversion, d.sentence
    assert f"converted {conversion}" in d.sentence


def test_genuine_growth_of_a_ratio_scale_feature_is_not_a_unit_change(latency_ms):
    """Everything 2x slower moves every quantile by 2x, like a unit change, but 2 is no unit factor."""
    d = numeric(latency_ms, rng(2).lognormal(3.0, 0.8, N_RECENT) * 2)
    assert d.cause == "location_scale_shift"


# ---- numbers as strings ------------------------------------------------------------------------
def test_numbers_arriving_as_strings():
    d = numbers_as_strings_example()
    assert d.cause == "type_change"
    assert d.evidence["invalid_rate"] == pytest.approx(400 / 512, rel=1e-3)
    assert d.evidence["numeric_examples"] == ["0.4312", "0.5127", " 0.61"]
    assert "arrive as strings that hold numbers" in d.sentence


def test_text_values_are_bad_data_not_numbers_as_strings(score):
    valid = rng(5).normal(0.5, 0.2, 112)
    d = numeric(score, valid, n_invalid=400, invalid_examples=["N/A", "abc", "0.5", "null"])
    assert d.cause == "invalid_values"


def test_invalid_strings_at_the_training_rate_are_not_a_type_change():
    values = rng(6).normal(0.5, 0.2, N_TRAIN).astype(object)
    values[rng(7).random(N_TRAIN) < 0.08] = "12.5"  # training already had 8 % numeric strings
    profile = numeric_profile(values)
    assert profile.invalid_rate == pytest.approx(0.08, abs=0.01)
    recent = rng(8).normal(0.8, 0.2, 470)
    d = numeric(profile, recent, n_invalid=42, invalid_examples=["12.5"] * 4)
    assert d.cause == "location_shift"


# ---- stuck value ---------------------------------------------------------------------------------
def test_stuck_value():
    d = stuck_value_example()
    assert d.cause == "stuck_value"
    assert d.evidence["value"] == 0.4137 and d.evidence["share"] == pytest.approx(507 / 512, rel=1e-3)


def test_collapsed_spread_is_not_stuck(score):
    d = numeric(score, rng(9).normal(0.5, 0.002, N_RECENT))
    assert d.cause == "scale_shift"


def test_zero_inflated_feature_all_zero_is_not_a_default_fill():
    train = rng(10).lognormal(2, 1, N_TRAIN) * (rng(11).random(N_TRAIN) < 0.4)  # 60 % zeros in training
    profile = numeric_profile(train)
    recent = np.zeros(N_RECENT)
    recent[:4] = 3.0
    assert numeric(profile, recent).cause not in ("default_fill", "stuck_value")


# ---- default fill ----------------------------------------------------------------------------------
def test_missing_values_filled_with_zero():
    d = zero_fill_example()
    assert d.cause == "default_fill"
    assert d.evidence["value"] == 0.0 and d.evidence["sentinel"] == "zero"
    assert d.evidence["baseline_missing_rate"] == pytest.approx(0.2, abs=0.01)
    assert "missing rate fell from 20% to 0%" in d.sentence


def test_default_minus_one_while_missing_rises(score):
    recent = rng(16).normal(0.5, 0.2, N_RECENT)
    recent[:150] = -1.0
    d = numeric(score, recent, n_missing=60)
    assert d.cause == "default_fill" and d.evidence["value"] == -1.0
    assert "missing rate rose" in d.sentence


def test_training_mean_as_fill(score):
    recent = rng(17).normal(0.5, 0.2, N_RECENT)
    recent[::3] = score.mean
    d = numeric(score, recent)
    assert d.cause == "default_fill" and d.evidence["sentinel"] == "training mean"


def test_count_feature_shifting_down_is_not_a_zero_fill():
    """Poisson(5) -> Poisson(1.5): zeros go from 0.7 % to 22 %, but every other value moved too
    (and a Poisson's spread shrinks with its mean)."""
    profile = numeric_profile(rng(18).poisson(5, N_TRAIN))
    d = numeric(profile, rng(19).poisson(1.5, N_RECENT))
    assert d.cause == "location_scale_shift"


def _hourly(r: np.random.Generator, n: int, level: float) -> np.ndarray:
    """Hourly readings rounded to whole degrees: a daily cycle and weather that persists for days (AR(1))."""
    weather = np.empty(n)
    weather[0] = 0.0
    noise = r.normal(0, 5 * np.sqrt(1 - 0.995**2), n)
    for i in range(1, n):
        weather[i] = 0.995 * weather[i - 1] + noise[i]
    return np.round(level + 4 * np.sin(2 * np.pi * np.arange(n) / 24) + weather)


@pytest.mark.parametrize("seed", range(8))
def test_a_later_season_of_rounded_persistent_readings_is_not_a_default_fill(seed):
    """A warmer season of hourly dew points: a rounded value repeats for days, but training held it
    often (or its neighbours rose with it): no pipeline defect. Windows of 32 to 512 values, as alerts see them."""
    profile = numeric_profile(_hourly(rng(seed), 8_000, 8.0))
    later = _hourly(rng(1000 + seed), 3_000, 14.0)
    for end in range(32, 3_000, 97):
        for n in (32, 96, 512):
            d = numeric(profile, later[max(0, end - n):end])
            assert d.cause != "default_fill", (end, n, d.sentence)


def test_departures_in_time_order_are_not_a_fill():
    """A day's departures in time order: on-the-hour clock times are common in training (HHMM, a
    third on the hour), and a window of consecutive flights holds a few of them many times."""
    minutes = [0] * 5 + [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]

    def days(r, n):
        times = r.choice(np.arange(5, 23) * 100, n) + r.choice(minutes, n)
        return np.concatenate([np.sort(day) for day in np.array_split(times, n // 150)]).astype(float)
    profile = numeric_profile(days(rng(49), N_TRAIN))
    later = days(rng(50), 3_000)
    for end in range(32, 3_000, 37):
        for n in (32, 96, 512):
            d = numeric(profile, later[max(0, end - n):end])
            assert d.cause != "default_fill", (end, n, d.sentence)


def test_a_common_value_jumping_with_the_rest_intact_is_a_fill():
    """0 of a delay (5 % of training) replacing 30 % of 512 values: the rest as in training."""
    train = np.round(rng(64).normal(5, 20, N_TRAIN))
    train[rng(65).random(N_TRAIN) < 0.05] = 0.0
    profile = numeric_profile(train)
    recent = np.round(rng(66).normal(5, 20, N_RECENT))
    recent[rng(67).random(N_RECENT) < 0.3] = 0.0
    d = numeric(profile, recent)
    assert d.cause == "default_fill" and d.evidence["value"] == 0.0, d.sentence


def test_zero_filling_a_few_valued_feature_is_a_fill_though_not_its_most_frequent_value():
    """Years of education (6 levels, 14 the most common): 0 for a quarter of the values is the
    value that rose, while 14 stays the most frequent."""
    levels, shares = [9, 12, 14, 16, 17, 20], [0.02, 0.2, 0.4, 0.2, 0.1, 0.08]
    profile = numeric_profile(rng(70).choice(levels, N_TRAIN, p=shares).astype(float))
    for seed in range(10):
        recent = rng(71 + seed).choice(levels, 96, p=shares).astype(float)
        recent[rng(81 + seed).random(96) < 0.25] = 0.0
        d = numeric(profile, recent)
        assert d.cause == "default_fill" and d.evidence["value"] == 0.0, (seed, d.sentence)


def test_unit_change_of_a_few_valued_feature_on_96_values():
    """Age in 6 bins, x12: every quantile exactly 12x, but the IQR of 96 values jumps between levels."""
    levels, shares = [17.5, 22, 27, 32, 37, 42], [0.05, 0.45, 0.3, 0.1, 0.05, 0.05]
    profile = numeric_profile(rng(72).choice(levels, N_TRAIN, p=shares))
    for seed in range(40):
        d = numeric(profile, rng(90 + seed).choice(levels, 96, p=shares) * 12)
        assert d.cause == "unit_change" and d.evidence["factor"] == "12", (seed, d.sentence)


def test_a_first_alerts_mixed_window_is_not_a_fill():
    """32 values as a first alert sees them: 24 from before a K -> °C change, one of them 3 times (a
    reading rounded to 0.1 K), and 8 after it, far below the training range. The repeat is chance,
    and the rest moved: no default fill."""
    profile = numeric_profile(np.round(rng(61).normal(285, 8, N_TRAIN), 1))
    before = np.round(rng(62).normal(285, 8, 24), 1)
    before[:3] = 283.0
    after = np.round(rng(63).normal(285, 8, 8), 1) - 273.15
    assert numeric(profile, np.concatenate([before, after])).cause != "default_fill"


def test_a_common_value_filling_the_missing_values_is_a_fill():
    """Positive evidence for a value training holds often: its share rose as the missing rate fell."""
    train = rng(53).lognormal(2, 1, N_TRAIN) * (rng(54).random(N_TRAIN) < 0.7)  # 30 % zeros
    train[rng(55).random(N_TRAIN) < 0.4] = np.nan
    profile = numeric_profile(train)
    recent = rng(56).lognormal(2, 1, N_RECENT) * (rng(57).random(N_RECENT) < 0.7)
    recent[rng(58).random(N_RECENT) < 0.4] = 0.0  # the missing ones, filled with 0
    d = numeric(profile, recent)
    assert d.cause == "default_fill" and d.evidence["value"] == 0.0
    assert "missing rate fell" in d.sentence


# ---- rounding / precision --------------------------------------------------------------------------
def test_integers_where_training_had_floats():
    d = integer_cast_example()
    assert d.cause == "rounding" and d.evidence["step"] == 1.0
    assert "whole numbers where training had fractions" in d.sentence


def test_coarse_rounding_to_hundreds():
    profile = numeric_profile(rng(22).lognormal(6, 0.7, N_TRAIN))
    d = numeric(profile, np.round(rng(23).lognormal(6, 0.7, N_RECENT) / 100) * 100)
    assert d.cause == "rounding" and d.evidence["step"] == 100.0


def test_float32_cast():
    d = float32_example()
    assert d.cause == "rounding" and d.evidence["precision"] == "float32"


def test_integer_feature_shifting_is_not_rounding():
    profile = numeric_profile(rng(25).poisson(20, N_TRAIN))
    assert profile.integer_valued
    assert numeric(profile, rng(26).poisson(26, N_RECENT)).cause == "location_shift"


def test_float32_training_shifting_is_not_a_float32_cast():
    profile = numeric_profile(rng(27).normal(0.5, 0.2, N_TRAIN).astype(np.float32))
    recent = (rng(28).normal(0.5, 0.2, N_RECENT) + 0.2).astype(np.float32)
    assert numeric(profile, recent).cause == "location_shift"


# ---- fallback ----------------------------------------------------------------------------------------
def test_seed_example_describes_what_moved():
    d = seed_example()
    assert d.cause == "location_scale_shift"
    assert d.sentence.startswith("location and spread changed: mean 0.498 -> 0.307, std 0.199 -> 0.409")
    assert d.evidence["baseline"]["std"] == pytest.approx(0.2, abs=0.01)
    assert d.evidence["current"]["std"] == pytest.approx(0.4, abs=0.04)


def test_missing_values_only(score):
    d = numeric(score, [], n_missing=300)
    assert d.cause == "missing_rate" and "missing rate 0% -> 100%" in d.sentence


# ---- categories: letter case / formatting -----------------------------------------------------------
PLATFORMS = ["ios", "android", "web", "smart_tv"]
SHARES = [0.4, 0.35, 0.2, 0.05]


@functools.cache
def platform_profile() -> CategoricalProfile:
    return categorical_profile(rng(30).choice(PLATFORMS, N_TRAIN, p=SHARES).tolist(), "platform")


@pytest.fixture
def platform() -> CategoricalProfile:
    return platform_profile()


def recent_platforms(seed: int = 31, p=SHARES) -> np.ndarray:
    return rng(seed).choice(PLATFORMS, N_RECENT, p=p).astype(object)


def letter_case_example() -> Diagnosis:
    recent = recent_platforms()
    recent[recent == "ios"] = "IOS"
    return categorical(platform_profile(), recent)


def formatting_example() -> Diagnosis:
    recent = recent_platforms()
    recent[recent == "android"] = " android "
    recent[recent == "web"] = "ｗｅｂ"  # full-width letters: equal to 'web' under NFKC
    recent[recent == "smart_tv"] = "Smart-TV"
    return categorical(platform_profile(), recent)


def placeholder_example() -> Diagnosis:
    recent = recent_platforms()
    recent[rng(33).random(N_RECENT) < 0.3] = "unknown"
    return categorical(platform_profile(), recent)


def new_category_example() -> Diagnosis:
    recent = recent_platforms()
    recent[rng(32).random(N_RECENT) < 0.15] = "ios-tablet"
    return categorical(platform_profile(), recent)


def test_letter_case_mapping():
    d = letter_case_example()
    assert d.cause == "letter_case"
    assert d.evidence["mappings"][0] == {"seen": "IOS", "training": "ios", "rule": "letter_case",
                                         "share": pytest.approx(0.4, abs=0.05)}
    assert "'IOS' ↔ 'ios'" in d.sentence


def test_whitespace_unicode_and_separator_formatting():
    d = formatting_example()
    assert d.cause == "formatting"
    rules = {m["seen"]: (m["training"], m["rule"]) for m in d.evidence["mappings"]}
    assert rules == {" android ": ("android", "whitespace"), "ｗｅｂ": ("web", "unicode_whitespace"),
                     "Smart-TV": ("smart_tv", "separators")}


def test_float_formatted_code_is_its_number_not_the_code_without_the_dot():
    """A code "1" sent as "1.0" is number formatting of "1"; removing separators first made it "10"."""
    codes = ["1", "2", "10", "12"]
    profile = categorical_profile(rng(47).choice(codes, N_TRAIN, p=[0.4, 0.3, 0.2, 0.1]).tolist())
    recent = rng(48).choice(codes, N_RECENT, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    recent[recent == "1"] = "1.0"
    d = categorical(profile, recent)
    assert d.cause == "formatting"
    assert d.evidence["mappings"][0]["seen"] == "1.0"
    assert (d.evidence["mappings"][0]["training"], d.evidence["mappings"][0]["rule"]) == ("1", "number_format")


def test_genuinely_new_categories_are_not_formatting():
    d = new_category_example()
    assert d.cause == "new_category"
    assert "'ios-tablet'" in d.sentence


# ---- categories: default fill / stuck ----------------------------------------------------------------
def test_placeholder_category_dominates():
    d = placeholder_example()
    assert d.cause == "default_fill" and d.evidence["value"] == "unknown"


def test_a_placeholder_code_common_in_training_gaining_share_is_not_a_fill():
    """Code "0" is a real category (20 % of training); a population with more of it is no default fill."""
    codes = ["0", "1", "2", "3"]
    profile = categorical_profile(rng(59).choice(codes, N_TRAIN, p=[0.2, 0.4, 0.3, 0.1]).tolist())
    d = categorical(profile, rng(60).choice(codes, N_RECENT, p=[0.65, 0.2, 0.1, 0.05]).tolist())
    assert d.cause == "category_shift", d.sentence


def test_missing_categories_filled_with_a_real_category():
    train = rng(34).choice(PLATFORMS, N_TRAIN, p=SHARES).astype(object)
    train[rng(35).random(N_TRAIN) < 0.25] = None
    profile = categorical_profile(train.tolist())
    recent = recent_platforms()
    recent[rng(36).random(N_RECENT) < 0.25] = "web"  # serving maps null to 'web'
    d = categorical(profile, recent, n_missing=0)
    assert d.cause == "default_fill" and d.evidence["value"] == "web"
    assert "missing rate fell from 24.9% to 0%" in d.sentence


def test_real_category_gaining_share_is_not_a_default_fill(platform):
    d = categorical(platform, recent_platforms(p=[0.2, 0.65, 0.1, 0.05]))
    assert d.cause == "category_shift"
    assert "'android' 35.3% -> 6" in d.sentence


def test_stuck_category(platform):
    recent = np.array(["web"] * N_RECENT, dtype=object)
    recent[:3] = "ios"
    assert categorical(platform, recent).cause == "stuck_value"


# ---- timing: abrupt vs gradual, model versions ------------------------------------------------------
BLOCK = 256


def block_means(shift: np.ndarray, seed: int) -> tuple[list[float], list[int]]:
    """Block means of a standardised score N(shift_t, 1) over blocks of BLOCK events."""
    x = rng(seed).normal(0.0, 1.0, len(shift)) + shift
    n = len(x) // BLOCK * BLOCK
    return x[:n].reshape(-1, BLOCK).mean(axis=1).tolist(), [BLOCK] * (n // BLOCK)


def timing(shift: np.ndarray, seed: int = 40, **kw) -> ChangeTiming:
    means, counts = block_means(shift, seed)
    return ChangeTiming(means, counts, end_event=len(counts) * BLOCK, **kw)


STEP = np.where(np.arange(51_200) >= 30_000, 0.5, 0.0)
RAMP = np.clip((np.arange(64_000) - 10_000) / 40_000, 0.0, 1.0)


def test_abrupt_change_is_dated():
    d = diagnose_change_time(timing(STEP))
    assert d.cause == "abrupt_shift"
    assert d.evidence["start_event"] == 29_952  # the block boundary before event 30,000
    assert "abrupt change at event ~29,952 with no model_version change" in d.sentence


def test_abrupt_change_at_a_new_model_version():
    d = diagnose_change_time(timing(STEP, version_first_seen={"1": 0, "2": 30_000}, baseline_version="1"))
    assert d.cause == "version_change"
    assert d.evidence["version"] == "2" and d.evidence["previous_version"] == "1"
    assert "coincides with model_version 1 -> 2" in d.sentence


def test_version_change_far_from_the_change_is_not_blamed():
    d = diagnose_change_time(timing(STEP, version_first_seen={"1": 0, "2": 12_000}))
    assert d.cause == "abrupt_shift"


def test_gradual_shift_spans_the_ramp():
    d = diagnose_change_time(timing(RAMP))
    assert d.cause == "gradual_shift"
    assert abs(d.evidence["start_event"] - 10_000) <= 2_000
    assert abs(d.evidence["end_event"] - 50_000) <= 2_000
    assert "gradual shift over ~" in d.sentence and "real population change" in d.sentence


def test_gradual_shift_of_a_similar_size_is_not_abrupt_or_a_version_change():
    d = diagnose_change_time(timing(RAMP, version_first_seen={"1": 0, "2": 30_000}))
    assert d.cause == "gradual_shift"


def test_ramp_in_progress_at_alert_time_is_gradual():
    d = diagnose_change_time(timing(RAMP[:30_000]))
    assert d.cause == "gradual_shift"


def kept(shift: np.ndarray, blocks: int) -> ChangeTiming:
    """The monitor keeps only its last `blocks` block means."""
    means, counts = block_means(shift, 40)
    return ChangeTiming(means[-blocks:], counts[-blocks:], end_event=len(counts) * BLOCK)


def test_ramp_older_than_the_kept_history_is_gradual_not_a_short_rollout():
    """128 blocks (33k events) kept, alert 35k events into a 40k-event ramp that began before them."""
    d = diagnose_change_time(kept(RAMP[:45_000], 128))
    assert d.cause == "gradual_shift" and d.evidence["off_training_at_oldest_kept"] == 12_032
    assert d.sentence.startswith("gradual shift over at least ~")
    assert "real population change" in d.sentence


def test_change_older_than_a_short_history_is_undated(score):
    """32 blocks (8k events) inside a slow ramp: no datable change, but the level is off training."""
    t = kept(RAMP[:30_000], 32)
    assert diagnose_change_time(t).cause == "undated"
    d = numeric(score, rng(41).normal(0.6, 0.2, N_RECENT), timing=t)
    assert d.cause == "location_shift" and "cannot be dated" in d.sentence


def test_stationary_history_has_no_timing():
    assert diagnose_change_time(timing(np.zeros(51_200))) is None


def test_skew_from_the_first_event():
    d = diagnose_change_time(timing(np.full(20_480, 0.3)))
    assert d.cause == "from_start"


def test_skew_from_the_first_event_with_another_version_served():
    t = timing(np.full(20_480, 0.3), served_versions={"2": 512}, baseline_version="1")
    d = diagnose_change_time(t)
    assert d.cause == "version_mismatch"
    assert d.sentence.startswith("model_version 2 is served but the baseline describes version 1")


def test_mixed_versions_are_named():
    t = timing(STEP, served_versions={"1": 300, "2": 212}, baseline_version="1")
    d = diagnose_change_time(t)
    assert d.cause == "abrupt_shift"
    assert d.evidence["served_versions"] == {"1": pytest.approx(0.586, abs=1e-3), "2": pytest.approx(0.414, abs=1e-3)}
    assert "model versions 1 (58.6%), 2 (41.4%) are served together" in d.sentence


# ---- one call per alert: value rule + timing --------------------------------------------------------
def unit_change_at_new_version_example() -> Diagnosis:
    t = timing(STEP, version_first_seen={"1": 0, "2": 30_000}, baseline_version="1")
    return numeric(latency_profile(), rng(2).lognormal(3.0, 0.8, N_RECENT) / 1000, timing=t)


def test_pipeline_defect_keeps_its_cause_and_gains_the_timing():
    d = unit_change_at_new_version_example()
    assert d.cause == "unit_change"
    assert d.evidence["timing"]["cause"] == "version_change"
    assert "~1/1000" in d.sentence and "model_version 1 -> 2" in d.sentence


def gradual_location_shift_example() -> Diagnosis:
    return numeric(score_profile(), rng(41).normal(0.7, 0.2, N_RECENT), timing=timing(RAMP))


def test_plain_shift_takes_the_timing_cause():
    d = gradual_location_shift_example()
    assert d.cause == "gradual_shift"
    assert d.sentence.startswith("location shift, spread unchanged: mean 0.498 -> 0.698")
    assert d.sentence.endswith("gradual shift over ~39.4k events (events 10,240 to 49,664): "
                               "real population change, consider retraining")
    assert d.evidence["timing"]["change"] == "gradual"


def test_alert_fields_carry_the_cause():
    fields = seed_example().alert_fields()
    assert fields["evidence"]["cause"] == "location_scale_shift"
    assert fields["diagnosis"].startswith("location and spread changed")


# ---- sweep: every defect on every distribution, and genuine shifts never labelled a pipeline bug -----
DISTRIBUTIONS = {
    "normal": lambda r, n: r.normal(0.5, 0.2, n),
    "narrow": lambda r, n: r.normal(1000, 20, n),  # small coefficient of variation
    "centred": lambda r, n: r.normal(0, 1, n),
    "lognormal": lambda r, n: r.lognormal(3, 0.8, n),
    "heavy": lambda r, n: r.lognormal(0, 2, n),
    "exponential": lambda r, n: r.exponential(1, n),
    "uniform": lambda r, n: r.uniform(0, 1, n),
    "counts": lambda r, n: r.poisson(20, n).astype(float),
}
GENUINE = {
    "stationary": lambda x, r: x,
    "mean +0.5 std": lambda x, r: x + 0.5 * x.std(),
    "mean -2 std": lambda x, r: x - 2 * x.std(),
    "spread x2": lambda x, r: x.mean() + 2 * (x - x.mean()),
    "spread x0.5": lambda x, r: x.mean() + 0.5 * (x - x.mean()),
    "everything x2": lambda x, r: 2 * x,
    "everything x3": lambda x, r: 3 * x,
}
DEFECTS = [
    ("unit_change", lambda x, r: x * 1000),
    ("unit_change", lambda x, r: x / 60),
    ("default_fill", lambda x, r: np.where(r.random(len(x)) < 0.2, 0.0, x)),
]


@functools.cache
def sweep_profile(name: str) -> NumericProfile:
    return numeric_profile(DISTRIBUTIONS[name](rng(0), N_TRAIN))


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_sweep_genuine_shifts_are_never_a_pipeline_bug(dist):
    for change, apply in GENUINE.items():
        for seed in range(10):
            r = rng(100 + seed)
            d = numeric(sweep_profile(dist), apply(DISTRIBUTIONS[dist](r, N_RECENT), r))
            assert not d.is_pipeline_bug, (change, seed, d)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_sweep_defects_are_named_on_every_distribution(dist):
    for cause, apply in DEFECTS:
        for seed in range(10):
            r = rng(100 + seed)
            d = numeric(sweep_profile(dist), apply(DISTRIBUTIONS[dist](r, N_RECENT), r))
            assert d.cause == cause, (seed, d)


# ---- degenerate inputs never raise -----------------------------------------------------------------
@pytest.mark.parametrize("recent, n_missing, n_invalid",
                         [([], 0, 0), ([], 10, 5), ([np.nan, np.inf], 0, 2), ([0.5] * 3, 0, 0)])
def test_numeric_degenerate_inputs(score, recent, n_missing, n_invalid):
    d = diagnose_numeric(score, np.asarray(recent, dtype=np.float64), n_missing=n_missing, n_invalid=n_invalid,
                         n_total=len(recent) + n_missing + n_invalid, invalid_examples=["x"] if n_invalid else ())
    json.dumps(d.alert_fields())


def test_constant_and_empty_training_profiles():
    constant = numeric_profile(np.full(1000, 3.0))
    assert numeric(constant, rng(50).normal(3, 1, N_RECENT)).cause == "scale_shift"
    empty = NumericProfile("x", count=0, n_missing=100, n_invalid=0, mean=0.0, std=0.0, min=0.0, max=0.0,
                           quantiles=np.zeros(len(QUANTILE_PROBS)), bin_edges=np.empty(0), bin_freqs=np.ones(1))
    assert numeric(empty, rng(50).normal(3, 1, N_RECENT)).cause == "location_scale_shift"
    assert categorical(categorical_profile(["a"] * 10), []).cause == "category_shift"


@pytest.mark.parametrize("t", [ChangeTiming(), ChangeTiming([0.1], [256], 256), ChangeTiming([0.1, 0.2], [256], 512),
                               ChangeTiming([0.0, 5.0], [0, 256], 256), ChangeTiming([0.0, 0.0], [256, 256], 512)])
def test_change_time_degenerate_histories(t):
    assert diagnose_change_time(t) is None


def print_examples() -> None:
    """One real diagnosis per rule, as pasted in docs/diagnosis.md."""
    examples = {
        "unit_change": unit_change_example,
        "type_change": numbers_as_strings_example,
        "stuck_value": stuck_value_example,
        "default_fill": zero_fill_example,
        "rounding (integer cast)": integer_cast_example,
        "rounding (float32)": float32_example,
        "letter_case": letter_case_example,
        "formatting": formatting_example,
        "default_fill (category)": placeholder_example,
        "new_category (fallback)": new_category_example,
        "abrupt_shift": lambda: diagnose_change_time(timing(STEP)),
        "version_change": lambda: diagnose_change_time(
            timing(STEP, version_first_seen={"1": 0, "2": 30_000}, baseline_version="1")),
        "gradual_shift": lambda: diagnose_change_time(timing(RAMP)),
        "gradual_shift (began before the 128 kept blocks)": lambda: diagnose_change_time(kept(RAMP[:45_000], 128)),
        "undated (32 kept blocks inside a slow ramp)": lambda: diagnose_change_time(kept(RAMP[:30_000], 32)),
        "from_start": lambda: diagnose_change_time(timing(np.full(20_480, 0.3))),
        "version_mismatch": lambda: diagnose_change_time(
            timing(np.full(20_480, 0.3), served_versions={"2": 512}, baseline_version="1")),
        "mixed_versions": lambda: diagnose_versions({"1": 300, "2": 212}, "1"),
        "location_scale_shift (fallback, the seed's example)": seed_example,
        "unit_change + version_change (one call with timing)": unit_change_at_new_version_example,
        "location shift + gradual_shift (one call with timing)": gradual_location_shift_example,
    }
    for name, make in examples.items():
        fields = make().alert_fields()
        evidence = json.dumps(fields["evidence"], ensure_ascii=False)
        print(f"#### {name}\n```\ndiagnosis: {fields['diagnosis']}\nevidence:  {evidence}\n```\n")


if __name__ == "__main__":
    print_examples()


def test_stuck_at_the_largest_of_three_categories():
    """flights' origin stuck at EWR (36 % of training; issue 13): 100 % cannot be 3x training, and
    taking over everything is the evidence (it was called category_shift)."""
    profile = categorical_profile(rng(61).choice(["EWR", "JFK", "LGA"], N_TRAIN, p=[0.36, 0.33, 0.31]).tolist())
    d = categorical(profile, ["EWR"] * N_RECENT)
    assert d.cause == "stuck_value" and "100% of recent values are 'EWR'" in d.sentence, d.sentence
    # the same category gaining share without taking over is a population shift
    shifted = rng(62).choice(["EWR", "JFK", "LGA"], N_RECENT, p=[0.9, 0.05, 0.05]).tolist()
    assert categorical(profile, shifted).cause == "category_shift"
