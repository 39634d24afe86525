"""stream.worker.checkpoint_codec: bounded records, exact round trips, refusals instead of crashes."""
from __future__ import annotations

import random
from functools import cache

import msgpack
import pytest

from detectors.model import ModelMonitor, MonitorConfig
from stream.devkit.synthetic import scenarios
from stream.worker import config
from stream.worker.checkpoint_codec import FORMAT, MIN_RECORD_BYTES, CheckpointError, decode, encode, read_head

#: the issue's goal for one feature's share of a checkpoint
BYTES_PER_FEATURE = 1536


@cache
def wide_state(n_features: int, n_events: int = 5000) -> dict:
    """A demo-shaped model's monitor state (tests/.. scenarios: mixed numeric and categorical)."""
    stream = scenarios.stationary(n_events, n_features=n_features, n_train=5000)
    monitor = ModelMonitor(stream.baseline())
    for i in range(0, n_events, 1000):
        monitor.update_batch(stream.events[i:i + 1000])
    return monitor.state_dict()


def restored(records: list[bytes]) -> dict:
    *chunks, head = records
    h = read_head(head)
    by_id = {(h.generation, i): c for i, c in enumerate(chunks)}
    return decode(h, by_id.get)


def test_a_small_state_is_one_record_and_reads_back_exactly():
    state = wide_state(50)
    records = encode({"offset": 7}, state, 900_000, 0)
    assert len(records) == 1
    assert read_head(records[0]).meta == {"offset": 7} and restored(records) == state
    assert len(records[0]) / 50 <= BYTES_PER_FEATURE


@pytest.mark.parametrize("limit", [MIN_RECORD_BYTES, 5000, 20_000])
def test_a_big_state_is_split_into_records_under_the_limit_and_reads_back_exactly(limit):
    state = wide_state(200)
    records = encode({"offset": 9, "baseline": "f" * 40}, state, limit, 1)
    assert len(records) > 1 and max(len(r) for r in records) <= limit
    assert restored(records) == state
    assert sum(map(len, records)) / 200 <= BYTES_PER_FEATURE


def test_a_state_exactly_around_the_limit():
    rng = random.Random(3)
    for _ in range(200):  # incompressible states of sizes around the limit
        state = {"x": rng.randbytes(rng.randrange(800, 3000))}
        records = encode({}, state, MIN_RECORD_BYTES, 0)
        assert max(map(len, records)) <= MIN_RECORD_BYTES and restored(records) == state


def test_a_missing_chunk_or_a_chunk_of_another_checkpoint_is_refused():
    state = wide_state(200)
    older = encode({"offset": 1}, state, 5000, 1)
    newer = encode({"offset": 2}, {**state, "events_seen": 1}, 5000, 1)  # the same generation: overwrites
    head = read_head(newer[-1])
    chunks = dict(enumerate(newer[:-1]))
    with pytest.raises(CheckpointError, match="missing"):
        decode(head, lambda c: chunks.get(c[1]) if c[1] != 2 else None)
    with pytest.raises(CheckpointError, match="another checkpoint"):
        decode(head, lambda c: (older if c[1] == 1 else newer)[c[1]])
    with pytest.raises(CheckpointError, match="another checkpoint"):  # a chunk of the other generation
        decode(head, lambda c: encode({}, state, 5000, 0)[c[1]])
    with pytest.raises(CheckpointError, match="damaged"):
        decode(head, lambda c: b"\xc1" if c[1] == 0 else chunks[c[1]])


def test_a_crash_between_the_chunks_and_the_head_leaves_the_previous_checkpoint_whole():
    """Successive checkpoints alternate generations: the new chunks do not overwrite the old ones."""
    state = wide_state(200)
    table: dict[tuple[int, int] | str, bytes] = {}

    def write(records: list[bytes], generation: int, with_head: bool = True) -> None:
        *chunks, head = records
        table.update(((generation, i), c) for i, c in enumerate(chunks))
        if with_head:
            table["head"] = head

    write(encode({"offset": 1}, state, 5000, 0), 0)
    write(encode({"offset": 2}, {**state, "events_seen": -1}, 5000, 1), 1, with_head=False)  # the crash
    head = read_head(table["head"])
    assert head.meta == {"offset": 1} and decode(head, table.get) == state


@pytest.mark.parametrize("record", [b"", b"\x00garbage", msgpack.packb([1, 2]),
                                    msgpack.packb({"v": 2, "offset": 3, "state": {}}),
                                    msgpack.packb({"v": FORMAT, "meta": {}})])
def test_an_unreadable_or_foreign_head_is_refused(record):
    with pytest.raises(CheckpointError):
        decode(read_head(record), {}.get)


def test_damaged_state_is_refused_not_raised():
    state = wide_state(50)
    head = msgpack.unpackb(encode({}, state, 900_000, 0)[0], raw=False)
    for damage in ({"size": head["size"] - 1}, {"size": head["size"] + 1}, {"data": head["data"][:-5]},
                   {"data": b"x" * 40}):
        with pytest.raises(CheckpointError):
            decode(read_head(msgpack.packb({**head, **damage}, use_bin_type=True)), {}.get)


def test_a_record_limit_below_the_minimum_is_refused_by_the_codec_and_the_setting():
    with pytest.raises(ValueError):
        encode({}, {}, MIN_RECORD_BYTES - 1, 0)
    with pytest.raises(ValueError, match="SKEWWATCH_MAX_CHECKPOINT_BYTES"):
        config.load({"SKEWWATCH_MAX_CHECKPOINT_BYTES": "100"})
    assert config.load({}).max_checkpoint_bytes == 900_000 < 1_000_000  # Faust's and Kafka's default limit


def test_with_examples_on_the_recent_values_are_kept_and_the_records_still_bounded():
    stream = scenarios.stationary(2000, n_features=20, n_train=5000)
    monitor = ModelMonitor(stream.baseline(), MonitorConfig(include_examples=True))
    monitor.update_batch(stream.events)
    state = monitor.state_dict()
    assert "recent" in state["numeric"]
    records = encode({}, state, 8192, 0)
    assert max(map(len, records)) <= 8192 and restored(records) == state
