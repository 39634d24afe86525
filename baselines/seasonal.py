"""Seasonal profiles: each numeric feature's distribution per slot of the clock (hour of day, day of week).

Features that follow the clock (a flight's departure time, the temperature) arrive in time order:
a night of low values is no change of distribution, yet the CUSUMs, which compare each event with
the whole-day profile, fire within a few hundred events. `baseline build --timestamp-column COL
--seasonal hour-of-day` keeps, beside the whole-day profile, each numeric feature's quantiles in
every slot of the period, from the training rows' timestamps (UTC). The monitors then compare each
event with its slot's profile (`detectors.seasonal`).

Slots: a timestamp t (seconds since the epoch) is in slot floor(t / 3600) mod 24 of "hour-of-day",
(floor(t / 86400) + 3) mod 7 of "day-of-week" (0: Monday; 1970-01-01 was a Thursday), in UTC; with a
time zone (`baseline build --timezone America/New_York`), the hour or the weekday of the local time,
summer time included: traffic that follows a local clock moves by an hour in UTC twice a year.

>>> slot_of(np.array([0.0, 3600.0 * 25 + 1, np.nan, -1.0, 1e300]), "hour-of-day").tolist()
[0, 1, -1, 23, -1]
>>> slot_of(np.array([0.0, 4 * 86400.0]), "day-of-week").tolist()  # a Thursday, a Monday
[3, 0]
>>> january, july = 1_704_114_000.0, 1_719_838_800.0  # 13:00 UTC on 1 Jan and 1 Jul 2024
>>> slot_of(np.array([january, july]), "hour-of-day", "America/New_York").tolist()  # EST, then EDT
[8, 9]
"""
from __future__ import annotations

import zoneinfo
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAX_SECONDS", "MIN_SLOT_VALUES", "SEASONAL_PERIODS", "SLOT_QUANTILE_PROBS", "SLOT_RESERVOIR",
           "SeasonalStats", "known_timezone", "slot_of", "timestamps"]

#: period name -> (seconds per slot, slots per period, slot of the epoch's first second)
SEASONAL_PERIODS = {"hour-of-day": (3600, 24, 0), "day-of-week": (86400, 7, 3)}
#: probabilities of a slot's quantile grid: 0, 0.01, ..., 1 (the whole profile's grid is 10 times finer;
#: 24 slots of 101 values fit a baseline file's longest list)
SLOT_QUANTILE_PROBS = np.linspace(0.0, 1.0, 101)
#: fewest valid training values a slot needs to be mapped; a sparser slot's values are compared with the
#: whole profile as they are (a grid of 1% steps from fewer values mostly interpolates noise)
MIN_SLOT_VALUES = 200
#: values sampled per feature and slot for its grid
SLOT_RESERVOIR = 20_000
#: timestamps beyond this many seconds from the epoch (about year 5138) are no time: in no slot
MAX_SECONDS = 1e11


def slot_of(ts: np.ndarray, period: str, timezone: str | None = None) -> np.ndarray:
    """The slot (0 ..) of each timestamp (seconds since the epoch) in UTC or in the IANA `timezone`;
    -1 for NaN, infinite or beyond `MAX_SECONDS`."""
    seconds, slots, first = SEASONAL_PERIODS[period]
    ok = np.abs(ts) <= MAX_SECONDS  # False for NaN
    out = np.full(len(ts), -1, dtype=np.int64)
    if timezone is None:
        out[ok] = (np.floor(ts[ok] / seconds).astype(np.int64) + first) % slots
    elif ok.any():
        import pandas as pd  # here: the baseline's profile imports this module, and `replay` starts without pandas

        local = pd.to_datetime(ts[ok], unit="s", utc=True).tz_convert(timezone)
        out[ok] = local.hour if period == "hour-of-day" else local.day_of_week
    return out


def known_timezone(name: str) -> bool:
    """Whether `name` is an IANA time zone this machine knows (its tz database).

    >>> known_timezone("Europe/Paris"), known_timezone("Mars/Olympus")
    (True, False)
    """
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def timestamps(s: pd.Series) -> np.ndarray:
    """A training column of timestamps as seconds since the epoch (NaN where there is none): numbers
    as they are, datetimes (a timezone-less one is read as UTC) and ISO 8601 text.

    >>> import pandas as pd
    >>> timestamps(pd.Series([1.5, "7200", "1970-01-01T02:00:00Z", "1970-01-01 03:00", None, "x"])).tolist()
    [1.5, 7200.0, 7200.0, 10800.0, nan, nan]
    """
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return _seconds(pd.to_datetime(s, utc=True))
    out = np.array(pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    text = np.isnan(out) & s.notna().to_numpy()
    if text.any():
        dates = pd.to_datetime(s[text].astype(str), utc=True, errors="coerce", format="ISO8601")
        out[text] = _seconds(dates)
    return out


def _seconds(dates: pd.Series) -> np.ndarray:  # only from `timestamps`, which imported pandas
    ns = dates.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    return np.where(dates.isna().to_numpy(), np.nan, ns / 1e9)


class SeasonalStats:
    """One numeric feature's values per slot (`add`), and its slots' quantile grids (`finish`).

    >>> stats = SeasonalStats("x", "hour-of-day")
    >>> hours = np.arange(48_000) % 24
    >>> stats.add(hours * 10.0, np.where(hours < 2, hours, -1))  # two slots seen
    >>> counts, grid = stats.finish()
    >>> counts[:3].tolist(), grid.shape, grid[1, [0, 100]].tolist()
    ([2000, 2000, 0], (24, 101), [10.0, 10.0])
    """

    def __init__(self, name: str, period: str, reservoir_size: int = SLOT_RESERVOIR) -> None:
        from baselines.accumulate import NumericStats  # accumulate imports the profile, which imports this

        self._slots = [NumericStats(f"{name}@{k}", reservoir_size) for k in range(SEASONAL_PERIODS[period][1])]

    def add(self, values: np.ndarray, slots: np.ndarray) -> None:
        """A chunk's values (NaN / inf: no valid value) and their rows' slots (-1: no timestamp)."""
        ok = np.isfinite(values) & (slots >= 0)
        values, slots = values[ok], slots[ok]
        order = np.argsort(slots, kind="stable")  # each slot's values in row order: a rebuild samples the same
        values, slots = values[order], slots[order]
        bounds = np.searchsorted(slots, np.arange(len(self._slots) + 1))
        for k, stats in enumerate(self._slots):
            if bounds[k + 1] > bounds[k]:
                chunk = values[bounds[k]:bounds[k + 1]]
                stats.add(chunk, np.zeros(len(chunk), dtype=bool))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(valid values per slot, (slots, 101) quantile grids at `SLOT_QUANTILE_PROBS`; zeros in an empty slot)."""
        profiles = [stats.finish() for stats in self._slots]
        step = (len(profiles[0].quantiles) - 1) // (len(SLOT_QUANTILE_PROBS) - 1)
        return (np.array([p.count for p in profiles], dtype=np.int64),
                np.array([p.quantiles[::step] for p in profiles], dtype=np.float64))
