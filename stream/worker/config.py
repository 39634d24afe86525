"""The worker's settings: one table gives each its flag, environment variable, default and help.

Precedence: a flag given on the command line wins over the environment, which wins over the
default. `skewwatch worker` copies the flags it was given into the environment
(`apply_to_env`) and the Faust app, being a module-level object (`faust -A stream.worker.app worker`
imports it), reads everything from the environment (`load`).

>>> load({"SKEWWATCH_PARTITIONS": "8"}).partitions, load({}).broker
(8, 'kafka://127.0.0.1:9092')
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from detectors.events import Limits
from stream.worker.checkpoint_codec import MIN_RECORD_BYTES

__all__ = ["CHECKPOINT_TABLE", "DEFAULT_MAX_CHECKPOINT_BYTES", "FEATURE_METRICS", "JOIN_CHECKPOINT_TABLE", "SETTINGS",
           "Config", "Setting", "add_arguments", "apply_to_env", "broker_credentials", "changelog_topic",
           "decoder_limits", "join_changelog_topic", "joins_topic", "load", "shadow_candidates", "topics"]


@dataclass(frozen=True)
class Setting:
    """One setting: its flag (None: environment only), environment variable, default, help and
    the function that parses its text."""

    name: str
    flag: str | None  # None: environment only (secrets do not belong on a command line)
    env: str
    default: Any
    help: str
    type: Callable[[str], Any] = str


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true/false)")


_DEFAULT_LIMITS = Limits()

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be at least 0, not {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be more than 0, not {text}")
    return value


#: below Kafka's default record limit (message.max.bytes, ~1 MB) and Faust's producer's (1,000,000)
DEFAULT_MAX_CHECKPOINT_BYTES = 900_000


def _record_bytes(text: str) -> int:
    value = int(text)
    if value < MIN_RECORD_BYTES:
        raise ValueError(f"must be at least {MIN_RECORD_BYTES}, not {value}")
    return value


def shadow_candidates(settings: Config) -> list[str]:
    """The candidate models of the settings' shadow pairs (none without SKEWWATCH_SHADOW)."""
    if not settings.shadow:
        return []
    from detectors.joins.shadow import parse_shadow_pairs  # numpy: only when pairs are set
    return [candidate for _, candidate in parse_shadow_pairs(settings.shadow)]


def _shadow_pairs(text: str) -> str:
    """production=candidate pairs, comma-separated, checked (detectors.joins.parse_shadow_pairs) and
    written back in one spelling."""
    from detectors.joins.shadow import parse_shadow_pairs, shadow_pairs_text  # numpy: only when pairs are set

    return shadow_pairs_text(parse_shadow_pairs(text))


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError(f"must be between 0 and 1 (exclusive), not {value}")
    return value


#: per-feature series on /metrics (stream.worker.metrics): "all" = drift score, open alerts, drift
#: statistics and missing ratio (~10 per feature); "scores" = drift score and open alerts (~1 per
#: feature); "drifting" = those only for the features drifting now (score >= 0.5) or alerting
FEATURE_METRICS = ("all", "scores", "drifting")


def _feature_metrics(text: str) -> str:
    value = text.strip().lower()
    if value not in FEATURE_METRICS:
        raise ValueError(f"use {', '.join(FEATURE_METRICS[:-1])} or {FEATURE_METRICS[-1]}")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting("broker", "--broker", "SKEWWATCH_BROKER", "kafka://127.0.0.1:9092",
            "Kafka bootstrap URL(s), e.g. kafka://k1:9092;kafka://k2:9092"),
    Setting("baselines", "--baselines", "SKEWWATCH_BASELINES", "./baselines.d",
            "directory of baseline files, one <model>.msgpack per model (rescanned while running)"),
    Setting("web_host", "--web-host", "SKEWWATCH_WEB_HOST", "127.0.0.1",
            "address of the /metrics and status web server"),
    Setting("web_port", "--web-port", "SKEWWATCH_WEB_PORT", 6066, "port of the /metrics and status web server", int),
    Setting("input_topic", "--input-topic", "SKEWWATCH_INPUT_TOPIC", "skewwatch.predictions",
            "topic of prediction events (JSON or msgpack; one event or a list per message; key = model)"),
    Setting("alert_topic", "--alert-topic", "SKEWWATCH_ALERT_TOPIC", "skewwatch.alerts",
            "topic the alerts go to (key = model)"),
    Setting("dead_letter_topic", "--dead-letter-topic", "SKEWWATCH_DEAD_LETTER_TOPIC", "skewwatch.dead-letters",
            "topic of rejected messages with the reason"),
    Setting("feature_log_topic", "--feature-log-topic", "SKEWWATCH_FEATURE_LOG_TOPIC", "skewwatch.feature-log",
            "topic of the offline pipeline's recomputed features {request_id, model, features}, joined with the "
            "served events by request_id (skew alerts)"),
    Setting("labels_topic", "--labels-topic", "SKEWWATCH_LABELS_TOPIC", "skewwatch.labels",
            "topic of delayed labels {request_id, label}, joined with the predictions (performance alerts)"),
    Setting("partitions", "--partitions", "SKEWWATCH_PARTITIONS", 4,
            "partitions of the input topic (the checkpoint changelog gets the same number)", int),
    Setting("batch_size", "--batch-size", "SKEWWATCH_BATCH_SIZE", 1000, "messages per micro-batch at most", int),
    Setting("batch_within", "--batch-within", "SKEWWATCH_BATCH_WITHIN", 0.2,
            "seconds to wait for a micro-batch to fill before processing what arrived", float),
    Setting("fetch_max_wait_ms", "--fetch-max-wait-ms", "SKEWWATCH_FETCH_MAX_WAIT_MS", 100,
            "longest a fetch waits at the broker for new records (Faust hard-codes 1500 ms, which "
            "bounds alert latency on brokers that hold fetches to the limit)", int),
    Setting("app_id", "--app-id", "SKEWWATCH_APP_ID", "skewwatch",
            "Faust app id: the consumer group and the prefix of the changelog topic"),
    Setting("data_dir", "--data-dir", "SKEWWATCH_DATA_DIR", None, "Faust data directory (default: ./<app-id>-data)"),
    Setting("checkpoint_interval", "--checkpoint-interval", "SKEWWATCH_CHECKPOINT_INTERVAL", 5.0,
            "seconds between checkpoints of the monitors' state (also the offset-commit interval)", float),
    # default: detectors.processing.HOLD_EVENTS (not imported here: it pulls in numpy)
    Setting("hold_events", "--hold-events", "SKEWWATCH_HOLD_EVENTS", 512,
            "a model's events wait until it has this many (or --hold-seconds passed) and are then monitored "
            "together: with many models in one stream, each model's few events per batch cost a monitor "
            "call each; the alerts are the same, later; 0 feeds every event at once", _count),
    # 0.25 s: an alert's latency budget is 1 s at p99 (bench/e2e.py (d)); the micro-batch wait takes 0.2
    Setting("hold_seconds", "--hold-seconds", "SKEWWATCH_HOLD_SECONDS", 0.25,
            "longest an event waits for its model's other events (--hold-events): the most an alert is delayed "
            "by the hold", _positive_seconds),
    Setting("max_checkpoint_bytes", "--max-checkpoint-bytes", "SKEWWATCH_MAX_CHECKPOINT_BYTES",
            DEFAULT_MAX_CHECKPOINT_BYTES,
            "largest checkpoint record, in bytes: a bigger monitor state is split into several records; keep "
            "it below the broker's and the producer's record limits (Kafka's default is ~1 MB)", _record_bytes),
    Setting("baseline_scan_interval", "--baseline-scan-interval", "SKEWWATCH_BASELINE_SCAN_INTERVAL", 2.0,
            "seconds between rescans of the baselines directory", float),
    Setting("joins", "--joins", "SKEWWATCH_JOINS", False,
            "join served events by request_id with the feature-log topic (skew alerts) and the labels "
            "topic (performance alerts); it forwards every served event with a request_id once more "
            "through an internal topic, so it is off unless you publish a feature log or labels", _bool),
    # defaults: detectors.joins.JoinConfig (not imported here: it pulls in numpy and river)
    Setting("join_ttl", "--join-ttl", "SKEWWATCH_JOIN_TTL", 86_400.0,
            "seconds (of event time) a served event waits for its feature-log record or label, and a "
            "feature-log record or label for its event; size it to the label delay", float),
    Setting("join_max_entries", "--join-max-entries", "SKEWWATCH_JOIN_MAX_ENTRIES", 100_000,
            "records waiting per join at most (the oldest is dropped beyond it)", int),
    Setting("joins_partitions", "--joins-partitions", "SKEWWATCH_JOINS_PARTITIONS", 1,
            "partitions of the internal joins-by-request topic (and of its checkpoint changelog): each holds "
            "the statistics of its share of the request ids, so with 1 a model's parity, performance, leakage "
            "and shadow tests see all its joined requests; more spread the joins over workers, each testing "
            "its share. Kafka cannot shrink a topic: an existing one keeps its count (docs/reliability.md)",
            _positive_int),
    Setting("shadow", "--shadow", "SKEWWATCH_SHADOW", "",
            "shadow pairs production=candidate, comma-separated (e.g. credit=credit-v2): the candidate's "
            "prediction events are joined with production's by request_id and compared (shadow alerts); "
            "turns the joins on", _shadow_pairs),
    Setting("shadow_ttl", "--shadow-ttl", "SKEWWATCH_SHADOW_TTL", 600.0,
            "seconds (of event time) a prediction of a shadow pair waits for the other model's", float),
    Setting("shadow_window", "--shadow-window", "SKEWWATCH_SHADOW_WINDOW", 1000,
            "joined requests per shadow window, each tested against the expected agreement", _positive_int),
    Setting("shadow_min_agreement", "--shadow-min-agreement", "SKEWWATCH_SHADOW_MIN_AGREEMENT", None,
            "the agreement a shadow candidate must keep, tested from the first window (default: the first "
            "window's agreement less 2 points and its sampling error, tested from the second)", _share),
    # The decoder's caps (detectors.events.Limits): what one hostile message may cost. A message,
    # list or event over a cap is dead-lettered whole with the reason oversized / too_many_events /
    # too_many_features. docs/reliability.md lists every cap, these and the monitors' own.
    Setting("max_message_bytes", "--max-message-bytes", "SKEWWATCH_MAX_MESSAGE_BYTES",
            _DEFAULT_LIMITS.max_message_bytes,
            "largest message value decoded, in bytes (Kafka's own default limit is ~1 MB)", _positive_int),
    Setting("max_events_per_message", "--max-events-per-message", "SKEWWATCH_MAX_EVENTS_PER_MESSAGE",
            _DEFAULT_LIMITS.max_events_per_message, "most events in one message (a list)", _positive_int),
    Setting("max_features_per_event", "--max-features-per-event", "SKEWWATCH_MAX_FEATURES_PER_EVENT",
            _DEFAULT_LIMITS.max_features_per_event, "most entries in one event's `features` map", _positive_int),
    Setting("include_examples", "--include-examples", "SKEWWATCH_INCLUDE_EXAMPLES", False,
            "quote individual values in alerts (raw invalid values, served vs offline values of parity "
            "examples); off by default: production features may be personal data", _bool),
    Setting("feature_metrics", "--feature-metrics", "SKEWWATCH_FEATURE_METRICS", "all",
            "per-feature series on /metrics: all (drift score, open alerts, drift statistics, missing ratio: "
            "~10 per feature), scores (drift score and open alerts: ~1 per feature) or drifting (those of the "
            "features with a drift score >= 0.5 or an open alert only: for hundreds of models)",
            _feature_metrics),
    Setting("log_level", "--log-level", "SKEWWATCH_LOG_LEVEL", "info",
            "worker log level (debug, info, warning, error)"),
    Setting("single_record_batches", "--single-record-batches", "SKEWWATCH_SINGLE_RECORD_BATCHES", False,
            "produce one record per batch: the workaround for the embedded (Tansu) broker's ListOffsets bug; "
            "leave off for Apache Kafka", _bool),
    Setting("security_protocol", "--security-protocol", "SKEWWATCH_SECURITY_PROTOCOL", "PLAINTEXT",
            "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    Setting("sasl_mechanism", "--sasl-mechanism", "SKEWWATCH_SASL_MECHANISM", "PLAIN",
            "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or GSSAPI"),
    Setting("sasl_username", "--sasl-username", "SKEWWATCH_SASL_USERNAME", None, "SASL user name"),
    Setting("sasl_password", None, "SKEWWATCH_SASL_PASSWORD", None, "SASL password (environment only)"),
    Setting("ssl_cafile", "--ssl-cafile", "SKEWWATCH_SSL_CAFILE", None,
            "CA bundle that signed the brokers' certificates"),
    Setting("ssl_certfile", "--ssl-certfile", "SKEWWATCH_SSL_CERTFILE", None, "client certificate (mutual TLS)"),
    Setting("ssl_keyfile", "--ssl-keyfile", "SKEWWATCH_SSL_KEYFILE", None, "client private key (mutual TLS)"),
)

@dataclass(frozen=True)
class Config:
    """The worker's settings, resolved (`load`): one typed field per entry of SETTINGS, same order."""

    broker: str
    baselines: str
    web_host: str
    web_port: int
    input_topic: str
    alert_topic: str
    dead_letter_topic: str
    feature_log_topic: str
    labels_topic: str
    partitions: int
    batch_size: int
    batch_within: float
    fetch_max_wait_ms: int
    app_id: str
    data_dir: str | None
    checkpoint_interval: float
    hold_events: int
    hold_seconds: float
    max_checkpoint_bytes: int
    baseline_scan_interval: float
    joins: bool
    join_ttl: float
    join_max_entries: int
    joins_partitions: int
    shadow: str
    shadow_ttl: float
    shadow_window: int
    shadow_min_agreement: float | None
    max_message_bytes: int
    max_events_per_message: int
    max_features_per_event: int
    include_examples: bool
    feature_metrics: str
    log_level: str
    single_record_batches: bool
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str | None
    sasl_password: str | None
    ssl_cafile: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None

#: Name of the Faust table holding the monitors' checkpoints; its changelog topic is
#: "<app-id>-<this>-changelog".
CHECKPOINT_TABLE = "monitor-checkpoints"
#: Name of the Faust table holding the joins' checkpoints (stream.worker.joins), as many partitions
#: as the joins topic; its changelog topic is "<app-id>-<this>-changelog".
JOIN_CHECKPOINT_TABLE = "join-checkpoints"


def add_arguments(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """Add the settings' flags; an absent flag stays None so the environment can decide."""
    wanted = None if only is None else set(only)
    for s in SETTINGS:
        if s.flag is None or (wanted is not None and s.name not in wanted):
            continue
        shown = f"env {s.env}, default {s.default}"
        if s.type is _bool:
            parser.add_argument(s.flag, dest=s.name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{s.help} ({shown})")
        else:
            parser.add_argument(s.flag, dest=s.name, type=s.type, default=None, metavar=s.name.upper(),
                                help=f"{s.help} ({shown})")


def apply_to_env(args: argparse.Namespace, environ: dict[str, str] | None = None) -> None:
    """Copy the flags that were given into the environment (where `load` finds them)."""
    env = os.environ if environ is None else environ
    for s in SETTINGS:
        value = getattr(args, s.name, None)
        if value is None:
            continue
        env[s.env] = ("true" if value else "false") if isinstance(value, bool) else str(value)


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every setting from the environment, falling back to its default."""
    env = os.environ if environ is None else environ
    values = {}
    for s in SETTINGS:
        text = env.get(s.env)
        if text is None or text == "":
            values[s.name] = s.default
            continue
        try:
            values[s.name] = s.type(text)
        except ValueError as e:
            raise ValueError(f"{s.env}={text!r}: {e}") from None
    return Config(**values)


def decoder_limits(cfg: Config) -> Limits:
    """The decoder's caps from the settings.

    >>> decoder_limits(load({"SKEWWATCH_MAX_MESSAGE_BYTES": "5000"})).max_message_bytes
    5000
    """
    return Limits(max_message_bytes=cfg.max_message_bytes, max_events_per_message=cfg.max_events_per_message,
                  max_features_per_event=cfg.max_features_per_event)


def changelog_topic(cfg: Config) -> str:
    """The changelog topic Faust writes the checkpoint table to."""
    return f"{cfg.app_id}-{CHECKPOINT_TABLE}-changelog"


def join_changelog_topic(cfg: Config) -> str:
    """The changelog topic Faust writes the joins' checkpoint table to."""
    return f"{cfg.app_id}-{JOIN_CHECKPOINT_TABLE}-changelog"


def joins_topic(cfg: Config) -> str:
    """The internal topic that brings the served events, feature-log records and labels of one
    request id to one partition (stream.worker.joins)."""
    return f"{cfg.app_id}-joins-by-request"


def topics(cfg: Config) -> dict[str, int]:
    """Every topic the worker uses, with its partition count: what to create on a broker that
    auto-creates topics with another count (the embedded one does)."""
    return {
        cfg.input_topic: cfg.partitions,
        changelog_topic(cfg): cfg.partitions,
        cfg.alert_topic: cfg.partitions,
        cfg.dead_letter_topic: cfg.partitions,
        cfg.feature_log_topic: cfg.partitions,
        cfg.labels_topic: cfg.partitions,
        joins_topic(cfg): cfg.joins_partitions,
        join_changelog_topic(cfg): cfg.joins_partitions,
        f"{cfg.app_id}-__assignor-__leader": 1,
    }


def broker_credentials(cfg: Config) -> Any:
    """Faust's `broker_credentials` for the security settings (None for PLAINTEXT)."""
    import ssl

    import faust

    protocol = cfg.security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.ssl_cafile)
        if cfg.ssl_certfile:
            context.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        return faust.SASLCredentials(username=cfg.sasl_username, password=cfg.sasl_password,
                                     mechanism=cfg.sasl_mechanism, ssl_context=context)
    raise ValueError(f"SKEWWATCH_SECURITY_PROTOCOL={cfg.security_protocol!r}: "
                     "use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
