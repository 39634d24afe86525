"""The alert record: what skewwatch tells the on-call engineer (contract in docs/contracts.md)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

KINDS = ("drift", "confidence_drop", "data_quality", "skew", "serving", "performance")


def alert_id(model: str, feature: str | None, kind: str, family: str, episode: int, baseline: str = "") -> str:
    """Deterministic id: the same drift episode re-detected (replay, restart) has the same id.

    `baseline` names the reference the episode is counted against (`Baseline.fingerprint`): a
    new baseline starts counting episodes again, and its alerts must not reuse the old ids, or
    consumers that deduplicate by id would drop them.

    >>> alert_id("credit", "amount", "drift", "cusum", 1) == alert_id("credit", "amount", "drift", "cusum", 1)
    True
    >>> alert_id("credit", "amount", "drift", "cusum", 1, "v1") == alert_id("credit", "amount", "drift", "cusum", 1, "v2")
    False
    >>> len(alert_id("credit", None, "serving", "version", 1))
    20
    """
    key = f"{model}\x1f{feature or ''}\x1f{kind}\x1f{family}\x1f{episode}\x1f{baseline}"
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


@dataclass
class Alert:
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

    def to_dict(self) -> dict[str, Any]:
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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Alert":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]
