"""The joins' settings (one `JoinConfig` for both joins and every model)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_JOIN_CONFIG", "JoinConfig"]


@dataclass(frozen=True)
class JoinConfig:
    """Time-to-live and size of the join buffers, parity tolerances, the performance test's allowances.

    The worker fills it from its settings (stream.worker.config); `replay` uses the defaults.

    >>> JoinConfig(ttl=3600.0).max_entries
    100000
    """

    #: seconds a record waits for its other side (labels can take days: size it to the label delay)
    ttl: float = 86_400.0
    #: records waiting per join at most; beyond it the oldest is dropped (counted as expired)
    max_entries: int = 100_000
    #: numeric features match when math.isclose(served, offline, rel_tol, abs_tol)
    rel_tol: float = 1e-6
    abs_tol: float = 1e-9
    #: a live accuracy this far below validation is tolerated (a relative MAE increase for regression)
    tolerance: float = 0.02
    #: fewest labelled predictions before the performance test runs
    min_labels: int = 200
    #: an episode re-arms after this many joined records without an alarm (as MonitorConfig)
    rearm_quiet: int = 5000
    #: show the served and offline values of the example requests in skew alerts (off by default:
    #: production features may be personal data; the request ids are always shown)
    include_examples: bool = False
    #: seconds a prediction of a shadow pair waits for the other model's (both answer the same request)
    shadow_ttl: float = 600.0
    #: joined pairs per shadow window: each window's agreement is tested against the expected one
    shadow_window: int = 1000
    #: the agreement a shadow candidate must keep with production; None: the first window's, less
    #: `tolerance` and its sampling error (detectors.joins.shadow)
    shadow_min_agreement: float | None = None


#: the default settings, of every join class that is given none
DEFAULT_JOIN_CONFIG = JoinConfig()
