"""Training files read in chunks: CSV (.csv, .tsv), JSONL (.jsonl, .ndjson), either gzipped, and Parquet.

Each reader yields ``(frame, bytes_read)``: a pandas chunk and how far through the file (on disk,
compressed or not) reading has got, for a progress display.
"""
from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from baselines.formats import BuildError, format_of

if TYPE_CHECKING:
    from baselines.build import Profiler, Roles

__all__ = ["INFER_ROWS", "JSONL_CHUNK_ROWS", "BuildError", "csv_frames", "format_of", "jsonl_frames", "parquet_frames"]

#: at most this many rows per JSONL chunk: a row is a Python dict there, ~50x a CSV row's memory
JSONL_CHUNK_ROWS = 20_000
#: bytes read at a time from a Parquet column chunk (its pages are streamed, not loaded whole)
PARQUET_READ_BUFFER = 1 << 20
#: rows of a CSV read (as text) to decide each column's kind (a column still empty there is
#: decided later, from its first values)
INFER_ROWS = 20_000
#: CSV spellings of a missing value in numeric columns (categorical columns: only the empty field,
#: so that a category "NA" -- Namibia -- stays a category)
NULL_WORDS = ["", "null", "NULL", "None", "NA", "N/A", "n/a", "nan", "NaN", "-nan", "<NA>", "#N/A"]


class _Opened:
    """A binary file (transparently gunzipped) that knows how far through the raw file it is."""

    def __init__(self, p: Path):
        self._raw = open(p, "rb")
        gzipped = p.name.lower().endswith(".gz")
        self.stream: io.BufferedIOBase = gzip.GzipFile(fileobj=self._raw) if gzipped else self._raw

    @property
    def bytes_read(self) -> int:
        return self._raw.tell()

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stream.close()
        self._raw.close()


def csv_frames(p: Path, profiler: Profiler, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, int]]:
    """A CSV or TSV file's chunks; the profiler decides the column kinds from the first rows, read as text.

    Parameters
    ----------
    p
        The file (.csv or .tsv, optionally gzipped).
    profiler
        Decides each column's kind from the first INFER_ROWS rows (`Profiler.decide`), then says how
        to read it: as text or typed, which null spellings count as missing, which columns to skip.
    chunk_rows
        Rows per chunk.

    Yields
    ------
    frame, bytes_read
        A chunk and how far through the file on disk reading has got.
    """
    sep = "\t" if p.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    try:
        with _Opened(p) as f:
            # Decide kinds from text, so that the parser's own guess (e.g. "007" -> 7) does not.
            head = pd.read_csv(f.stream, sep=sep, nrows=INFER_ROWS, dtype=str, keep_default_na=False,
                               na_values=NULL_WORDS)
        profiler.decide(head)
        usecols = [c for c in head.columns if not profiler.excludes(c)]
        dtype = {c: str for c in usecols if profiler.reads_as_text(c)}
        na_values = {c: (NULL_WORDS if profiler.reads_null_words(c) else [""]) for c in usecols}
        with _Opened(p) as f:
            reader = pd.read_csv(f.stream, sep=sep, chunksize=chunk_rows, usecols=usecols,
                                 dtype=dtype, keep_default_na=False, na_values=na_values)
            with reader:
                for frame in reader:
                    yield frame, f.bytes_read
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise BuildError(f"{p}: cannot parse as CSV: {str(e).strip().splitlines()[0]}") from None
    except pd.errors.EmptyDataError:
        raise BuildError(f"{p}: empty file (no header)") from None


def jsonl_frames(p: Path, roles: Roles, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, int]]:
    """A JSONL file's chunks: flat rows, or events whose `features` object is the row (plus the role columns).

    Parameters
    ----------
    p
        The file (.jsonl or .ndjson, optionally gzipped); blank lines are skipped.
    roles
        The role columns, taken from an event's top level when its features are nested.
    chunk_rows
        Rows per chunk.

    Yields
    ------
    frame, bytes_read
        A chunk and how far through the file on disk reading has got.

    Examples
    --------
    >>> import tempfile
    >>> from baselines.build import Roles
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "events.jsonl"
    ...     _ = path.write_text('{"features": {"amount": 1.5}, "confidence": 0.9}\\n{"amount": 2.5}\\n')
    ...     [(frame.to_dict("list"), n) for frame, n in jsonl_frames(path, Roles("confidence", None, None), 10)]
    [({'amount': [1.5, 2.5], 'confidence': [0.9, nan]}, 65)]
    """
    import orjson

    role_columns = list(roles.columns)
    rows: list[dict] = []
    with _Opened(p) as f:
        try:
            for lineno, line in enumerate(f.stream, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise BuildError(f"{p}:{lineno}: invalid JSON ({e})") from None
                if not isinstance(obj, dict):
                    raise BuildError(f"{p}:{lineno}: not a JSON object")
                features = obj.get("features")
                if isinstance(features, dict):
                    # the event format: features are the `features` object; the top level holds
                    # only metadata, of which the role columns (confidence, prediction, label) count
                    for c in role_columns:
                        if c in obj:
                            features[c] = obj[c]
                    obj = features
                rows.append(obj)
                if len(rows) >= chunk_rows:
                    yield pd.DataFrame.from_records(rows), f.bytes_read
                    rows = []
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise BuildError(f"{p}: cannot decompress: {e}") from None
        if rows:
            yield pd.DataFrame.from_records(rows), f.bytes_read


def parquet_frames(p: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, int]]:
    """A Parquet file's chunks of at most chunk_rows rows, nested (event-shaped) columns flattened.

    Read a record batch at a time, its pages streamed: with pyarrow's defaults (pre-buffering, whole
    column chunks read at once) memory grew with the file (peak RSS 1.0 GB at 1M rows x 50 columns,
    1.3 GB at 2M; now 0.64 GB for both).
    Its columns are compressed per row group, so no byte offset tracks the rows decoded: bytes_read
    is the file's size in proportion to the rows decoded.

    Parameters
    ----------
    p
        The file (.parquet or .pq); reading it needs pyarrow.
    chunk_rows
        Rows per chunk at most.

    Yields
    ------
    frame, bytes_read
        A chunk (``features.amount`` read as ``amount``) and the estimated bytes read so far.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BuildError("reading Parquet needs pyarrow: pip install 'skewwatch[parquet]'") from None
    try:
        parquet = pq.ParquetFile(p, pre_buffer=False, buffer_size=PARQUET_READ_BUFFER)
    except (pa.ArrowException, OSError) as e:
        raise BuildError(f"{p}: not a readable Parquet file: {e}") from None
    total = parquet.metadata.num_rows
    size = p.stat().st_size
    done = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        table = pa.Table.from_batches([batch])
        while any(pa.types.is_struct(field.type) for field in table.schema):
            table = table.flatten()  # an event-shaped file: features.amount -> amount
        # a block per column, each Arrow buffer released once converted: not two whole copies at once
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
        frame.columns = [c.removeprefix("features.") for c in frame.columns]
        done += len(frame)
        yield frame, size * done // total if total else 0
