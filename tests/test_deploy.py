"""The docker-compose stack, checked without Docker: the files parse, and every name they share
with the code (subcommand, SKEWWATCH_* variables, topics, ports, metric names, datasource uid)
is the one the code uses. The settings come from `stream.worker.config.SETTINGS`, the subcommands from
`stream.commands.cli`, the metrics from `stream.worker.metrics.Metrics`: renaming any of them without updating
deploy/ fails here. promtool (Debian package `prometheus`) adds syntax checks and the rules'
unit tests when it is installed."""
from __future__ import annotations

import argparse
import base64
import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from string import Template

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.commands import cli
from stream.devkit.processes import free_port
from stream.worker import config
from stream.worker.metrics import PER_MODEL_FAMILIES, Metrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
LOOPBACK = "127.0.0.1"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install --no-install-recommends prometheus)")

# ---------------------------------------------------------------------------------- helpers

_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value, host_env: dict[str, str]):
    """Docker Compose's variable interpolation ($$, $VAR, ${VAR}, ${VAR-d}, ${VAR:-d})."""
    if isinstance(value, dict):
        return {k: interpolate(v, host_env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, host_env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        current = host_env.get(name)
        if m.group(3) is not None and (current is None or (m.group(2) == ":" and current == "")):
            return m.group(3)
        return current or ""

    return _COMPOSE_VARIABLE.sub(replace, value)


def compose(host_env: dict[str, str] | None = None) -> dict:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return interpolate(raw, host_env or {})


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def worker_service_name(stack: dict) -> str:
    (name,) = [n for n, s in stack["services"].items() if "build" in s]
    return name


def worker_service(stack: dict) -> dict:
    return stack["services"][worker_service_name(stack)]


def worker_config(stack: dict):
    """The worker's resolved settings: the image's ENV overlaid by the compose environment."""
    return config.load({**dockerfile_env(), **environment(worker_service(stack))})


def dockerfile_instructions() -> list[tuple[str, str]]:
    logical, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    return [tuple(line.split(None, 1)) for line in logical]  # (INSTRUCTION, arguments)


def dockerfile(instruction: str) -> list[str]:
    return [args for name, args in dockerfile_instructions() if name.upper() == instruction]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for args in dockerfile("ENV"):
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            env[key] = value
    return env


def bind_mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) of the service's bind mounts (short syntax)."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith((".", "/")):
            mounts.append((source, target, "ro" in mode))
    return mounts


def host_path(service: dict, container_path: str) -> Path:
    """The repository file a container path comes from, through the service's bind mounts."""
    path = PurePosixPath(container_path)
    for source, target, _ in bind_mounts(service):
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return ROOT / source / path.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repository")


def metric_catalogue() -> dict[str, tuple[str, frozenset[str]]]:
    """Every sample name the worker exposes -> (family type, its labels), from stream/worker/metrics.py."""
    metrics = Metrics(CollectorRegistry())
    # prometheus_client has no public accessor for a metric's label names.
    labels = {m._name: frozenset(m._labelnames) for m in vars(metrics).values() if hasattr(m, "_labelnames")}
    labels |= {name: frozenset(labelnames) for name, _, labelnames in PER_MODEL_FAMILIES}
    catalogue = {}
    for family in metrics.registry.collect():
        names = {"counter": [family.name + "_total"],
                 "histogram": [family.name + s for s in ("_bucket", "_sum", "_count")],
                 "gauge": [family.name]}[family.type]
        for name in names:
            extra = {"le"} if name.endswith("_bucket") else set()
            catalogue[name] = (family.type, labels[family.name] | extra)
    return catalogue


def rules() -> list[dict]:
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "skewwatch.json").read_text())


def dashboard_queries() -> list[str]:
    d = dashboard()
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in d["templating"]["list"] if v["type"] == "query"]
    return exprs


GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval"}
SCRAPE_JOB = "skewwatch"  # deploy/prometheus.yml's job for the worker
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series


def promql_problems(expr: str, catalogue: dict) -> list[str]:
    """What is wrong with the skewwatch names in a PromQL expression (structure, not full syntax:
    promtool checks that when installed)."""
    problems = []
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        problems.append("unbalanced brackets")
    used = re.findall(r"\bskewwatch_[a-z0-9_]+", expr)
    if not used:
        problems.append("queries no skewwatch metric")
    known_labels = set(SCRAPE_LABELS)
    for name in used:
        if name not in catalogue:
            problems.append(f"unknown metric {name}")
        else:
            known_labels |= catalogue[name][1]
    for name, matchers in re.findall(r"\b(skewwatch_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
            if name in catalogue and label not in catalogue[name][1] | SCRAPE_LABELS:
                problems.append(f"{name} has no label {label}")
    for labels in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        for label in filter(None, (part.strip() for part in labels.split(","))):
            if label not in known_labels:
                problems.append(f"grouping by unknown label {label}")
    for function, name in re.findall(r"\b(rate|irate|increase)\(\s*(skewwatch_[a-z0-9_]+)", expr):
        if name in catalogue and catalogue[name][0] not in ("counter", "histogram"):
            problems.append(f"{function}() of the {catalogue[name][0]} {name}")
    for name in re.findall(r"histogram_quantile\([^,]+,.*?\b(skewwatch_[a-z0-9_]+)", expr):
        if not name.endswith("_bucket"):
            problems.append(f"histogram_quantile over {name}, not a _bucket series")
    for metric, label in re.findall(r"label_values\(\s*(skewwatch_[a-z0-9_]+)[^,]*,\s*([a-z_]+)\s*\)", expr):
        if metric in catalogue and label not in catalogue[metric][1]:
            problems.append(f"label_values: {metric} has no label {label}")
    return problems


def output_labels(expr: str, catalogue: dict) -> set[str]:
    """Labels an expression's result keeps: the grouping labels once it aggregates, else the
    labels of the series it selects."""
    if re.search(r"\b(sum|min|max|avg|count|topk|bottomk|quantile)\s*(\(|by\b|without\b)", expr):
        return {name.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", expr) for name in group.split(",")}
    return set(SCRAPE_LABELS).union(*(catalogue[n][1] for n in re.findall(r"\bskewwatch_[a-z0-9_]+", expr)))



# ---------------------------------------------------------------------------------- compose


def test_compose_parses_and_every_service_has_an_image_or_build():
    stack = compose()
    assert set(stack["services"]) == {"kafka", "kafka-init", "skewwatch", "prometheus", "grafana"}
    for name, service in stack["services"].items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = service["build"] if isinstance(service["build"], str) else service["build"]["context"]
            assert (ROOT / context / "Dockerfile").is_file()
    for name, service in stack["services"].items():
        for dependency in service.get("depends_on", {}):
            assert dependency in stack["services"], f"{name} depends on unknown {dependency}"


def test_images_are_official_and_pinned():
    images = {name: s["image"] for name, s in compose()["services"].items() if "build" not in s}
    repositories = {name: image.split(":")[0] for name, image in images.items()}
    assert repositories == {"kafka": "apache/kafka", "kafka-init": "apache/kafka",
                            "prometheus": "prom/prometheus", "grafana": "grafana/grafana"}
    for image in images.values():
        assert ":" in image and not image.endswith(":latest"), image


def test_published_ports_bind_loopback_only():
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == LOOPBACK, (name, port)
            else:
                assert str(port).startswith(LOOPBACK + ":"), (name, port)


def test_worker_command_is_a_real_subcommand_that_parses():
    stack = compose()
    worker = worker_service(stack)
    (entrypoint,) = [json.loads(args) for args in dockerfile("ENTRYPOINT")]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["skewwatch"] and "skewwatch" in scripts
    argv = worker["command"]
    assert argv[0] in cli.COMMANDS and argv[0] == "worker"
    args = cli.build_parser(argv).parse_args(argv)
    assert args._module == cli.COMMANDS["worker"][0]
    # the image's default command is the same
    assert [json.loads(args) for args in dockerfile("CMD")] == [["worker"]]


def test_worker_environment_is_made_of_settings_the_worker_reads():
    stack = compose()
    readable = {s.env for s in config.SETTINGS}
    for env in (environment(worker_service(stack)), dockerfile_env(), environment(stack["services"]["kafka-init"])):
        skewwatch_vars = {k for k in env if k.startswith("SKEWWATCH_")}
        assert skewwatch_vars and skewwatch_vars <= readable, skewwatch_vars - readable
    cfg = worker_config(stack)  # every value parses with the setting's type
    assert cfg.web_host == "0.0.0.0", "Prometheus in another container must reach /metrics"
    assert cfg.security_protocol == "PLAINTEXT" and cfg.single_record_batches is False


def test_worker_reaches_kafka_on_the_compose_network():
    stack = compose()
    kafka = stack["services"]["kafka"]
    env = environment(kafka)
    cfg = worker_config(stack)
    scheme, _, address = cfg.broker.partition("://")
    assert scheme == "kafka"
    advertised = dict(listener.split("://") for listener in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert address in advertised.values()
    host, port = address.split(":")
    assert host in ("kafka", kafka.get("hostname"))
    assert worker_service(stack)["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert stack["services"]["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_kafka_is_a_consistent_single_node_kraft_cluster():
    kafka = compose()["services"]["kafka"]
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = {name: int(addr.rsplit(":", 1)[1])
                 for name, addr in (listener.split("://") for listener in env["KAFKA_LISTENERS"].split(","))}
    advertised = dict(listener.split("://") for listener in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(listeners) <= set(protocols)
    assert controller in listeners and controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    for name, address in advertised.items():
        assert name in listeners and int(address.rsplit(":", 1)[1]) == listeners[name]
    (voter,) = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    node_id, address = voter.split("@")
    assert node_id == env["KAFKA_NODE_ID"] and address == f"{kafka['hostname']}:{listeners[controller]}"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16  # a Kafka Uuid
    # the host listener is published on the port it advertises
    external = [a for a in advertised.values() if a.split(":")[0] in ("localhost", LOOPBACK)]
    assert [f"{LOOPBACK}:{a.split(':')[1]}:{a.split(':')[1]}" for a in external] == kafka["ports"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


@pytest.mark.parametrize("host_env", [
    {},
    {"SKEWWATCH_PARTITIONS": "12", "SKEWWATCH_INPUT_TOPIC": "fraud.predictions", "SKEWWATCH_APP_ID": "sw-fraud",
     "SKEWWATCH_JOINS_PARTITIONS": "3"},
], ids=["defaults", "overridden"])
def test_kafka_init_creates_exactly_the_worker_topics(host_env):
    stack = compose(host_env)
    init = stack["services"]["kafka-init"]
    assert init["entrypoint"][:2] == ["/bin/sh", "-ec"]
    (script,) = init["command"]
    parser = _kafka_topics_parser()
    created, configs = {}, {}
    for line in filter(None, (raw.strip() for raw in script.splitlines())):
        argv = shlex.split(Template(line).substitute(environment(init)))  # the shell's expansion
        assert argv[0] == "/opt/kafka/bin/kafka-topics.sh"
        args = parser.parse_args(argv[1:])
        assert args.create and args.if_not_exists and args.bootstrap_server == "kafka:9092"
        created[args.topic] = args.partitions
        configs[args.topic] = dict(c.split("=") for c in args.config)
    cfg = worker_config(stack)
    assert created == config.topics(cfg)
    if host_env:
        assert cfg.partitions == 12 and cfg.input_topic == "fraud.predictions" and cfg.joins_partitions == 3
    else:
        assert cfg.joins_partitions == 1  # one joins partition holds each model's whole join statistics
    assert configs[config.changelog_topic(cfg)] == configs[config.join_changelog_topic(cfg)] == {
        "cleanup.policy": "compact"}
    assert environment(stack["services"]["kafka"])["KAFKA_NUM_PARTITIONS"] == str(cfg.partitions)


def _kafka_topics_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--bootstrap-server", required=True)
    parser.add_argument("--create", action="store_true")
    parser.add_argument("--if-not-exists", action="store_true")
    parser.add_argument("--replication-factor", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--config", action="append", default=[])
    return parser


def test_baselines_are_mounted_read_only_where_the_worker_reads_them():
    stack = compose()
    cfg = worker_config(stack)
    assert ("./baselines.d", cfg.baselines, True) in bind_mounts(worker_service(stack))
    assert any(v.split(":")[1] == cfg.data_dir for v in worker_service(stack)["volumes"])


def test_every_other_bind_mount_exists_in_the_repository():
    for name, service in compose()["services"].items():
        for source, _, read_only in bind_mounts(service):
            if source == "./baselines.d":
                continue  # the user's baselines; Docker creates the directory if absent
            assert (ROOT / source).exists(), (name, source)
            assert read_only, (name, source)


# ---------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_the_package_as_a_non_root_user():
    (base,) = dockerfile("FROM")
    assert base == "python:3.11-slim"
    (user,) = dockerfile("USER")
    assert user not in ("root", "0")
    assert any("pip install ." in args for args in dockerfile("RUN"))
    cfg = config.load(dockerfile_env())
    assert dockerfile("EXPOSE") == [str(cfg.web_port)]
    assert cfg.web_host == "0.0.0.0"


def test_dockerfile_copies_everything_the_package_needs_and_dockerignore_keeps_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # setup.py: the C extension of the monitors
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    needed = {"pyproject.toml", "setup.py", project["project"]["readme"], *packages}
    copied = set()
    for args in dockerfile("COPY"):
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        copied |= {s.rstrip("/") for s in sources}
    assert needed <= copied, needed - copied
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith(("#", "!"))]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not any(fnmatch(path, pattern) for pattern in ignored), path
    assert {".git", ".venv"} <= set(ignored)


class _MetricsOnly(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/metrics" else 404)
        self.end_headers()
        self.wfile.write(b"skewwatch_broker_connected 1.0\n")

    def log_message(self, *args):
        pass


def test_healthcheck_probe_passes_on_metrics_and_fails_without_a_server():
    (healthcheck,) = dockerfile("HEALTHCHECK")
    argv = json.loads(healthcheck.split("CMD", 1)[1])
    assert argv[0] == "python"  # the slim image has no curl
    probe = [sys.executable, *argv[1:]]
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _MetricsOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = str(server.server_address[1])
        assert subprocess.run(probe, env={"SKEWWATCH_WEB_PORT": port}, capture_output=True).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    closed = str(free_port())
    assert subprocess.run(probe, env={"SKEWWATCH_WEB_PORT": closed}, capture_output=True).returncode != 0


# ---------------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_the_worker_port_and_loads_the_mounted_rules():
    stack = compose()
    prometheus = stack["services"]["prometheus"]
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    assert host_path(prometheus, config_path) == DEPLOY / "prometheus.yml"
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == SCRAPE_JOB]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (discovery,) = job["dns_sd_configs"]
    assert discovery["type"] == "A"
    assert discovery["names"] == [worker_service_name(stack)] and discovery["port"] == worker_config(stack).web_port
    for rule_file in prom["rule_files"]:
        in_container = PurePosixPath(config_path).parent / rule_file
        assert host_path(prometheus, str(in_container)) == DEPLOY / rule_file


def test_alert_rules_query_real_metrics_and_are_documented():
    catalogue = metric_catalogue()
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) >= 6
    for rule in rules():
        if "skewwatch_" not in rule["expr"]:  # Prometheus' own scrape health of the workers
            assert set(re.findall(r"\bup\{[^}]*\}", rule["expr"])) == {f'up{{job="{SCRAPE_JOB}"}}'}, rule["expr"]
            continue
        assert not promql_problems(rule["expr"], catalogue), (rule["alert"], rule["expr"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        for label in re.findall(r"\$labels\.([a-z_]+)", json.dumps(rule["annotations"])):
            assert label in output_labels(rule["expr"], catalogue), (rule["alert"], label)


def test_every_alert_rule_has_a_unit_test():
    tested = {case["alertname"] for test in yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    assert tested == {rule["alert"] for rule in rules()}


def test_the_structure_check_catches_wrong_names():
    # the check above must be able to fail
    catalogue = metric_catalogue()
    assert promql_problems("rate(skewwatch_event_total[5m])", catalogue) == ["unknown metric skewwatch_event_total"]
    assert promql_problems("sum by (feature) (rate(skewwatch_events_total[5m]))", catalogue) == [
        "grouping by unknown label feature"]
    assert promql_problems("rate(skewwatch_missing_ratio[5m])", catalogue) == [
        "rate() of the gauge skewwatch_missing_ratio"]
    assert promql_problems('skewwatch_alerts_total{reason="x"}', catalogue) == [
        "skewwatch_alerts_total has no label reason"]


@needs_promtool
def test_promtool_accepts_config_and_rules():
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_fire_on_their_cases_only():
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=DEPLOY, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------- Grafana


def test_grafana_datasource_points_at_prometheus_and_dashboard_uses_it():
    stack = compose()
    grafana = stack["services"]["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus"
    host, port = datasource["url"].removeprefix("http://").split(":")
    assert host in stack["services"] and "prometheus" in stack["services"][host]["image"]
    assert f"{LOOPBACK}:9090:{port}" in stack["services"][host]["ports"]
    d = dashboard()
    panels = [p for p in d["panels"] if p["type"] != "row"]
    refs = [p["datasource"] for p in panels] + [t["datasource"] for p in panels for t in p["targets"]]
    refs += [v["datasource"] for v in d["templating"]["list"] if v["type"] == "query"]
    assert refs and all(r == {"type": "prometheus", "uid": datasource["uid"]} for r in refs)


def test_dashboard_is_provisioned_from_the_mounted_directory():
    grafana = compose()["services"]["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "skewwatch.yml").read_text())["providers"]
    assert (host_path(grafana, provider["options"]["path"]) / "skewwatch.json").is_file()
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert json.loads(host_path(grafana, home).read_text())["uid"] == dashboard()["uid"]


def test_dashboard_has_the_required_panels_over_real_metrics():
    d = dashboard()
    catalogue = metric_catalogue()
    variables = {v["name"] for v in d["templating"]["list"]}
    assert "model" in variables
    for expr in dashboard_queries():
        assert not promql_problems(expr, catalogue), expr
        for variable in re.findall(r"\$(\w+)", expr):
            assert variable in variables | GRAFANA_BUILTINS, (expr, variable)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in d["panels"])  # Grafana's grid
    queried = " ".join(dashboard_queries())
    for required in (
        "sum by (model) (rate(skewwatch_events_total",
        "sum by (reason) (rate(skewwatch_rejected_events_total",
        "sum by (kind) (increase(skewwatch_alerts_total",
        "sum by (model, feature, kind) (increase(skewwatch_alerts_total",
        "topk(10, skewwatch_drift_score{model=~\"$model\"",
        "skewwatch_feature_alerting{model=~\"$model\"",
        "skewwatch_drift_statistic{model=~\"$model\"",
        "skewwatch_missing_ratio",
        "skewwatch_confidence_mean",
        "histogram_quantile(0.99, sum by (le) (rate(skewwatch_batch_seconds_bucket",
        "skewwatch_consumer_lag_messages",
    ):
        assert required in queried, required


def test_rankings_and_the_drift_rule_use_the_comparable_score_and_name_the_feature():
    # topk over skewwatch_drift_statistic ranked window sizes and p-values with distances
    for expr in dashboard_queries() + [rule["expr"] for rule in rules()]:
        for ranked in re.findall(r"\b(?:topk|bottomk)\(\s*\d+\s*,\s*(skewwatch_[a-z_]+)", expr):
            assert ranked == "skewwatch_drift_score", expr
    (drift,) = [rule for rule in rules() if rule["alert"] == "SkewwatchDriftAlerts"]
    assert "feature" in output_labels(drift["expr"], metric_catalogue())
    assert "$labels.feature" in drift["annotations"]["summary"]


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    # Grafana's variables replaced by what they expand to; each query becomes a recording rule.
    concrete = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$model": ".*", "$statistic": ".*"}
    records = []
    for i, expr in enumerate(q for q in dashboard_queries() if not q.startswith("label_values(")):
        for variable, value in concrete.items():
            expr = expr.replace(variable, value)
        records.append({"record": f"dashboard:query_{i}", "expr": expr})
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
