"""One monitor's checkpoint as table records of bounded size: a head, and chunks when it is big.

The state (`ModelMonitor.state_dict`) is packed with msgpack and compressed with zlib (a
feature's state is mostly counts and small integers: ~5x smaller). A checkpoint whose compressed
state fits in `max_bytes` is one record, the head, holding it. A bigger one is split into chunks
of at most `max_bytes` each, written before the head, which names them by generation and count
and holds the digest of the whole; so no record is over the limit, whatever the model's width
(Kafka's default record limit is ~1 MB).

The chunks of two successive checkpoints of a model are written under two generations (0, 1)
that alternate: a crash between the chunks and the head leaves the previous head with its own
chunks, untouched, and the previous checkpoint is restored. A head whose chunks are missing or
belong to another checkpoint (their digest differs) is refused (`CheckpointError`); the caller
starts the monitor fresh and says why.

>>> import random
>>> state = {"events_seen": 3, "hist": bytes(30_000), "sums": random.Random(0).randbytes(1500)}
>>> records = encode({"offset": 41}, state, max_bytes=1024, generation=1)
>>> [len(r) for r in records]  # chunks first, the head last
[1005, 769, 59]
>>> head = read_head(records[-1])
>>> head.meta, head.chunks
({'offset': 41}, [(1, 0), (1, 1)])
>>> decode(head, {(1, 0): records[0], (1, 1): records[1]}.get) == state
True
>>> decode(head, {(1, 0): records[0]}.get)
Traceback (most recent call last):
...
stream.worker.checkpoint_codec.CheckpointError: chunk 1.1 of 2 is missing
"""
from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = ["FORMAT", "MIN_RECORD_BYTES", "CheckpointError", "Head", "decode", "encode", "read_head"]

#: 3: zlib-compressed state, split into chunks past the record limit (2: one plain msgpack record)
FORMAT = 3
#: the smallest record limit `encode` accepts: room for a head's fields and some state
MIN_RECORD_BYTES = 1024
#: bytes of a chunk record that are not the state's: its fields (~50 bytes)
_OVERHEAD = 64
_DIGEST_BYTES = 16


class CheckpointError(ValueError):
    """A checkpoint that cannot be read back: another format, a missing or foreign chunk, damage."""


@dataclass(frozen=True)
class Head:
    """A checkpoint's head record, read: what the caller stored with it (`meta`), the chunks the
    state is in ([(generation, index)], empty when the head holds the state: `inline`), the
    compressed state's digest and the packed state's size."""

    meta: dict[str, Any]
    chunks: list[tuple[int, int]]
    generation: int
    digest: bytes
    size: int
    inline: bytes | None


def encode(meta: dict[str, Any], state: dict[str, Any], max_bytes: int, generation: int) -> list[bytes]:
    """The records of one checkpoint, each at most `max_bytes`: its chunks in order (if any),
    then the head. `meta`: small plain data kept in the head (offsets, the baseline's
    fingerprint); `generation` (0 or 1): the chunks' generation, the other one than the previous
    checkpoint's of the same model (see the module docstring)."""
    if max_bytes < MIN_RECORD_BYTES:
        raise ValueError(f"a checkpoint record limit of {max_bytes} bytes is below {MIN_RECORD_BYTES}")
    packed = msgpack.packb(state, use_bin_type=True)
    payload = zlib.compress(packed, 6)
    digest = hashlib.blake2b(payload, digest_size=_DIGEST_BYTES).digest()
    fields = {"v": FORMAT, "meta": meta, "size": len(packed), "digest": digest, "gen": generation}
    head = msgpack.packb({**fields, "n": 0, "data": payload}, use_bin_type=True)
    if len(head) <= max_bytes:
        return [head]
    piece = max_bytes - _OVERHEAD
    pieces = [payload[i:i + piece] for i in range(0, len(payload), piece)]
    chunks = [msgpack.packb({"v": FORMAT, "gen": generation, "i": i, "digest": digest, "data": p}, use_bin_type=True)
              for i, p in enumerate(pieces)]
    head = msgpack.packb({**fields, "n": len(chunks)}, use_bin_type=True)
    if len(head) > max_bytes or any(len(c) > max_bytes for c in chunks):
        raise ValueError(f"checkpoint metadata too large for records of {max_bytes} bytes")
    return [*chunks, head]


def read_head(record: bytes) -> Head:
    """The head record, read (`CheckpointError` if it is not one of this format)."""
    try:
        data = msgpack.unpackb(record, raw=False, strict_map_key=False)
    except Exception as e:  # noqa: BLE001 (any damage is the same refusal)
        raise CheckpointError(f"unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict) or data.get("v") != FORMAT:
        version = data.get("v") if isinstance(data, dict) else None
        raise CheckpointError(f"checkpoint format {version!r}, this worker reads format {FORMAT}")
    try:
        generation, n = int(data["gen"]), int(data["n"])
        return Head(meta=dict(data["meta"]), chunks=[(generation, i) for i in range(n)], generation=generation,
                    digest=bytes(data["digest"]), size=int(data["size"]),
                    inline=bytes(data["data"]) if n == 0 else None)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"damaged head ({type(e).__name__}: {e})") from e


def decode(head: Head, chunk: Callable[[tuple[int, int]], bytes | None]) -> dict[str, Any]:
    """The state of the checkpoint `head`, its chunks looked up by (generation, index) with
    `chunk` (None: not there). `CheckpointError` when a chunk is missing or of another
    checkpoint, or the state does not read back."""
    if head.inline is not None:
        payload = head.inline
    else:
        pieces = []
        for generation, i in head.chunks:
            record = chunk((generation, i))
            if record is None:
                raise CheckpointError(f"chunk {generation}.{i} of {len(head.chunks)} is missing")
            try:
                data = msgpack.unpackb(record, raw=False, strict_map_key=False)
                ok = (data["v"] == FORMAT and data["gen"] == generation and data["i"] == i
                      and bytes(data["digest"]) == head.digest)
                pieces.append(bytes(data["data"]))
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"chunk {generation}.{i} is damaged ({type(e).__name__}: {e})") from e
            if not ok:
                raise CheckpointError(f"chunk {generation}.{i} belongs to another checkpoint")
        payload = b"".join(pieces)
    if hashlib.blake2b(payload, digest_size=_DIGEST_BYTES).digest() != head.digest:
        raise CheckpointError("the state does not match its digest")
    try:
        inflate = zlib.decompressobj()
        packed = inflate.decompress(payload, head.size)  # at most the size the head announces
        if len(packed) != head.size or inflate.unconsumed_tail:
            raise CheckpointError(f"the state is not of its announced size {head.size}")
        state = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"the state does not read back ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict):
        raise CheckpointError("the state is not a map")
    return state
