"""`skewwatch alerts`: follow the alert topic and print each alert for a person (or as JSON lines).

`format_alert` is the one pretty-printer of an alert dict; `skewwatch demo` uses it too.

>>> print(format_alert({
...     "kind": "drift", "severity": "critical", "model": "credit", "model_version": "1",
...     "feature": "income", "detector": "cusum", "statistic": 41.37, "threshold": 38.0,
...     "p_value": None, "events_seen": 12345, "ts": None,
...     "diagnosis": "income is lower at every quantile: population change",
...     "next_step": "retrain on recent data: ~30% of traffic has 'income' values unlike training",
...     "baseline": {"mean": 70125.4, "p50": 62000.0, "missing_rate": 0.01},
...     "current": {"mean": 49010.0, "p50": 43400.0, "missing_rate": 0.012}}))
--:--:--  CRITICAL  drift  credit v1 / income
  cusum statistic 41.4 > threshold 38 after 12,345 events
  diagnosis: income is lower at every quantile: population change
  next step: retrain on recent data: ~30% of traffic has 'income' values unlike training
                  baseline     current
  mean               70.1k         49k
  p50                  62k       43.4k
  missing_rate          1%        1.2%
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import orjson

from detectors.fmt import number, percent, printable, printable_tree

__all__ = ["bootstrap_servers", "configure", "decode_alert", "follow", "format_alert", "run"]

#: The baseline/current keys a reader looks at first, in this order; the other keys both sides
#: share follow, except the sample-size and tail details below (`--json` keeps everything).
_FIRST_KEYS = ("mean", "std", "p05", "p50", "p95", "top")
_DETAIL_KEYS = frozenset({"p25", "p75", "min", "max", "count", "events", "n_distinct", "other"})
_MAX_ROWS = 8
_WIDTH = 100


def configure(parser: argparse.ArgumentParser) -> None:
    """Add `skewwatch alerts`' arguments (--broker, --topic, --json, --from-beginning) to `parser`."""
    parser.add_argument("--broker", default=None,
                        help="Kafka URL or host:port (default: env SKEWWATCH_BROKER, else kafka://127.0.0.1:9092)")
    parser.add_argument("--topic", default=None,
                        help="alert topic (default: env SKEWWATCH_ALERT_TOPIC, else skewwatch.alerts)")
    parser.add_argument("--json", action="store_true", help="print each alert as one raw JSON line")
    parser.add_argument(
        "--from-beginning", action="store_true",
        help="also print the alerts already on the topic (default: only new ones)",
    )


def run(args: argparse.Namespace) -> int:
    """Follow the alert topic until Ctrl-C; 1 if the broker cannot be reached, 2 on a bad setting.

    The broker and topic default to the worker's own settings (same environment variables).
    """
    from aiokafka.errors import KafkaError

    from stream.worker import config

    # aiokafka logs every failed connection attempt; the one line below says it better
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        settings = config.load()  # the worker's settings: same environment, same defaults
    except ValueError as e:
        print(f"skewwatch alerts: error: {e}", file=sys.stderr)
        return 2
    broker, topic = args.broker or settings.broker, args.topic or settings.alert_topic
    try:
        asyncio.run(follow(broker, topic, as_json=args.json, from_beginning=args.from_beginning))
    except KeyboardInterrupt:
        pass
    except KafkaError as e:
        print(f"skewwatch alerts: error: cannot reach the broker at {bootstrap_servers(broker)} "
              f"({type(e).__name__}). Is it running, and is --broker right? "
              "(A local one for trying things out: skewwatch broker)", file=sys.stderr)
        return 1
    return 0


async def follow(broker: str, topic: str, *, as_json: bool = False, from_beginning: bool = False, out=None,
                 err=None) -> None:
    """Print every alert arriving on `topic` until cancelled.

    Says on `err` (stderr) once it is connected. A record that is not an alert (another producer
    on the topic) is reported on `err` with where it is, and skipped.

    Parameters
    ----------
    broker
        The broker's URL (``kafka://host:port``, several separated by ``;`` or ``,``) or host:port.
    topic
        The alert topic.
    as_json
        Print each alert as one JSON line instead of `format_alert`'s block.
    from_beginning
        Also print the alerts already on the topic, not only the new ones.
    out, err
        Where alerts and notices go (default: stdout, stderr).
    """
    from aiokafka import AIOKafkaConsumer

    out = out or sys.stdout
    err = err or sys.stderr
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers(broker),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
        which = "every alert on it" if from_beginning else "new alerts (--from-beginning for the older ones)"
        print(f"connected to {bootstrap_servers(broker)}: following topic {printable(topic)}, {which}",
              file=err, flush=True)
        async for record in consumer:
            try:
                alert = decode_alert(record.value)
            except Exception as e:  # noqa: BLE001 (any undecodable bytes: skip the record, say where it was)
                print(f"(skipped a record that is not an alert at partition {record.partition}, offset "
                      f"{record.offset}: {type(e).__name__})", file=err, flush=True)
                continue
            if as_json:
                out.write(orjson.dumps(alert).decode() + "\n")
            else:
                out.write(format_alert(alert) + "\n\n")
            out.flush()
    finally:
        await consumer.stop()


def bootstrap_servers(broker: str) -> str:
    """``kafka://h1:9092;kafka://h2:9092`` (the Faust spelling) -> ``h1:9092,h2:9092`` (the Kafka one).

    >>> bootstrap_servers("kafka://127.0.0.1:9092"), bootstrap_servers("localhost:9092")
    ('127.0.0.1:9092', 'localhost:9092')
    """
    parts = broker.replace(";", ",").split(",")
    return ",".join(part.strip().split("://", 1)[-1] for part in parts if part.strip())


def decode_alert(value: bytes) -> dict[str, Any]:
    """An alert record value: JSON or msgpack (the alert topic carries either); ValueError if it
    is neither, or not a map.

    >>> decode_alert(b'{"kind": "drift", "feature": "income"}')
    {'kind': 'drift', 'feature': 'income'}
    >>> decode_alert(msgpack.packb({"kind": "schema"}))
    {'kind': 'schema'}
    """
    alert = orjson.loads(value) if value[:1] == b"{" else msgpack.unpackb(value, raw=False, strict_map_key=False)
    if not isinstance(alert, dict):
        raise ValueError(f"an alert is a map, not {type(alert).__name__}")
    return alert


def format_alert(alert: Mapping[str, Any]) -> str:
    """One readable block: headline, test result, diagnosis, next step, baseline vs current. An
    update record (``"update": true``) is headed UPDATE and names the alert it settles.

    Every string of the alert is shown with its control characters escaped (`detectors.fmt.printable`):
    names and categories come from producers and must not drive the terminal. The module's docstring
    shows a whole block.

    Parameters
    ----------
    alert
        A decoded alert record (`decode_alert`); absent fields are left out or shown as "-".

    Returns
    -------
    str
        Lines without a trailing newline.
    """
    alert = printable_tree(dict(alert))
    ts = alert.get("ts")
    clock = time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "--:--:--"
    version = alert.get("model_version")
    subject = f"{alert.get('model')}{f' v{version}' if version else ''}"
    if alert.get("feature"):
        subject += f" / {alert['feature']}"
    lines = [f"{clock}  {str(alert.get('severity', '')).upper()}  {alert.get('kind')}  {subject}"]
    if alert.get("update"):
        # not another alert: the settled diagnosis of one printed before (same alert_id)
        lines[0] = f"{clock}  UPDATE  {alert.get('kind')}  {subject}"
        first = ((alert.get("evidence") or {}).get("update") or {}).get("first_cause")
        lines.append(f"  settles alert {alert.get('alert_id') or '-'}"
                     + (f" (first diagnosed as {first})" if first else ""))
    test = (f"  {alert.get('detector')} statistic {number(alert.get('statistic'))} "
            f"> threshold {number(alert.get('threshold'))}")
    if alert.get("p_value") is not None:
        test += f" (p={alert['p_value']:.2g})"
    if alert.get("events_seen") is not None:
        test += f" after {alert['events_seen']:,} events"
    lines.append(test)
    if alert.get("diagnosis"):
        lines.append(textwrap.fill(str(alert["diagnosis"]), _WIDTH, initial_indent="  diagnosis: ",
                                   subsequent_indent=" " * 13, break_on_hyphens=False))
    if alert.get("next_step"):
        lines.append(textwrap.fill(str(alert["next_step"]), _WIDTH, initial_indent="  next step: ",
                                   subsequent_indent=" " * 13, break_on_hyphens=False))
    lines.extend(_comparison(alert.get("baseline") or {}, alert.get("current") or {}, alert.get("detector")))
    return "\n".join(lines)


def _comparison(baseline: Mapping[str, Any], current: Mapping[str, Any], detector: Any) -> list[str]:
    shared = [k for k in baseline if k in current] or list(dict.fromkeys([*baseline, *current]))
    keys = [k for k in _FIRST_KEYS if k in shared]
    keys += [k for k in shared if k not in _FIRST_KEYS and k not in _DETAIL_KEYS]
    # A rate at 0% on both sides says nothing; the row of the detector's own measure goes first.
    keys = [k for k in keys if not (_is_rate(k) and not baseline.get(k) and not current.get(k))]
    if detector in keys:
        keys.insert(0, keys.pop(keys.index(detector)))
    keys = keys[:_MAX_ROWS]
    if not keys:
        return []
    width = max(12, *(len(k) for k in keys))
    rows = [f"  {'':<{width}}  {'baseline':>10}  {'current':>10}"]
    for key in keys:
        b, c = _cell(key, baseline.get(key)), _cell(key, current.get(key))
        if key == "top" or len(b) > 10 or len(c) > 10:
            # Category shares do not fit a column: one line each.
            rows.append(f"  {key:<{width}}  baseline: {b}")
            rows.append(f"  {'':<{width}}  current:  {c}")
        else:
            rows.append(f"  {key:<{width}}  {b:>10}  {c:>10}")
    return rows


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_cell(key, v)}" for k, v in list(value.items())[:6])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if _is_rate(key) or key == "top":
        return percent(value)
    return number(value)


def _is_rate(key: str) -> bool:
    return key.endswith(("_rate", "_share", "_ratio")) or key == "other"
