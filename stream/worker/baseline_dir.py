"""The baselines directory: one `<model>.msgpack` per model, rescanned while the worker runs.

A scan compares each file's signature (inode, size, mtime, ctime) with the previous scan's and
reloads what changed, so a new or rebuilt baseline is picked up without a restart. Names starting
with "." are skipped (editors' and copy tools' temporary files).

What a scan never does:

- act on a half-written file. A file that fails to load is judged only once its signature has
  stayed the same across two scans (a prefix of a baseline never loads: its top-level map is
  incomplete until the last byte); until then it is retried, silently. Deploying a baseline by
  renaming it into the directory (`Baseline.save` does) is still the recommended way: the scan
  then only ever sees the old file or the new one.
- disable a served model because a file is unusable. Its last good baseline stays served (a
  "kept" change, logged); only deleting the file that serves it disables the model ("removed").
- serve one model from two files. A second file declaring a served model is a "conflict" (logged):
  the model stays served from the file that served it first (at start, the first by name), and
  deleting either file leaves the other one serving it.

Reading a file is bounded before parsing (`Baseline.load`: regular files only, a size cap by
stat, capped decoding). A scan only reads files; the worker runs it off its event loop and
applies what it found on the loop (`DetectionService.rescan_off_loop`).
"""
from __future__ import annotations

import os
import threading
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
    """What one scan found about one file.

    `kind` is "loaded" (serve `baseline` for `model`), "failed" (the model, served by no file,
    has no usable baseline), "removed" (the file that served the model is gone), or, changing
    nothing that is served, "kept" (a file of a served model is unusable: the model keeps its
    baseline) or "conflict" (a second file declares a served model). `detail` says why.
    """

    kind: str
    model: str
    path: Path
    baseline: Baseline | None = None
    detail: str = ""


@dataclass
class _File:
    signature: tuple[int, ...]  # (inode, size, mtime_ns, ctime_ns) at its last load
    model: str  # the model it holds (never loaded: the model it is named after)
    baseline: Baseline | None  # its content when its last load succeeded, else None


class BaselineDirectory:
    """The baselines directory at `path`, and what each `scan` found changed since the last."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._files: dict[Path, _File] = {}  # the files loaded (or judged unusable), at their last load
        self._unsettled: dict[Path, tuple[int, ...]] = {}  # file -> signature at which it failed once
        self._serving: dict[str, Path] = {}  # model -> the file its served baseline came from
        self.problem: str | None = None  # why the directory itself cannot be read
        self._lock = threading.Lock()  # scans run in a thread: one at a time

    def scan(self) -> list[BaselineChange]:
        """The changes since the last scan (every file on the first); an unreadable directory
        changes nothing and sets `problem`."""
        with self._lock:
            try:
                entries = [p for p in self.path.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")]
                self.problem = None
            except OSError as e:
                # A missing or unreadable directory is reported, not treated as "every file deleted":
                # a transient mount problem must not disable every model.
                self.problem = _unreadable(self.path, e)
                return []
            files = {}
            for p in entries:
                try:
                    st = p.stat()
                except OSError:  # deleted since the listing, or a dangling link: absent
                    continue
                files[p] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            changes: list[BaselineChange] = []
            for path in sorted(set(self._unsettled) - set(files)):
                del self._unsettled[path]
            for path in sorted(set(self._files) - set(files)):
                gone = self._files.pop(path)
                if self._serving.get(gone.model) == path:
                    changes.append(self._hand_over(gone.model, path, f"baseline file {path} was deleted"))
                elif gone.model not in self._serving:  # an unusable file: its model stays unavailable
                    changes.append(BaselineChange("removed", gone.model, path,
                                                  detail=f"baseline file {path} was deleted"))
            for path, signature in sorted(files.items()):
                known = self._files.get(path)
                if known is not None and known.signature == signature:
                    continue
                changes.extend(self._load(path, signature, known))
            return changes

    def problems(self) -> dict[str, str]:
        """The served models that a file of the directory declares without serving them, {model: why}:
        a file that cannot be loaded (the model keeps the baseline last loaded), or a second file
        declaring the model (ignored). The first such file by name; a problem lasts as long as the
        file does, whatever scan reported it, and a model that is not served has none (it is disabled)."""
        with self._lock:
            out: dict[str, str] = {}
            for path, f in sorted(self._files.items()):
                serving = self._serving.get(f.model)
                if serving is None or f.model in out or (serving == path and f.baseline is not None):
                    continue
                if f.baseline is None:
                    out[f.model] = (f"{path} cannot be loaded; the model keeps the baseline last loaded"
                                    + ("" if serving == path else f" from {serving}"))
                else:
                    out[f.model] = f"{path} declares the model too and is ignored; it is served from {serving}"
            return out

    def _load(self, path: Path, signature: tuple[int, ...], known: _File | None) -> list[BaselineChange]:
        try:
            baseline = Baseline.load(path)
        except BaselineError as e:
            if self._unsettled.get(path) != signature:  # maybe still being written: retried next scan
                self._unsettled[path] = signature
                return []
            del self._unsettled[path]
            model = known.model if known is not None else path.name[: -len(SUFFIX)]
            self._files[path] = _File(signature, model, None)
            serving = self._serving.get(model)
            if serving == path:
                return [BaselineChange("kept", model, path, detail=f"baseline unusable: {e}; model {model!r} keeps "
                                       "the baseline last loaded from this file until it is fixed or deleted")]
            if serving is not None:
                return [BaselineChange("kept", model, path,
                                       detail=f"baseline unusable: {e}; model {model!r} is served from {serving}")]
            return [BaselineChange("failed", model, path, detail=f"baseline unusable: {e}")]
        self._unsettled.pop(path, None)
        self._files[path] = _File(signature, baseline.model, baseline)
        changes = []
        if known is not None and known.model != baseline.model and self._serving.get(known.model) == path:
            changes.append(self._hand_over(known.model, path, f"{path} now holds model {baseline.model!r}"))
        serving = self._serving.setdefault(baseline.model, path)
        if serving == path:
            changes.append(BaselineChange("loaded", baseline.model, path, baseline=baseline))
        else:
            changes.append(BaselineChange(
                "conflict", baseline.model, path,
                detail=f"{path} declares model {baseline.model!r} too: ignored; the model stays served from "
                       f"{serving}, the file that served it first (remove one of the two)"))
        return changes

    def _hand_over(self, model: str, path: Path, why: str) -> BaselineChange:
        """`path` no longer serves `model` (`why`): another file declaring it takes over (the
        first by name), else the model is removed."""
        del self._serving[model]
        for other, f in sorted(self._files.items()):
            if f.model == model and f.baseline is not None:
                self._serving[model] = other
                return BaselineChange("loaded", model, other, baseline=f.baseline,
                                      detail=f"{why}; now served from {other}")
        return BaselineChange("removed", model, path, detail=why)
