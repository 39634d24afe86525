"""The baselines directory: one `<model>.msgpack` per model, rescanned while the worker runs.

A scan compares each file's (mtime, size) with the previous scan and reloads what changed, so
a new or rebuilt baseline is picked up without a restart; a corrupt or deleted file disables
its model with a readable reason (its events are then dead-lettered with that reason rather
than checked against a baseline that is no longer there). `Baseline.save` writes atomically,
so a scan never sees a half-written file.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from baselines.profile import Baseline, BaselineError

__all__ = ["SUFFIX", "BaselineChange", "BaselineDirectory", "directory_problem"]

SUFFIX = ".msgpack"


def directory_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as the baselines directory; None when it can.

    `skewwatch worker` refuses to start on such a path, and a scan reports it in the same words.

    >>> directory_problem("/nonexistent/baselines.d")
    'cannot read the baselines directory /nonexistent/baselines.d: No such file or directory'
    """
    try:
        with os.scandir(path):
            return None
    except OSError as e:
        return _unreadable(path, e)


def _unreadable(path: str | Path, error: OSError) -> str:
    return f"cannot read the baselines directory {path}: {error.strerror or error}"


@dataclass(frozen=True)
class BaselineChange:
    """What one scan found: `baseline` is set for "loaded"; `detail` says why for the others."""

    kind: str  # "loaded" | "failed" | "removed"
    model: str
    path: Path
    baseline: Baseline | None = None
    detail: str = ""


class BaselineDirectory:
    """The baselines directory at `path`, and what each `scan` found changed since the last."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._seen: dict[Path, tuple[int, int]] = {}  # file -> (mtime_ns, size) at its last load
        self._model_of: dict[Path, str] = {}  # file -> model it held (or is named after)
        self.problem: str | None = None  # why the directory itself cannot be read

    def scan(self) -> list[BaselineChange]:
        """The models loaded, failed or removed since the last scan (all files on the first); an
        unreadable directory changes nothing and sets `problem`."""
        return list(self.scanning())

    def scanning(self) -> Iterator[BaselineChange]:
        """`scan`, a change at a time: each file is loaded only when its change is asked for (the
        worker lets its event loop run between two: hundreds of files take seconds)."""
        try:
            files = {p: p.stat() for p in self.path.iterdir() if p.name.endswith(SUFFIX) and p.is_file()}
            self.problem = None
        except OSError as e:
            # A missing or unreadable directory is reported, not treated as "every file deleted":
            # a transient mount problem must not disable every model.
            self.problem = _unreadable(self.path, e)
            return
        for path in sorted(set(self._seen) - set(files)):
            del self._seen[path]
            model = self._model_of.pop(path)
            yield BaselineChange("removed", model, path, detail=f"baseline file {path} was deleted")
        for path, st in sorted(files.items()):
            signature = (st.st_mtime_ns, st.st_size)
            if self._seen.get(path) == signature:
                continue
            self._seen[path] = signature
            try:
                baseline = Baseline.load(path)
            except BaselineError as e:
                model = self._model_of.setdefault(path, path.name[: -len(SUFFIX)])
                yield BaselineChange("failed", model, path, detail=f"baseline unusable: {e}")
                continue
            old = self._model_of.get(path)
            if old is not None and old != baseline.model:
                yield BaselineChange("removed", old, path, detail=f"{path} now holds model {baseline.model!r}")
            self._model_of[path] = baseline.model
            yield BaselineChange("loaded", baseline.model, path, baseline=baseline)
