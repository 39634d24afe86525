"""The baselines directory: new, changed, corrupt, half-written, duplicated and deleted files."""
from __future__ import annotations

import os
import shutil

from stream.worker.baseline_dir import BaselineDirectory
from tests.stream.helpers import credit_baseline, fraud_baseline, training_baseline  # noqa: F401 (fixtures)


def bump_mtime(path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def kinds(changes) -> list[tuple[str, str]]:
    return [(c.kind, c.model) for c in changes]


def test_new_changed_corrupt_and_deleted_files(tmp_path, credit_baseline, fraud_baseline):
    directory = BaselineDirectory(tmp_path)
    assert directory.scan() == []

    credit_baseline.save(tmp_path / "credit.msgpack")
    (tmp_path / "notes.txt").write_text("not a baseline: ignored")
    [change] = directory.scan()
    assert (change.kind, change.model, change.baseline.model) == ("loaded", "credit", "credit")
    assert directory.scan() == []  # unchanged file: not reloaded

    fraud_baseline.save(tmp_path / "fraud.msgpack")
    assert kinds(directory.scan()) == [("loaded", "fraud")]

    rebuilt = training_baseline("credit", seed=5, version="2")
    rebuilt.save(tmp_path / "credit.msgpack")
    bump_mtime(tmp_path / "credit.msgpack")
    [change] = directory.scan()
    assert (change.kind, change.baseline.version) == ("loaded", "2")

    (tmp_path / "fraud.msgpack").write_bytes(b"\x00garbage")
    assert directory.scan() == []  # maybe still being written: judged once it has settled
    [change] = directory.scan()
    assert (change.kind, change.model) == ("kept", "fraud")  # served: it keeps its last good baseline
    assert "unusable" in change.detail and "fraud.msgpack" in change.detail
    assert directory.scan() == []  # said once

    (tmp_path / "credit.msgpack").unlink()
    [change] = directory.scan()
    assert (change.kind, change.model) == ("removed", "credit")
    assert "was deleted" in change.detail

    fraud_baseline.save(tmp_path / "fraud.msgpack")  # repaired
    bump_mtime(tmp_path / "fraud.msgpack")
    assert kinds(directory.scan()) == [("loaded", "fraud")]


def test_a_corrupt_file_never_loaded_fails_once_settled_named_after_its_file(tmp_path):
    (tmp_path / "churn.msgpack").write_bytes(b'{"json": "is not msgpack"}')
    directory = BaselineDirectory(tmp_path)
    assert directory.scan() == []
    [change] = directory.scan()
    assert (change.kind, change.model) == ("failed", "churn") and "baseline unusable" in change.detail


def test_a_half_written_file_is_never_reported_and_its_completion_loads(tmp_path, credit_baseline):
    # a plain `cp` over the served file: the scan may see any prefix of it
    path = tmp_path / "credit.msgpack"
    credit_baseline.save(path)
    directory = BaselineDirectory(tmp_path)
    assert kinds(directory.scan()) == [("loaded", "credit")]
    whole = path.read_bytes()
    for cut in (0, 1, len(whole) // 3, len(whole) - 1):
        with open(path, "wb") as f:  # in place, as cp does
            f.write(whole[:cut])
        assert directory.scan() == [], cut  # was: "failed", which disabled the model
    path.write_bytes(whole)
    [change] = directory.scan()
    assert change.kind == "loaded" and change.baseline.fingerprint == credit_baseline.fingerprint


def test_a_copy_declaring_the_same_model_is_a_conflict_and_either_copy_can_go(tmp_path, credit_baseline):
    original, copy = tmp_path / "credit.msgpack", tmp_path / "credit-backup.msgpack"
    credit_baseline.save(original)
    directory = BaselineDirectory(tmp_path)
    assert kinds(directory.scan()) == [("loaded", "credit")]

    shutil.copy(original, copy)
    [change] = directory.scan()
    assert (change.kind, change.model) == ("conflict", "credit")
    assert str(copy) in change.detail and str(original) in change.detail
    copy.unlink()
    assert directory.scan() == []  # was: "removed", which disabled credit until the original was touched

    shutil.copy(original, copy)
    assert kinds(directory.scan()) == [("conflict", "credit")]
    original.unlink()  # the copy takes over
    [change] = directory.scan()
    assert (change.kind, change.path, change.baseline.fingerprint) == ("loaded", copy, credit_baseline.fingerprint)
    assert "was deleted" in change.detail
    copy.unlink()
    assert kinds(directory.scan()) == [("removed", "credit")]


def test_two_files_of_one_model_at_start_serve_the_first_by_name(tmp_path, credit_baseline):
    credit_baseline.save(tmp_path / "b.msgpack")
    training_baseline("credit", seed=9).save(tmp_path / "a.msgpack")
    directory = BaselineDirectory(tmp_path)
    loaded, conflict = directory.scan()
    assert (loaded.kind, loaded.path.name, conflict.kind, conflict.path.name) == ("loaded", "a.msgpack",
                                                                                  "conflict", "b.msgpack")


def test_a_file_that_changes_model_hands_the_old_one_to_its_other_file(tmp_path, credit_baseline, fraud_baseline):
    credit_baseline.save(tmp_path / "a.msgpack")
    credit_baseline.save(tmp_path / "b.msgpack")
    directory = BaselineDirectory(tmp_path)
    assert kinds(directory.scan()) == [("loaded", "credit"), ("conflict", "credit")]
    fraud_baseline.save(tmp_path / "a.msgpack")
    bump_mtime(tmp_path / "a.msgpack")
    changes = directory.scan()
    assert [(c.kind, c.model, c.path.name) for c in changes] == [("loaded", "credit", "b.msgpack"),
                                                                  ("loaded", "fraud", "a.msgpack")]


def test_a_broken_file_never_disables_a_model_another_file_serves(tmp_path, credit_baseline):
    credit_baseline.save(tmp_path / "credit-v2.msgpack")
    directory = BaselineDirectory(tmp_path)
    assert kinds(directory.scan()) == [("loaded", "credit")]
    (tmp_path / "credit.msgpack").write_bytes(b"\x93 broken")
    assert directory.scan() == []
    assert kinds(directory.scan()) == [("kept", "credit")]
    (tmp_path / "credit.msgpack").unlink()
    assert directory.scan() == []


def test_a_fifo_a_directory_and_hidden_files_are_not_read(tmp_path, credit_baseline):
    os.mkfifo(tmp_path / "fifo.msgpack")  # opening it would wait for a writer
    (tmp_path / "dir.msgpack").mkdir()
    credit_baseline.save(tmp_path / ".credit.msgpack")  # an editor's or a copy tool's temporary file
    directory = BaselineDirectory(tmp_path)
    assert directory.scan() == []
    changes = directory.scan()
    assert kinds(changes) == [("failed", "dir"), ("failed", "fifo")]
    assert all("not a regular file" in c.detail for c in changes)


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
