"""The alert record: what skewwatch tells the on-call engineer (contract in docs/contracts.md)."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from detectors.episodes import Candidate
from detectors.next_steps import next_step

__all__ = ["KINDS", "Alert", "alert_id", "severity"]

KINDS = ("drift", "confidence_drop", "data_quality", "skew", "serving", "performance", "leakage_suspect", "shadow")


def alert_id(model: str, feature: str | None, kind: str, family: str, episode: int, baseline: str = "") -> str:
    """Deterministic id: the same drift episode re-detected (replay, restart) has the same id.

    `baseline` names the reference the episode is counted against (`Baseline.fingerprint`): a
    new baseline starts counting episodes again, and its alerts must not reuse the old ids, or
    consumers that deduplicate by id would drop them.

    >>> alert_id("credit", "amount", "drift", "cusum", 1) == alert_id("credit", "amount", "drift", "cusum", 1)
    True
    >>> old, new = (alert_id("credit", "amount", "drift", "cusum", 1, baseline) for baseline in ("v1", "v2"))
    >>> old == new
    False
    >>> len(alert_id("credit", None, "serving", "version", 1))
    20
    """
    key = f"{model}\x1f{feature or ''}\x1f{kind}\x1f{family}\x1f{episode}\x1f{baseline}"
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


def severity(c: Candidate, base: dict, current: dict) -> str:
    """"critical" or "warning": how far the recent summary `current` is from the training one `base`.

    >>> c = Candidate(event_index=9, rank=(0, 0, 0), feature="x", kind="drift", family="distribution",
    ...               detector="cusum", statistic=5.0, threshold=4.0, p_value=None)
    >>> severity(c, {"mean": 0.0, "std": 1.0}, {"mean": 0.3, "std": 1.0})
    'warning'
    """
    if c.kind == "drift" and "mean" in current and base.get("std"):
        large = (abs(current["mean"] - base["mean"]) >= 0.5 * base["std"]
                 or abs(math.log(max(current.get("std", 0.0), 1e-300) / base["std"])) >= math.log(1.5))
        return "critical" if large else "warning"
    if c.kind == "data_quality":
        rate = current.get("missing_rate", 0.0) if c.family == "missing" else current.get(
            "invalid_rate", 0.0) if c.family == "invalid" else current.get("unseen_share", 0.0)
        return "critical" if rate >= 0.1 else "warning"
    if c.kind == "confidence_drop":
        return "critical" if base.get("mean", 0) - current.get("mean", 0) >= 0.1 else "warning"
    return "warning" if c.kind == "serving" else "critical"


@dataclass
class Alert:
    """One alert: what moved, how sure the test is, the training and recent numbers, and the likely cause.

    The fields are the alert contract (docs/contracts.md). The id is deterministic (the function
    `alert_id` makes it): the same episode detected again, by a replay or after a restart, has the same id.

    Examples
    --------
    >>> a = Alert(alert_id=alert_id("credit", "amount", "drift", "cusum", 1), kind="drift", model="credit",
    ...           model_version="1", feature="amount", detector="cusum", statistic=36.2, threshold=35.0,
    ...           p_value=None, baseline={"mean": 100.0}, current={"mean": 111.0}, events_seen=544, ts=None,
    ...           severity="critical", diagnosis="mean moved from 100 to 111")
    >>> a.alert_id
    'c441e4fb669b81311a3c'
    >>> Alert.from_dict(a.to_dict()) == a
    True
    """

    alert_id: str
    kind: str
    model: str
    model_version: str | None
    feature: str | None
    detector: str
    statistic: float
    threshold: float
    p_value: float | None
    baseline: dict[str, Any]
    current: dict[str, Any]
    events_seen: int
    ts: float | None
    severity: str  # "warning" | "critical"
    diagnosis: str
    evidence: dict[str, Any] = field(default_factory=dict)
    #: what to do about it (`detectors.next_steps`); derived from the fields above when not given
    next_step: str = ""
    #: True on an update record: the same alert (same `alert_id`) re-diagnosed from the values after it
    update: bool = False

    def __post_init__(self) -> None:
        # every alert carries one, whoever builds it; an alert read back keeps the step it was sent with
        if not self.next_step:
            self.next_step = next_step(self.kind, self.feature, self.evidence, self.current, self.baseline)
        self.update = bool(self.update)  # absent (None) on a record read back: not an update

    def to_dict(self) -> dict[str, Any]:
        """The alert as a JSON-ready dict, fields in contract order (what the worker publishes); an
        update record adds `"update": true` last."""
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "model": self.model,
            "model_version": self.model_version,
            "feature": self.feature,
            "detector": self.detector,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "baseline": self.baseline,
            "current": self.current,
            "events_seen": self.events_seen,
            "ts": self.ts,
            "severity": self.severity,
            "diagnosis": self.diagnosis,
            "evidence": self.evidence,
            "next_step": self.next_step,
            **({"update": True} if self.update else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        """The alert of a `to_dict` (a field it lacks is None; a missing `next_step` is derived)."""
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]
