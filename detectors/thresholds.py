"""Calibrated constants of every test: the alarm budget. Derived by `python -m detectors.calibration`
(run on 2026-11-25; its output is quoted below). Do not hand-tune: the margins are thin.

Budget: the whole model raises at most 1 false alert per 1e7 feature-events on stationary data.
Per feature-event, on stationary data (scores are uniform, so this holds for every feature):
  CUSUM location/scale, 4 chains, ARL >= 2e9 events each    4 x 5e-10  = 2.0e-9
  Bernoulli rate CUSUMs, 3 chains, Wald ARL >= 1e9 blocks   3 x 1.3e-10 = 0.4e-9
  window KS (or chi-square), WINDOW_ALPHA per 1000 events              = 1.0e-9
  Page-Hinkley, 2 sides, ARL >= 3.9e6 blocks of 512 events  2 x 5e-10  = 1.0e-9
  ADWIN, 0 false alarms in 1e6 blocks already at delta 1e-3            < 0.1e-9
  total ~4.5e-9 per feature-event, i.e. ~0.05 false alerts per 1e7: a 22x margin, which is what
  absorbs what the simulation cannot see (the finite baseline's residual error after the allowances
  below, dependence between chains is not needed: the union bound already covers it).

Calibration output (block CUSUM simulated on uniform scores, 250 chains x 4e5 events per point):
  h=10 ARL 6,665; h=14 ARL 51,894; h=18 ARL 452,489 events; C exp(theta h) with theta = 0.5129
  (exact for k = 0.25) fits C = 39.5..44.3 -> h = 35.0 for ARL 2e9 events.
  River PageHinkley(delta=0.5, alpha=1) on N(0, 1): threshold 4 / 6 / 8 -> ARL 366 / 2,592 / 15,190
  blocks per side -> threshold 14.0 for 3.9e6 blocks.
"""

__all__ = ["U_BITS", "LLR_SCALE", "CUSUM_BLOCK", "CUSUM_K", "CUSUM_H", "BASELINE_ALLOWANCE_SD", "RATE_H", "RATE_FLOOR",
           "WINDOW_ALPHA", "KS_BASELINE_ALLOWANCE", "RIVER_BLOCK", "TIMING_BLOCK", "RIVER_GRACE_BLOCKS", "ADWIN_DELTA",
           "PAGE_HINKLEY_DELTA", "PAGE_HINKLEY_THRESHOLD"]

#: fixed-point scale of PIT scores: u in [0, 1] -> integer in [0, 2**20]
U_BITS = 20
#: fixed-point scale of Bernoulli log-likelihood ratios
LLR_SCALE = 2.0**16

#: CUSUM on standardised PIT scores z = (u - 1/2) sqrt(12) (location) and (|2u - 1| - 1/2) sqrt(12)
#: (scale), both uniform on [-sqrt3, sqrt3] under "no change"; evaluated on blocks of events
CUSUM_BLOCK = 8
CUSUM_K = 0.25
CUSUM_H = 35.0
#: extra reference per standard error of the baseline (a baseline of n rows shifts the mean score by
#: ~N(0, 1/n)): k = CUSUM_K + 4 / sqrt(n), so the baseline's own estimation error does not alarm
BASELINE_ALLOWANCE_SD = 4.0

#: Bernoulli rate CUSUMs (missing, invalid, out of range, unseen category, unexpected field):
#: expected rate p0 = max(training rate + 4 SE, RATE_FLOOR), alternative min(max(2 p0, p0 + 0.05), (1 + p0) / 2)
#: (numeric.rate_weights); Wald's bound needs only that the weights are the LLR against p0
RATE_H = 20.72326583694641  # ln(1e9): Wald's bound gives ARL0 >= 1e9 blocks
RATE_FLOOR = 0.002

#: windowed tests: KS of the window's PIT scores (numeric), chi-square of category shares
WINDOW_ALPHA = 1e-6
#: the baseline's own KS error: P(sqrt(n) D_baseline > 2.5) < 1e-5, so D - 2.5 / sqrt(n) is tested
KS_BASELINE_ALLOWANCE = 2.5

#: River detectors on block means of PIT scores. 512 events, not 256: a River update costs ~1.4 us
#: per feature whatever the block (River's Python API), which at 256 was a tenth of the monitor's
#: time; their job is changes within production, over thousands of events (the CUSUMs catch skew
#: within dozens). Page-Hinkley's threshold is per block (standardised block means), unchanged.
RIVER_BLOCK = 512
#: blocks of the change-timing history that dates a change (detectors.timing): finer than River's
TIMING_BLOCK = 256
RIVER_GRACE_BLOCKS = 10
ADWIN_DELTA = 1e-5
PAGE_HINKLEY_DELTA = 0.5
PAGE_HINKLEY_THRESHOLD = 14.0
