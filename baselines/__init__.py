"""Training baselines: profile a model's training data once, save it, load it where detection runs.

`baselines.build` profiles a file or in-memory columns (reading with `baselines.readers`, keeping
per-column statistics with `baselines.accumulate`); `baselines.profile` is the saved `Baseline` and
its file format; `baselines.show` prints one for a person. Nothing is re-exported here: import from
the module that defines a name.
"""
from __future__ import annotations

__all__: list[str] = []
