"""A data file's format from its name, and the error of data that cannot be profiled: apart from
`baselines.readers`, which imports pandas (~0.35 s), so that `skewwatch replay` of a JSONL file
tells its format without it.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["BuildError", "format_of"]


class BuildError(ValueError):
    """The training data cannot be profiled (unknown format, missing column, bad line...).

    Defined here, apart from the readers, so that telling a file's format imports no pandas;
    `baselines.readers` and `baselines.build` re-export it.
    """


def format_of(p: Path) -> str:
    """"csv", "jsonl" or "parquet", from the file name (BuildError for any other).

    >>> format_of(Path("train.tsv.gz")), format_of(Path("events.ndjson")), format_of(Path("t.pq"))
    ('csv', 'jsonl', 'parquet')
    """
    name = p.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")) and not p.name.lower().endswith(".gz"):
        return "parquet"
    raise BuildError(f"{p}: unknown training data format (expected .csv, .csv.gz, .tsv, .jsonl, .ndjson or .parquet)")
