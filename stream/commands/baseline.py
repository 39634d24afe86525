"""`skewwatch baseline build|show`: profile training data, inspect a stored baseline.

Only pandas/numpy/msgpack are imported (no Faust), so the command starts fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detectors.fmt import printable
from stream.commands.progress import StatusLine, status_line
from stream.commands.stdout import reader_went_away
from stream.commands.tables import column_names

__all__ = ["configure", "run"]

#: the end of `baseline build --help`: how values become categories (the rule of docs/contracts.md,
#: "Prediction event") and what a file needs
BUILD_EPILOG = """\
categories: a CSV's text is kept as written (True, 007 and 1.0 stay so; no boolean or number is
guessed for a categorical column); JSONL/Parquet values are keyed as in events. Events match them
by text: a string exactly ("True" is not "true"), a number by its shortest spelling (1 and 1.0 are
"1"), JSON true/false by the baseline's spelling of a boolean (true, else True, else TRUE): a CSV
column of True/False matches JSON booleans and the strings "True"/"False" alike.

A file needs at least {min_rows:,} rows. A column whose name looks like an output (score,
prediction, target...) is profiled as a feature with a warning unless its --*-column flag is given.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `build` and `show` subcommands and their arguments to `parser`."""
    from baselines.build import MIN_ROWS
    from baselines.seasonal import SEASONAL_PERIODS

    sub = parser.add_subparsers(dest="baseline_command", required=True, metavar="{build,show}")
    build = sub.add_parser("build", help="profile a training file into a baseline",
                           description="Profile a training file (CSV, JSONL or Parquet) into a baseline file.",
                           epilog=BUILD_EPILOG.format(min_rows=MIN_ROWS),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("train", metavar="TRAIN", help="training data: .csv, .csv.gz, .tsv, .jsonl, .ndjson, .parquet")
    build.add_argument("-o", "--output", required=True, help="baseline file to write (msgpack)")
    build.add_argument("--model", required=True, help="model name events carry in their `model` field")
    build.add_argument("--version", help="model version the baseline belongs to")
    build.add_argument("--confidence-column", help="column holding the model's confidence in [0, 1]")
    build.add_argument("--prediction-column", help="column holding the model's prediction")
    build.add_argument("--label-column", help="column holding the true label (needs --prediction-column)")
    build.add_argument("--categorical", type=column_names, action="extend", default=[], metavar="A,B",
                       help="columns to profile as categorical whatever they look like")
    build.add_argument("--exclude", type=column_names, action="extend", default=[], metavar="C,D",
                       help="columns to leave out")
    build.add_argument("--time-ordered", action="store_true",
                       help="the rows are in time order, as production sends them (sort the file first): measure "
                            "each feature's serial dependence so that the monitors' thresholds allow for it "
                            "(docs/realdata.md)")
    build.add_argument("--timestamp-column", metavar="COL",
                       help="column of each row's time (seconds since the epoch, a datetime or ISO 8601 text; not a "
                            "feature), for --seasonal")
    build.add_argument("--seasonal", choices=sorted(SEASONAL_PERIODS),
                       help="keep each numeric feature's profile per slot of the clock (UTC), read from "
                            "--timestamp-column: the monitors compare each event with its slot by the event's `ts` "
                            "(docs/realdata.md)")
    build.add_argument("--timezone", metavar="TZ",
                       help="with --seasonal: the slots are this IANA time zone's local hours or weekdays (e.g. "
                            "America/New_York, summer time included), not UTC's")
    show = sub.add_parser("show", help="print a baseline readably", description="Print a baseline file readably.")
    show.add_argument("baseline", metavar="BASELINE", help="baseline file (msgpack)")
    show.add_argument("--json", action="store_true", help="the whole baseline as JSON, arrays included")


def run(args: argparse.Namespace) -> int:
    """Build or show a baseline; 0 on success, 2 with one line on stderr when the input is refused."""
    from baselines.build import BuildError
    from baselines.profile import BaselineError

    try:
        if args.baseline_command == "build":
            return _build(args)
        return _show(args)
    except (BuildError, BaselineError) as e:
        return _fail(str(e))
    except BrokenPipeError:  # `skewwatch baseline show B | head`: as replay does
        return reader_went_away()
    except OSError as e:
        return _fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
    except MemoryError:
        return _fail("out of memory while profiling")


def _build(args: argparse.Namespace) -> int:
    from baselines.build import build_baseline

    progress = _BuildProgress(Path(args.train).name) if sys.stderr.isatty() else None
    baseline = build_baseline(
        args.train,
        model=args.model,
        version=args.version,
        confidence_column=args.confidence_column,
        prediction_column=args.prediction_column,
        label_column=args.label_column,
        categorical=args.categorical,
        exclude=args.exclude,
        time_ordered=args.time_ordered,
        timestamp_column=args.timestamp_column,
        seasonal=args.seasonal,
        timezone=args.timezone,
        progress=progress,
        warn=progress.warn if progress is not None else _warn,
    )
    if progress is not None:
        progress.done()
    baseline.save(args.output)
    kinds = [p.kind for p in baseline.features.values()]
    print(f"wrote {args.output}: model {printable(baseline.model)}, {baseline.n_rows:,} rows, "
          f"{kinds.count('numeric')} numeric + {kinds.count('categorical')} categorical features",
          file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    from baselines.profile import Baseline
    from baselines.show import baseline_json, format_baseline

    baseline = Baseline.load(args.baseline)
    print(baseline_json(baseline) if args.json else format_baseline(baseline))
    return 0


class _BuildProgress:
    """The `baselines.build.Progress` callback of `baseline build` on a terminal: the status line of
    `replay` and `report` (`stream.commands.progress`), counting rows."""

    def __init__(self, label: str):
        self._label = label
        self._line: StatusLine | None = None

    def __call__(self, rows: int, bytes_read: int, total_bytes: int | None) -> None:
        if self._line is None:  # the file's size comes with the first chunk
            self._line = status_line(self._label, total_bytes, unit="rows")
        if self._line is not None:
            self._line.update(rows, bytes_read)

    def warn(self, message: str) -> None:
        """A warning on its own line: the status line is erased first (and redrawn at the next chunk)."""
        self.done()
        _warn(message)

    def done(self) -> None:
        """Erase the status line: the summary that follows starts on a clean line."""
        if self._line is not None:
            self._line.clear()


def _warn(message: str) -> None:
    # messages name the training file's columns: escaped (detectors.fmt.printable)
    print(f"skewwatch baseline: warning: {printable(message)}", file=sys.stderr)


def _fail(message: str) -> int:
    print(f"skewwatch baseline: {printable(message)}", file=sys.stderr)
    return 2
