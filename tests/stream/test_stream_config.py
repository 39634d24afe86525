"""Worker settings: one table, flag > environment > default."""
from __future__ import annotations

import argparse

import pytest

from stream.worker import config


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(argv)


def resolved(argv: list[str], env: dict[str, str]) -> object:
    env = dict(env)
    config.apply_to_env(parse(argv), env)
    return config.load(env)


def test_default_when_neither_flag_nor_environment():
    cfg = resolved([], {})
    assert (cfg.broker, cfg.baselines, cfg.web_port, cfg.partitions) == (
        "kafka://127.0.0.1:9092", "./baselines.d", 6066, 4)
    assert (cfg.input_topic, cfg.alert_topic, cfg.dead_letter_topic) == (
        "skewwatch.predictions", "skewwatch.alerts", "skewwatch.dead-letters")
    assert (cfg.batch_size, cfg.batch_within, cfg.checkpoint_interval, cfg.single_record_batches) == (
        1000, 0.2, 5.0, False)


def test_environment_wins_over_default_and_flag_wins_over_environment():
    env = {"SKEWWATCH_WEB_PORT": "7000", "SKEWWATCH_BROKER": "kafka://k:9092", "SKEWWATCH_BATCH_WITHIN": "0.5"}
    cfg = resolved(["--web-port", "7100"], env)
    assert cfg.web_port == 7100  # flag
    assert cfg.broker == "kafka://k:9092"  # environment
    assert cfg.batch_within == 0.5
    assert cfg.app_id == "skewwatch"  # default


def test_boolean_setting_from_flag_and_environment():
    assert resolved([], {"SKEWWATCH_SINGLE_RECORD_BATCHES": "true"}).single_record_batches is True
    flag_wins = resolved(["--no-single-record-batches"], {"SKEWWATCH_SINGLE_RECORD_BATCHES": "1"})
    assert flag_wins.single_record_batches is False
    assert resolved(["--single-record-batches"], {}).single_record_batches is True


def test_feature_metrics_is_one_of_the_metrics_detail_levels():
    assert resolved([], {}).feature_metrics == "all"
    assert resolved(["--feature-metrics", "Scores"], {"SKEWWATCH_FEATURE_METRICS": "all"}).feature_metrics == "scores"
    with pytest.raises(ValueError, match="SKEWWATCH_FEATURE_METRICS='none': use all, scores or drifting"):
        config.load({"SKEWWATCH_FEATURE_METRICS": "none"})


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="SKEWWATCH_PARTITIONS='four'"):
        config.load({"SKEWWATCH_PARTITIONS": "four"})


def test_every_setting_has_a_distinct_env_var_and_flag_and_the_password_has_no_flag():
    envs = [s.env for s in config.SETTINGS]
    flags = [s.flag for s in config.SETTINGS if s.flag]
    assert len(set(envs)) == len(envs) and len(set(flags)) == len(flags)
    assert all(e.startswith("SKEWWATCH_") for e in envs)
    assert next(s for s in config.SETTINGS if s.name == "sasl_password").flag is None
    assert {"SKEWWATCH_SECURITY_PROTOCOL", "SKEWWATCH_SASL_MECHANISM", "SKEWWATCH_SASL_USERNAME",
            "SKEWWATCH_SASL_PASSWORD", "SKEWWATCH_SSL_CAFILE", "SKEWWATCH_SSL_CERTFILE",
            "SKEWWATCH_SSL_KEYFILE", "SKEWWATCH_DATA_DIR"} <= set(envs)


def test_topics_include_the_changelog_with_the_input_partition_count():
    cfg = config.load({"SKEWWATCH_APP_ID": "w1", "SKEWWATCH_PARTITIONS": "6"})
    topics = config.topics(cfg)
    assert topics["skewwatch.predictions"] == 6
    assert topics["w1-monitor-checkpoints-changelog"] == 6


def test_security_settings_become_faust_credentials():
    import faust

    assert config.broker_credentials(config.load({})) is None
    sasl = config.broker_credentials(config.load({
        "SKEWWATCH_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SKEWWATCH_SASL_MECHANISM": "SCRAM-SHA-512",
        "SKEWWATCH_SASL_USERNAME": "u", "SKEWWATCH_SASL_PASSWORD": "p"}))
    assert isinstance(sasl, faust.SASLCredentials)
    assert (sasl.username, sasl.password, sasl.mechanism.value, sasl.ssl_context) == ("u", "p", "SCRAM-SHA-512", None)
    sasl_ssl = config.broker_credentials(config.load({"SKEWWATCH_SECURITY_PROTOCOL": "SASL_SSL"}))
    assert sasl_ssl.ssl_context is not None and sasl_ssl.protocol.value == "SASL_SSL"
    ssl_settings = config.load({"SKEWWATCH_SECURITY_PROTOCOL": "ssl"})
    assert isinstance(config.broker_credentials(ssl_settings), faust.SSLCredentials)
    with pytest.raises(ValueError, match="SASL_SSL"):
        config.broker_credentials(config.load({"SKEWWATCH_SECURITY_PROTOCOL": "KERBEROS"}))


def test_the_settings_type_declares_every_setting_with_its_type():
    import dataclasses
    import typing

    hints = typing.get_type_hints(config.Config)
    assert [f.name for f in dataclasses.fields(config.Config)] == [s.name for s in config.SETTINGS]
    for s in config.SETTINGS:
        allowed = typing.get_args(hints[s.name]) or (hints[s.name],)
        assert isinstance(s.default, allowed), (s.name, s.default, hints[s.name])
        assert isinstance(getattr(config.load({}), s.name), allowed)
