"""Reading a baseline file is bounded before parsing: only regular files, a size cap, and a cap on
the objects the msgpack decoder may build (an empty map is one byte on disk, ~64 in memory)."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tracemalloc

import msgpack
import pytest

from baselines.build import build_baseline_from_columns
from baselines.profile import Baseline, BaselineError


def test_a_device_a_fifo_or_a_directory_is_refused_without_reading_it(tmp_path):
    os.mkfifo(tmp_path / "fifo")  # opening it would block until a writer comes
    for path in ("/dev/zero", tmp_path / "fifo", tmp_path):  # /dev/zero was read until memory ran out
        with pytest.raises(BaselineError, match="not a regular file"):
            Baseline.load(path)


@pytest.mark.parametrize("argv", [["baseline", "show", "/dev/zero"],
                                  ["replay", "{events}", "--baseline", "/dev/zero"],
                                  ["report", "{events}", "--baseline", "/dev/zero", "-o", "{out}"]])
def test_commands_refuse_a_non_regular_baseline_file_with_one_line(tmp_path, argv):
    events = tmp_path / "e.jsonl"
    events.write_text('{"model": "m", "features": {}}\n')
    argv = [a.format(events=events, out=tmp_path / "r.html") for a in argv]
    proc = subprocess.run([sys.executable, "-m", "stream.commands.cli", *argv], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


ONE_LIST = b"\xdd" + (16_000_000).to_bytes(4, "big") + b"\x80" * 16_000_000
NESTED = b"\xdc" + (4_000).to_bytes(2, "big") + (b"\xdc" + (4_000).to_bytes(2, "big") + b"\x80" * 4_000) * 4_000


@pytest.mark.parametrize("content", [ONE_LIST, NESTED], ids=["one-list", "nested-lists"])
def test_millions_of_empty_maps_are_refused_before_they_are_built(tmp_path, content):
    # 16 MB of empty maps (1 byte each on disk); decoded whole it peaked at 1.1 GB
    path = tmp_path / "bomb.msgpack"
    path.write_bytes(content)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BaselineError):
        Baseline.load(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000, f"peak RSS grew by {grown_kib} KiB"


def test_a_real_baseline_with_many_features_still_loads(tmp_path):
    b = build_baseline_from_columns("wide", {f"f{i}": [float(j) for j in range(50)] for i in range(2_000)})
    b.save(tmp_path / "wide.msgpack")
    assert Baseline.load(tmp_path / "wide.msgpack").fingerprint == b.fingerprint
    assert msgpack.unpackb((tmp_path / "wide.msgpack").read_bytes())["model"] == "wide"


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path):
    # sparse: 1 GB on stat, nothing on disk; it used to be read up to the cap (256 MB) before the check
    path = tmp_path / "huge.msgpack"
    with open(path, "wb") as f:
        f.truncate(1 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(BaselineError, match="the cap of a baseline file"):
            Baseline.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated to refuse it"


@pytest.mark.parametrize("argv", [["baseline", "show", "{target}"],
                                  ["replay", "{events}", "--baseline", "{target}"],
                                  ["report", "{events}", "--baseline", "{target}", "-o", "{out}"]])
@pytest.mark.parametrize("target", ["fifo", "directory"])
def test_every_command_refuses_a_fifo_or_a_directory_as_a_baseline(tmp_path, argv, target):
    events = tmp_path / "e.jsonl"
    events.write_text('{"model": "m", "features": {}}\n')
    path = tmp_path / "b.msgpack"
    os.mkfifo(path) if target == "fifo" else path.mkdir()  # a FIFO would block the open until a writer came
    argv = [a.format(events=events, target=path, out=tmp_path / "r.html") for a in argv]
    proc = subprocess.run([sys.executable, "-m", "stream.commands.cli", *argv], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _peak_rss_mb_loading(path) -> float:
    """The peak RSS (MB) of a fresh process that loads `path` (VmHWM: not inherited across exec)."""
    code = ("import re, sys\nfrom baselines.profile import Baseline, BaselineError\n"
            "try:\n    Baseline.load(sys.argv[1])\nexcept BaselineError:\n    pass\n"
            "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return float(out.stdout)


#: 4M two-letter strings in 12 MB (3 bytes each on disk, ~60 in memory as list items)
_LIST_OF_4096 = b"\xdc" + (4_096).to_bytes(2, "big")
SHORT_STRINGS = b"\xdc" + (1_000).to_bytes(2, "big") + (_LIST_OF_4096 + b"\xa2ab" * 4_096) * 1_000


def test_short_strings_in_lists_are_refused_before_they_are_built(tmp_path):
    # a baseline's lists hold numbers only; decoded whole these peaked at 280 MB (1.2 GB for 50 MB)
    (tmp_path / "empty.msgpack").write_bytes(b"")
    (tmp_path / "strings.msgpack").write_bytes(SHORT_STRINGS)
    grown = _peak_rss_mb_loading(tmp_path / "strings.msgpack") - _peak_rss_mb_loading(tmp_path / "empty.msgpack")
    assert grown < 60, f"peak RSS grew by {grown:.0f} MB for a 12 MB file"
    with pytest.raises(BaselineError, match="only numbers"):
        Baseline.load(tmp_path / "strings.msgpack")


def test_the_numbers_and_map_entries_of_a_file_are_capped_in_all(monkeypatch):
    from baselines import profile

    numbers = msgpack.packb([[1.0] * 3_000] * 4)
    entries = msgpack.packb({f"k{i}": {f"c{j}": 1.0 for j in range(3_000)} for i in range(4)})
    for raw in (numbers, entries):
        with pytest.raises(BaselineError, match="not a skewwatch baseline"):  # decoded, then refused
            Baseline.loads(raw)
    monkeypatch.setattr(profile, "MAX_NUMBERS", 10_000)
    monkeypatch.setattr(profile, "MAX_MAP_ENTRIES", 10_000)
    with pytest.raises(BaselineError, match="more than 10000 numbers"):
        Baseline.loads(numbers)
    with pytest.raises(BaselineError, match="more than 10000 map entries"):
        Baseline.loads(entries)
