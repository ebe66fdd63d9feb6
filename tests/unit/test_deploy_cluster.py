"""Deployment files: Ray cluster launcher configs, KubeRay, Docker, compose, nginx, systemd.

The `ray up` configs go through the JSON schema Ray ships and Ray's own config preparation; the
systemd unit through `systemd-analyze verify`; the rest (Docker cannot run here) are parsed and
checked for the facts the system depends on: the broker_ip resource on the head, GCS fault
tolerance, the ports, and paths that exist.
"""

from __future__ import annotations

import configparser
import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from cluster.config import ROOT, ExecutionConfig, ServeConfig

DEPLOY = ROOT / "deploy"
PIN = ExecutionConfig().pin_resource
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
CLUSTER_FILES = ["ray/cluster.yaml", "ray/cluster-local.yaml"]


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def ray_start_options(command: str) -> dict[str, str]:
    """`--key=value` options of the `ray start` in a shell command line (values unquoted)."""
    options = {}
    for word in shlex.split(command[command.index("ray start") :]):
        if word.startswith("--"):
            key, _, value = word[2:].partition("=")
            options[key] = value
    return options


def ray_start(commands: list[str]) -> str:
    (command,) = [c for c in commands if "ray start" in c]
    return command


# -- ray up -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_configs_match_the_schema_ray_ships(name: str) -> None:
    jsonschema.validate(load(name), RAY_SCHEMA)


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_configs_survive_rays_own_preparation(name: str) -> None:
    prepared = prepare_config(load(name))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("provider"), "'provider' is a required property"),
        (lambda c: c.update(head_start_ray_commands="ray start"), "is not of type 'array'"),
        (lambda c: c.update(upscaling_speed="fast"), "is not of type 'number'"),
        (lambda c: c.update(workers=3), "Additional properties are not allowed"),
    ],
)
def test_the_schema_check_refuses_a_broken_config(change: Any, message: str) -> None:
    config = copy.deepcopy(load("ray/cluster.yaml"))
    change(config)
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(config, RAY_SCHEMA)


def test_the_aws_head_carries_the_broker_ip_resource_and_workers_do_not() -> None:
    config = load("ray/cluster.yaml")
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {PIN: 1}
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(PIN not in t["resources"] for t in workers)
    assert all(t["min_workers"] >= 1 for t in workers)  # shards and terminal replicas have room


def test_the_local_head_names_the_broker_ip_resource_itself() -> None:
    config = load("ray/cluster-local.yaml")
    head = ray_start_options(ray_start(config["head_start_ray_commands"]))
    assert json.loads(head["resources"]) == {PIN: 1}
    assert PIN not in ray_start(config["worker_start_ray_commands"])
    assert config["provider"]["head_ip"] not in config["provider"]["worker_ips"]


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_the_head_keeps_gcs_state_in_redis_and_starts_shardline(name: str) -> None:
    config = load(name)
    commands = config["head_start_ray_commands"]
    start = ray_start(commands)
    assert "RAY_REDIS_ADDRESS=$GCS_REDIS_ADDRESS" in start
    assert "RAY_external_storage_namespace=shardline" in start
    options = ray_start_options(start)
    assert options["redis-password"] == "$GCS_REDIS_PASSWORD"
    assert options["port"] == "6379"
    assert commands.index(start) < len(commands) - 1
    assert commands[-1].endswith("cd ~/shardline && shardline up")
    assert ". ~/shardline.env" in commands[-1]  # the broker credentials come from the env file


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_every_node_installs_the_project_and_exports_metrics_on_one_port(name: str) -> None:
    config = load(name)
    home = "/home/" + config["auth"]["ssh_user"]
    assert config["file_mounts"][f"{home}/shardline"] == "."
    assert config["file_mounts"][f"{home}/shardline.env"] == "~/.shardline/cluster.env"
    assert {".venv", ".git", ".env", "data"} <= set(config["rsync_exclude"])
    assert any("pip install" in c and "-e ~/shardline" in c for c in config["setup_commands"])
    head = ray_start_options(ray_start(config["head_start_ray_commands"]))
    worker = ray_start_options(ray_start(config["worker_start_ray_commands"]))
    assert worker["address"] == "$RAY_HEAD_IP:6379"
    assert head["metrics-export-port"] == worker["metrics-export-port"] == "8080"
    # Workers wait out a head restart (GCS fault tolerance) instead of exiting.
    assert "RAY_gcs_rpc_server_reconnect_timeout_s=300" in ray_start(config["worker_start_ray_commands"])


def test_the_aws_head_runs_prometheus_with_the_project_config() -> None:
    commands = " ".join(load("ray/cluster.yaml")["head_setup_commands"])
    assert "apt-get install -y -q prometheus" in commands
    assert "deploy/prometheus/prometheus.yml" in commands and "deploy/prometheus/alerts.yml" in commands


# -- KubeRay ------------------------------------------------------------------------------------


def kuberay() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "kuberay" / "rayservice.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_the_rayservice_deploys_the_terminal_app() -> None:
    service = kuberay()["RayService"]
    assert service["apiVersion"] == "ray.io/v1"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    (app,) = serve_config["applications"]
    assert app["name"] == "terminal" and app["route_prefix"] == "/"
    (deployment,) = app["deployments"]
    from serve.app import APP_NAME, MAX_ONGOING_REQUESTS

    assert app["name"] == APP_NAME
    assert deployment["max_ongoing_requests"] == MAX_ONGOING_REQUESTS
    scaling = deployment["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]


def test_the_rayservice_import_path_builds_the_terminal_from_its_args() -> None:
    import importlib

    from ray.serve import Application

    app = yaml.safe_load(kuberay()["RayService"]["spec"]["serveConfigV2"])["applications"][0]
    module_name, _, attribute = app["import_path"].partition(":")
    builder = getattr(importlib.import_module(module_name), attribute)
    # In the image the config is at /app/config/shardline.yaml: here, the same file in the checkout.
    assert app["args"]["config"] == "/app/config/shardline.yaml"
    built = builder({"config": str(ROOT / "config" / "shardline.yaml")})
    assert isinstance(built, Application)


def test_the_head_pod_carries_broker_ip_ports_and_gcs_fault_tolerance() -> None:
    cluster = kuberay()["RayService"]["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    # KubeRay passes the value to `ray start --resources=...` as written: a quoted JSON string.
    assert json.loads(json.loads(head["rayStartParams"]["resources"])) == {PIN: 1}
    (container,) = head["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000, "metrics": 8080}
    assert ports["serve"] == ServeConfig().port
    assert head["rayStartParams"]["metrics-export-port"] == str(ports["metrics"])
    assert head["template"]["spec"]["nodeSelector"] == {"shardline.io/broker-egress": "true"}
    ft = cluster["gcsFaultToleranceOptions"]
    assert ft["redisAddress"].endswith(":6379")
    assert ft["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == "shardline-redis"


def test_worker_pods_export_metrics_and_have_no_broker_ip() -> None:
    cluster = kuberay()["RayService"]["spec"]["rayClusterConfig"]
    for group in cluster["workerGroupSpecs"]:
        assert "resources" not in group["rayStartParams"]
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
        assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (container,) = group["template"]["spec"]["containers"]
        assert {"name": "metrics", "containerPort": 8080} in container["ports"]


def test_the_topology_job_reaches_the_rayservice_head_through_the_ray_client() -> None:
    docs = kuberay()
    name = docs["RayService"]["metadata"]["name"]
    (container,) = docs["Job"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RAY_ADDRESS"] == f"ray://{name}-head-svc:10001"
    assert env["SHARDLINE_ROLE"] == "topology"
    assert env["SHARDLINE_UP_ARGS"] == "--no-terminal"  # the RayService serves the terminal
    head = docs["RayService"]["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    claim = head["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]


# -- Docker, compose, nginx --------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_copies_paths_that_exist_and_runs_the_entrypoint_as_a_user() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim-bookworm")
    for source in [args.split()[0] for op, args in steps if op == "COPY"]:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    assert entry[-1] == "/app/deploy/entrypoint.sh"
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)
    assert dict(steps)["USER"] == "shardline"
    exposed = {int(p) for op, args in steps if op == "EXPOSE" for p in args.split()}
    assert {6379, 8000, 8080, 10001} <= exposed


def compose() -> dict[str, Any]:
    return load("compose.yaml")


def test_compose_runs_the_whole_stack() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "ray-head", "ray-worker", "prometheus", "grafana", "nginx"}
    build = services["ray-head"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    head, worker = services["ray-head"]["environment"], services["ray-worker"]["environment"]
    assert head["SHARDLINE_ROLE"] == "head" and worker["SHARDLINE_ROLE"] == "worker"
    assert head["RAY_REDIS_ADDRESS"] == "redis:6379"
    assert worker["RAY_HEAD_ADDRESS"] == "ray-head:6379"
    assert head["SHARDLINE_SERVE_HOST"] == "0.0.0.0"


def test_compose_prometheus_sees_rays_target_file_and_grafana_sees_prometheus() -> None:
    services = compose()["services"]
    assert "ray-tmp:/tmp/ray" in services["ray-head"]["volumes"]
    prometheus = services["prometheus"]
    assert prometheus["network_mode"] == "service:ray-head"
    assert "ray-tmp:/tmp/ray:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert services["grafana"]["environment"]["PROMETHEUS_URL"] == "http://ray-head:9090"


def test_compose_host_paths_exist() -> None:
    for name, service in compose()["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"


def nginx() -> str:
    return (DEPLOY / "nginx" / "shardline.conf").read_text()


def nginx_block(text: str, opener: str) -> str:
    start = text.index(opener)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i : j + 1]
    raise AssertionError(f"unbalanced block after {opener!r}")


def test_nginx_terminates_tls_and_redirects_plain_http() -> None:
    text = re.sub(r"#.*", "", nginx())
    assert text.count("{") == text.count("}")
    assert "listen 443 ssl;" in text and "return 301 https://$host$request_uri;" in text
    assert "ssl_certificate     /etc/nginx/certs/shardline.crt;" in text
    assert re.search(r"ssl_protocols\s+TLSv1\.2 TLSv1\.3;", text)
    certs = [m for m in compose()["services"]["nginx"]["volumes"] if m.endswith(":/etc/nginx/certs:ro")]
    assert certs and (DEPLOY / certs[0].split(":")[0] / ".gitignore").is_file()  # keys stay out of git


def test_nginx_upgrades_the_websocket_and_proxies_the_terminal() -> None:
    text = re.sub(r"#.*", "", nginx())
    ws = nginx_block(text, "location = /ws")
    for directive in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_buffering off;",
    ):
        assert directive in ws
    upstream = nginx_block(text, "upstream shardline_terminal")
    assert f"server ray-head:{ServeConfig().port};" in upstream
    assert "return 404;" in nginx_block(text, "location = /metrics")


def test_the_dev_certificate_script_writes_what_nginx_reads(tmp_path: Path) -> None:
    script = tmp_path / "nginx" / "make-dev-cert.sh"
    script.parent.mkdir()
    shutil.copy(DEPLOY / "nginx" / "make-dev-cert.sh", script)
    done = subprocess.run(["bash", str(script), "shardline.test"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    cert = tmp_path / "nginx" / "certs" / "shardline.crt"
    text = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = shardline.test" in text and "DNS:shardline.test" in text
    assert oct((tmp_path / "nginx" / "certs" / "shardline.key").stat().st_mode)[-3:] == "600"


# -- systemd and the entrypoint ----------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / "shardline.service")
    return parser


def test_the_unit_runs_the_entrypoint_from_the_install_dir_and_restarts_on_failure() -> None:
    service = unit()["Service"]
    assert service["ExecStart"] == service["WorkingDirectory"] + "/deploy/entrypoint.sh"
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/shardline/shardline.env"
    assert service["User"] == "shardline"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def verify_unit(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on the unit, pointed at this checkout (the paths must exist)."""
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing (the systemd package)"
    text = (
        text.replace("/opt/shardline", str(ROOT))
        .replace("/etc/shardline/shardline.env", "/dev/null")
        .replace("=shardline\n", "=root\n")
    )
    path = tmp_path / "shardline.service"
    path.write_text(text)
    return subprocess.run([exe, "verify", str(path)], capture_output=True, text=True, timeout=60)


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    done = verify_unit(tmp_path, (DEPLOY / "systemd" / "shardline.service").read_text())
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_systemd_verification_catches_a_bad_unit(tmp_path: Path) -> None:
    text = (DEPLOY / "systemd" / "shardline.service").read_text().replace("on-failure", "sometimes")
    done = verify_unit(tmp_path, text)
    assert "restart specifier" in done.stderr


def test_the_entrypoint_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(DEPLOY / "entrypoint.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SHARDLINE_ROLE": "primary"},
            "SHARDLINE_ROLE must be 'head', 'worker' or 'topology', not 'primary'",
        ),
        ({"SHARDLINE_ROLE": "worker"}, "set RAY_HEAD_ADDRESS to host:port of the Ray head"),
        ({"SHARDLINE_ROLE": "topology"}, "set RAY_ADDRESS to the cluster"),
    ],
)
def test_the_entrypoint_names_what_is_missing(env: dict[str, str], message: str) -> None:
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    done = subprocess.run(
        [str(DEPLOY / "entrypoint.sh")], env=clean, capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert done.returncode != 0
    assert message in done.stderr
