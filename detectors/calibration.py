"""How the constants of detectors/thresholds.py were derived: `python -m detectors.calibration`.

Every test runs on PIT scores, which are uniform on [0, 1] when production looks like training,
so one distribution-free calibration holds for every feature. Average run lengths (ARL, the mean number
of events between false alarms) of 1e9 events cannot be simulated directly: a CUSUM's ARL grows as
C exp(theta h), with theta known exactly for the score distribution; C is fitted by simulation at
short run lengths and the decision interval h is extrapolated to the target (`extrapolate_h`).

Alarm budget (per feature-event, the whole model's budget being 1e-7):
  4 CUSUM chains (location/scale x up/down)       each ARL >= CUSUM_TARGET_ARL events
  3-4 Bernoulli rate CUSUMs (h = ln 1e9, Wald)    each ARL >= 1e9 blocks
  windowed KS / chi-square                        WINDOW_ALPHA per window of 1000 events
  ADWIN, Page-Hinkley on 512-event block means    each ARL >= RIVER_TARGET_ARL events
"""
from __future__ import annotations

import math

import numpy as np

from detectors import thresholds as T

__all__ = ["CUSUM_TARGET_ARL", "RIVER_TARGET_ARL", "extrapolate_h", "main", "simulate_adwin", "simulate_block_cusum",
           "simulate_page_hinkley", "uniform_score_theta"]

CUSUM_TARGET_ARL = 2e9  # events, per chain
RIVER_TARGET_ARL = 2e9  # events, per detector side


def uniform_score_theta(k: float) -> float:
    """theta > 0 with E[exp(theta (z - k))] = 1 for z uniform on [-sqrt3, sqrt3] (Cramer-Lundberg).

    A CUSUM's false-alarm ARL grows as C exp(theta h); theta is exact, C is fitted by simulation.
    """
    a = math.sqrt(3.0)
    lo, hi = 1e-6, 10.0
    for _ in range(200):
        t = (lo + hi) / 2
        value = math.sinh(a * t) / (a * t) - math.exp(t * k)
        lo, hi = (lo, t) if value > 0 else (t, hi)
    return (lo + hi) / 2


def extrapolate_h(hs: list[float], arls: list[float], theta: float, target: float, grain: float = 0.5) -> float:
    """Decision interval reaching `target` from simulated (h, ARL) pairs and ARL ~ C exp(theta h).

    C is the smallest of the simulated points' estimates (the conservative one).
    """
    log_c = min(math.log(arl) - theta * h for h, arl in zip(hs, arls))
    h = (math.log(target) - log_c) / theta
    return math.ceil(h / grain) * grain


def simulate_block_cusum(h: float, n_events: int, n_chains: int, seed: int, block: int = T.CUSUM_BLOCK,
                         k: float = T.CUSUM_K) -> float:
    """Empirical ARL (events) of the block CUSUM on uniform scores, restarting after each alarm."""
    rng = np.random.default_rng(seed)
    a = math.sqrt(3.0)
    s = np.zeros(n_chains)
    alarms = 0
    for _ in range(n_events // block):
        inc = rng.uniform(-a, a, (block, n_chains)).sum(axis=0) - block * k
        s = np.maximum(0.0, s + inc)
        hit = s > h
        alarms += int(hit.sum())
        s[hit] = 0.0
    return n_events * n_chains / max(alarms, 1)


def simulate_page_hinkley(threshold: float, n_blocks: int, seed: int) -> float:
    """Empirical ARL (blocks, per side) of River's PageHinkley(delta, threshold, alpha=1) on N(0, 1)."""
    from river import drift

    rng = np.random.default_rng(seed)
    ph = drift.PageHinkley(min_instances=T.RIVER_GRACE_BLOCKS, delta=T.PAGE_HINKLEY_DELTA, threshold=threshold,
                           alpha=1.0)
    alarms = 0
    for v in rng.standard_normal(n_blocks).tolist():
        ph.update(v)
        alarms += ph.drift_detected
    return n_blocks / max(alarms, 1) * 2


def simulate_adwin(delta: float, n_blocks: int, seed: int, block: int = T.RIVER_BLOCK) -> int:
    """False alarms of River's ADWIN(delta) on block means of `block` uniform scores."""
    from river import drift

    rng = np.random.default_rng(seed)
    adwin = drift.ADWIN(delta=delta, clock=1, grace_period=T.RIVER_GRACE_BLOCKS)
    sd = 1.0 / math.sqrt(12.0 * block)
    alarms = 0
    for v in (0.5 + sd * rng.standard_normal(n_blocks)).tolist():
        adwin.update(v)
        alarms += adwin.drift_detected
    return alarms


def main() -> None:
    """Print the simulations and the constants they give (minutes of CPU: not run by the tests)."""
    theta = uniform_score_theta(T.CUSUM_K)
    hs = [10.0, 14.0, 18.0]
    arls = [simulate_block_cusum(h, 400_000, 250, seed=i) for i, h in enumerate(hs)]
    for h, arl in zip(hs, arls):
        print(f"block CUSUM h={h}: simulated ARL {arl:,.0f} events (C exp(theta h): {arl / math.exp(theta * h):.3g})")
    h = extrapolate_h(hs, arls, theta, CUSUM_TARGET_ARL)
    print(f"CUSUM_H = {h}  (block {T.CUSUM_BLOCK}, k {T.CUSUM_K}, theta {theta:.4f}: "
          f"ARL >= {CUSUM_TARGET_ARL:.0e} events per chain)")

    blocks = RIVER_TARGET_ARL / T.RIVER_BLOCK
    ph_theta = 2 * T.PAGE_HINKLEY_DELTA  # N(0, 1) increments with reference delta
    ths = [4.0, 6.0, 8.0]
    ph_arls = [simulate_page_hinkley(t, 600_000, seed=10 + i) for i, t in enumerate(ths)]
    for t, arl in zip(ths, ph_arls):
        print(f"Page-Hinkley threshold={t}: simulated ARL {arl:,.0f} blocks per side")
    # River's PH centres on its own running mean: the simulated growth rate can fall a little short of
    # the known-mean theta, so the slower of the two extrapolates
    ph_theta = min(ph_theta, math.log(ph_arls[-1] / ph_arls[-2]) / (ths[-1] - ths[-2]))
    threshold = extrapolate_h(ths, ph_arls, ph_theta, blocks)
    print(f"PAGE_HINKLEY_THRESHOLD = {threshold}  (ARL >= {blocks:.2g} blocks per side)")
    for delta in (1e-3, 1e-5):
        print(f"ADWIN delta={delta:g}: {simulate_adwin(delta, 1_000_000, seed=3)} false alarms in 1e6 blocks")


if __name__ == "__main__":
    main()
