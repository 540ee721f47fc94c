"""deploy/ and docker-compose.yml, checked without a Docker engine or a cluster:
they parse, every command they run is a real ``agent-cluster`` command line,
settings reach the processes as ``AGENT_CLUSTER_*`` variables the settings
know (and accept), secrets never travel in argv, probe ports and paths match
what the processes serve, a worker gets longer to stop than its drain takes,
and the cluster configs they push pass the schema."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.config_schema import parse_config
from cluster.settings import URL_FILE_ENV, ClusterSettings
from cluster.settings_sources import SETTINGS_FILE_ENV, env_name, setting_names
from coordinator.cli import build_parser
from coordinator.http.auth import ADMIN_TOKEN_ENV, API_KEYS_ENV, API_KEYS_FILE_ENV

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

# AGENT_CLUSTER_* variables that are not ClusterSettings fields, and who reads them.
OTHER_VARIABLES = {
    URL_FILE_ENV,  # cluster.settings
    SETTINGS_FILE_ENV,  # cluster.settings_sources
    API_KEYS_ENV,
    API_KEYS_FILE_ENV,
    ADMIN_TOKEN_ENV,  # coordinator.http.auth
    "AGENT_CLUSTER_HOME",  # agent.tools.environment
}
SANDBOX_VARIABLE = re.compile(r"^AGENT_CLUSTER_SANDBOX(_[A-Z_]+)?$")  # agent.tools.sandbox_config


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in _k8s_documents():
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in _pod_specs():
        for container in spec["containers"]:
            yield name, container


def _env(container: dict[str, Any]) -> dict[str, str]:
    """A container's plain env values ('<secret>' for one from a Secret)."""
    return {
        item["name"]: str(item["value"]) if "value" in item else "<secret>"
        for item in container.get("env", [])
    }


def _agent_cluster_argvs(command: list[str]) -> Iterator[list[str]]:
    """The agent-cluster command lines in a command (itself, or inside ``sh -c``)."""
    if command[:1] == ["agent-cluster"]:
        yield command[1:]
    elif command[:2] == ["sh", "-c"]:
        for part in re.split(r"&&|;|\|\|", command[2]):
            words = shlex.split(part.replace('"$HOSTNAME"', "pod-0"))
            if words[:1] == ["agent-cluster"]:
                yield words[1:]


def _all_commands() -> Iterator[tuple[str, list[str]]]:
    for name, service in _compose()["services"].items():
        if "command" in service:
            yield f"compose {name}", service["command"]
    for name, container in _containers():
        yield f"k8s {name}", container.get("command", []) + container.get("args", [])
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
        if pre_stop:
            yield f"k8s {name} preStop", pre_stop["command"]


def _check_argv(where: str, argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `agent-cluster {' '.join(argv)}` is not a valid command line")


def test_every_command_is_a_valid_agent_cluster_command_line() -> None:
    seen = set()
    for where, command in _all_commands():
        argvs = list(_agent_cluster_argvs(command))
        if command[:1] == ["redis-server"] or where.startswith("k8s redis"):
            continue
        assert argvs, f"{where} runs {command}, not agent-cluster"
        for argv in argvs:
            args = _check_argv(where, argv)
            seen.add(args.command)
    assert {"serve", "worker", "simulate-llm", "config", "drain"} <= seen


def test_no_secret_travels_in_argv() -> None:
    for where, command in _all_commands():
        text = " ".join(command)
        assert "--redis-url " not in text + " " and "--redis-url=" not in text, where
        assert not re.search(r"rediss?://", text), f"{where}: a Redis URL in argv: {text}"
        assert not re.search(r"sk-[A-Za-z0-9]", text), f"{where}: an API key in argv"
    for _name, container in _containers():
        for item in container.get("env", []):
            if item["name"] in ("AGENT_CLUSTER_REDIS_URL", API_KEYS_ENV, ADMIN_TOKEN_ENV):
                assert "secretKeyRef" in item.get("valueFrom", {}), (
                    f"{item['name']} not from a Secret"
                )


def _check_variables(where: str, env: dict[str, str]) -> ClusterSettings:
    known = {env_name(name) for name in setting_names()}
    for name in env:
        if name.startswith("AGENT_CLUSTER_"):
            assert name in known or name in OTHER_VARIABLES or SANDBOX_VARIABLE.match(name), (
                f"{where}: {name} is not a setting (docs/settings.md) nor a known variable"
            )
    settings_env = {k: v for k, v in env.items() if k in known and v != "<secret>"}
    return ClusterSettings.from_env(settings_env)  # raises on a bad value


def test_environment_variables_are_settings_with_valid_values() -> None:
    for name, service in _compose()["services"].items():
        _check_variables(
            f"compose {name}", {k: str(v) for k, v in service.get("environment", {}).items()}
        )
    for name, container in _containers():
        _check_variables(f"k8s {name}", _env(container))


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_compose_runs_redis_simulator_gateway_and_three_workers() -> None:
    services = _compose()["services"]
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis_cmd and "--appendonly yes" in redis_cmd
    workers = {n: s for n, s in services.items() if s.get("command", [])[1:2] == ["worker"]}
    assert len(workers) == 3
    assert len({s["command"][s["command"].index("--id") + 1] for s in workers.values()}) == 3
    for name, worker in workers.items():
        settings = _check_variables(name, {k: str(v) for k, v in worker["environment"].items()})
        assert settings.metrics_port > 0 and settings.metrics_host == "0.0.0.0"
        assert f"127.0.0.1:{settings.metrics_port}/readyz" in " ".join(
            worker["healthcheck"]["test"]
        )
        assert (
            _seconds(worker["stop_grace_period"]) > settings.drain_timeout + settings.heartbeat_ttl
        )
        assert worker["depends_on"]["config-push"]["condition"] == "service_completed_successfully"
        assert worker["depends_on"]["simulator"]["condition"] == "service_healthy"
        assert not any(p for p in worker.get("ports", [])), "workers publish no port"
    gateway = services["coordinator"]["command"]
    port = gateway[gateway.index("--port") + 1]
    assert services["coordinator"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(services["coordinator"]["healthcheck"]["test"])
    assert "--anonymous" not in gateway and services["coordinator"]["environment"][API_KEYS_ENV]
    simulator = services["simulator"]["command"]
    sim_port = simulator[simulator.index("--port") + 1]
    assert f"127.0.0.1:{sim_port}/health'" in " ".join(services["simulator"]["healthcheck"]["test"])
    assert "ports" not in services["redis"], "a Redis of the host keeps its port"
    config = parse_config(
        (DEPLOY / "cluster.compose.yaml").read_text(), source="cluster.compose.yaml"
    )
    for name, worker in workers.items():  # the endpoint the config names is the simulator service
        settings = _check_variables(name, {k: str(v) for k, v in worker["environment"].items()})
        endpoint = settings.endpoint_table().get(config["model"]["endpoint"])
        assert (
            endpoint.base_url == f"http://simulator:{simulator[simulator.index('--port') + 1]}/v1"
        )
    push = services["config-push"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in push["volumes"]}
    assert (ROOT / mounted[push["command"][-1]]).is_file()


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s_documents() if d["kind"] == kind}


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def test_kubernetes_worker_drains_before_it_stops_and_is_probed_where_it_serves() -> None:
    (worker,) = _by_kind("Deployment")["agent-cluster-worker"]["spec"]["template"]["spec"][
        "containers"
    ]
    spec = _by_kind("Deployment")["agent-cluster-worker"]["spec"]["template"]["spec"]
    settings = _check_variables("worker", _env(worker))
    pre_stop = list(_agent_cluster_argvs(worker["lifecycle"]["preStop"]["exec"]["command"]))
    assert len(pre_stop) == 1
    drain = _check_argv("preStop", pre_stop[0])
    assert drain.command == "drain" and drain.wait
    assert worker["command"][worker["command"].index("--id") + 1] == "$(POD_NAME)"
    assert (
        spec["terminationGracePeriodSeconds"] > settings.drain_timeout + 3 * settings.heartbeat_ttl
    )
    assert settings.metrics_port > 0 and settings.metrics_host == "0.0.0.0"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = worker[probe]["httpGet"]
        assert get["path"] == path
        assert _port_number(worker, get["port"]) == settings.metrics_port
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's USER


def test_kubernetes_coordinator_serves_its_probes_and_service() -> None:
    from coordinator.http import build_app

    deployment = _by_kind("Deployment")["agent-cluster-coordinator"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    port = int(command[command.index("--port") + 1])
    paths = {getattr(r, "path", "") for r in build_app(ClusterSettings()).routes}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in paths
        assert _port_number(container, get["port"]) == port
    assert {"/metrics", "/status", "/status.json"} <= paths
    service = _by_kind("Service")["agent-cluster"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert _port_number(container, service["spec"]["ports"][0]["targetPort"]) == port
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_kubernetes_config_map_is_pushed_by_a_job_and_passes_the_schema() -> None:
    config_map = _by_kind("ConfigMap")["agent-cluster-config"]
    parse_config(config_map["data"]["cluster.yaml"], source="cluster-config.yaml")
    job = _by_kind("Job")["agent-cluster-config-push"]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    args = _check_argv("config push job", container["command"][1:])
    assert args.command == "config" and args.func.__name__ == "cmd_push"
    (mount,) = container["volumeMounts"]
    (volume,) = [v for v in job["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "agent-cluster-config"
    assert args.file == f"{mount['mountPath']}/cluster.yaml"


def _memory_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi|mb|gb)", text)
    assert match, text
    return int(match[1]) * 1024 ** (2 if match[2].lower().startswith("m") else 3)


def test_kubernetes_redis_does_not_evict_keeps_an_append_only_file_and_needs_a_password() -> None:
    statefulset = _by_kind("StatefulSet")["redis"]["spec"]["template"]["spec"]
    (redis,) = statefulset["containers"]
    args = " ".join(redis["args"])
    assert "--maxmemory-policy noeviction" in args and "--appendonly yes" in args
    # Full before the kernel's OOM killer: Redis refuses writes, nothing is lost.
    maxmemory = _memory_bytes(redis["args"][redis["args"].index("--maxmemory") + 1])
    assert maxmemory < _memory_bytes(redis["resources"]["limits"]["memory"])
    assert redis["resources"]["requests"]["cpu"]
    # The password comes from the Secret as a config file, never argv.
    conf = redis["args"][0]
    mounts = {m["name"]: m["mountPath"] for m in redis["volumeMounts"]}
    (auth,) = [v for v in statefulset["volumes"] if conf.startswith(mounts[v["name"]] + "/")]
    assert auth["secret"]["secretName"] == "agent-cluster-redis"
    secret = {
        d["metadata"]["name"]: d["stringData"]
        for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
        if d
    }
    (item,) = auth["secret"]["items"]
    password = re.fullmatch(r"requirepass (\S+)\n?", secret["agent-cluster-redis"][item["key"]])
    assert password
    assert secret["agent-cluster-redis"]["url"] == f"redis://:{password[1]}@redis:6379/0"
    assert "requirepass" not in args


def test_the_example_secrets_ship_placeholders_not_a_usable_digest() -> None:
    from cluster.errors import ConfigError
    from coordinator.http import Credentials

    secret = {
        d["metadata"]["name"]: d["stringData"]
        for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
        if d
    }
    digest = secret["agent-cluster-gateway"]["api-key-sha256"]
    assert digest.startswith("REPLACE")
    # Applied unfilled, the gateway refuses to start with one line naming the variable.
    with pytest.raises(ConfigError, match=API_KEYS_ENV):
        Credentials.from_env({API_KEYS_ENV: digest})
    text = (K8S / "secrets.example.yaml").read_text()
    assert "sha256sum" in text and "openssl rand" in text


def test_kubernetes_disruption_budgets_keep_a_gateway_and_drain_one_worker_at_a_time() -> None:
    budgets = _by_kind("PodDisruptionBudget")
    deployments = _by_kind("Deployment")
    gateway = budgets["agent-cluster-coordinator"]["spec"]
    assert gateway["selector"] == deployments["agent-cluster-coordinator"]["spec"]["selector"]
    assert gateway["minAvailable"] == 1
    workers = budgets["agent-cluster-worker"]["spec"]
    assert workers["selector"] == deployments["agent-cluster-worker"]["spec"]["selector"]
    assert workers["maxUnavailable"] == 1


def test_with_no_worker_the_gateway_stays_ready_and_answers_503_json() -> None:
    """The readiness probe's path passes with no worker, so the Service keeps the gateway,
    and a client gets a JSON 503 instead of a refused connection."""
    from starlette.testclient import TestClient

    from coordinator.http import Credentials, HttpOptions, build_app

    (container,) = _by_kind("Deployment")["agent-cluster-coordinator"]["spec"]["template"]["spec"][
        "containers"
    ]
    ready_path = container["readinessProbe"]["httpGet"]["path"]
    settings = ClusterSettings(redis_url="fakeredis://deploy-no-worker", namespace="noworker")
    app = build_app(settings, options=HttpOptions(credentials=Credentials(anonymous=True)))
    with TestClient(app) as client:
        assert client.get(ready_path).status_code == 200
        reply = client.post("/v1/sessions/chat-1/messages", json={"text": "hello"})
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "no_live_workers"


def _patch_files() -> set[Path]:
    """The strategic-merge patches the overlays' kustomizations name (fragments, no schema)."""
    patches = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        for patch in yaml.safe_load(kustomization.read_text()).get("patches", []):
            patches.add((kustomization.parent / patch["path"]).resolve())
    return patches


def _schema_checked_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    patches = _patch_files()
    for path in sorted(K8S.rglob("*.yaml")):
        if path.resolve() in patches:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            # A kustomization is kustomize's file: no schema.
            if not doc or doc.get("kind") == "Kustomization":
                continue
            yield f"{path.relative_to(DEPLOY)}: {doc['kind']} {doc['metadata']['name']}", doc


def test_every_kubernetes_manifest_passes_the_kubernetes_schema() -> None:
    """kubernetes-validate: the Kubernetes OpenAPI schema as JSON schema; unknown fields fail."""
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    checked = 0
    for where, doc in _schema_checked_documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{where}: {exc.message} at {'.'.join(map(str, exc.path))} (Kubernetes {version})"
            )
        checked += 1
    assert checked >= 10


def test_the_schema_check_finds_a_misplaced_field() -> None:
    import kubernetes_validate

    _, deployment = next(d for d in _schema_checked_documents() if d[1]["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {
        "httpGet": {"path": "/"}
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_existing_files_and_the_dockerfile_matches() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for package in ("agent", "cluster", "worker", "coordinator"):
        assert f"COPY {package} {package}" in dockerfile
    assert "USER 10001" in dockerfile and "--uid 10001" in dockerfile
    assert re.search(r"EXPOSE .*8080", dockerfile) and re.search(r"EXPOSE .*9100", dockerfile)


def test_the_systemd_unit_runs_a_worker_with_secrets_from_a_file_and_time_to_drain() -> None:
    unit = (DEPLOY / "agent-cluster-worker.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit, flags=re.M)
    binary, *argv = shlex.split(exec_start)
    assert binary.endswith("/agent-cluster")
    assert _check_argv("systemd", argv).command == "worker"
    assert "redis://" not in exec_start and "EnvironmentFile=" in unit
    (stop,) = re.findall(r"^TimeoutStopSec=(\d+)$", unit, flags=re.M)
    env = dict(re.findall(r"^Environment=([A-Z_]+)=(.*)$", unit, flags=re.M))
    settings = _check_variables("systemd", env)
    assert int(stop) > settings.drain_timeout + settings.heartbeat_ttl
    assert "KillSignal=SIGTERM" in unit


def test_workspaces_snapshot_by_default_and_the_shared_variants_mount_one_volume() -> None:
    (worker,) = _by_kind("Deployment")["agent-cluster-worker"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert _check_variables("worker", _env(worker)).workspace_mode == "snapshot"
    overlay = K8S / "shared-workspaces"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert kustomization["resources"][0] == ".."
    for resource in kustomization["resources"][1:]:
        assert (overlay / resource).is_file(), resource
    (patch_ref,) = kustomization["patches"]
    patch = yaml.safe_load((overlay / patch_ref["path"]).read_text())
    (pvc,) = [d for d in yaml.safe_load_all((overlay / "workspaces-pvc.yaml").read_text()) if d]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    spec = patch["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert _check_variables("shared worker", _env(container)).workspace_mode == "shared"
    (home,) = spec["volumes"]
    assert home["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert mounts[home["name"]] == "/var/lib/agent-cluster"  # the image's AGENT_CLUSTER_HOME
    override = yaml.safe_load((DEPLOY / "compose.shared-workspaces.yaml").read_text())
    workers = {
        n: s for n, s in _compose()["services"].items() if s.get("command", [])[1:2] == ["worker"]
    }
    assert set(override["services"]) == set(workers)
    for name, service in override["services"].items():
        assert _check_variables(name, dict(service["environment"])).workspace_mode == "shared"
        assert service["volumes"] == ["workspaces:/var/lib/agent-cluster"]
    assert "workspaces" in override["volumes"]
