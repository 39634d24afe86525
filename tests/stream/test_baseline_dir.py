"""The baselines directory: new, changed, corrupt and deleted files."""
from __future__ import annotations

import os

from stream.worker.baseline_dir import BaselineDirectory
from tests.stream.helpers import credit_baseline, fraud_baseline, training_baseline  # noqa: F401 (fixtures)


def bump_mtime(path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_new_changed_corrupt_and_deleted_files(tmp_path, credit_baseline, fraud_baseline):
    directory = BaselineDirectory(tmp_path)
    assert directory.scan() == []

    credit_baseline.save(tmp_path / "credit.msgpack")
    (tmp_path / "notes.txt").write_text("not a baseline: ignored")
    [change] = directory.scan()
    assert (change.kind, change.model, change.baseline.model) == ("loaded", "credit", "credit")
    assert directory.scan() == []  # unchanged file: not reloaded

    fraud_baseline.save(tmp_path / "fraud.msgpack")
    assert [(c.kind, c.model) for c in directory.scan()] == [("loaded", "fraud")]

    rebuilt = training_baseline("credit", seed=5, version="2")
    rebuilt.save(tmp_path / "credit.msgpack")
    bump_mtime(tmp_path / "credit.msgpack")
    [change] = directory.scan()
    assert (change.kind, change.baseline.version) == ("loaded", "2")

    (tmp_path / "fraud.msgpack").write_bytes(b"\x00garbage")
    [change] = directory.scan()
    assert (change.kind, change.model) == ("failed", "fraud")
    assert "baseline unusable" in change.detail and "fraud.msgpack" in change.detail

    (tmp_path / "credit.msgpack").unlink()
    [change] = directory.scan()
    assert (change.kind, change.model) == ("removed", "credit")
    assert "was deleted" in change.detail

    fraud_baseline.save(tmp_path / "fraud.msgpack")  # repaired
    bump_mtime(tmp_path / "fraud.msgpack")
    assert [(c.kind, c.model) for c in directory.scan()] == [("loaded", "fraud")]


def test_corrupt_file_never_loaded_is_named_after_its_file(tmp_path):
    (tmp_path / "churn.msgpack").write_bytes(b'{"json": "is not msgpack"}')
    [change] = BaselineDirectory(tmp_path).scan()
    assert (change.kind, change.model) == ("failed", "churn")


def test_missing_directory_is_a_problem_not_a_deletion(tmp_path, credit_baseline):
    credit_baseline.save(tmp_path / "credit.msgpack")
    directory = BaselineDirectory(tmp_path)
    assert [c.kind for c in directory.scan()] == ["loaded"]
    moved = tmp_path.with_name(tmp_path.name + "-moved")
    tmp_path.rename(moved)
    assert directory.scan() == []
    assert "cannot read the baselines directory" in directory.problem
    moved.rename(tmp_path)
    assert directory.scan() == [] and directory.problem is None
