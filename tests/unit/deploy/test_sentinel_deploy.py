"""The Sentinel variants of the deployment (deploy/compose.sentinel.yaml with
deploy/sentinel.conf, and the deploy/k8s/sentinel overlay), checked without a
Docker engine or a cluster: they parse, every agent-cluster process gets a
``redis+sentinel://`` URL the settings accept that names every Sentinel and
the service they monitor, the quorum is a majority, replicas follow the
primary, the node and Sentinel start scripts are valid shell that asks the
Sentinels before choosing a role, and the single Redis of the base is gone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cluster.sentinel_url import parse_sentinel_url
from cluster.settings import ClusterSettings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
OVERLAY = DEPLOY / "k8s" / "sentinel"
MONITOR = re.compile(r"^\s*sentinel monitor (\S+) (\S+) (\d+) (\d+)$", re.M)


def _override() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.sentinel.yaml").read_text())
    return data


def _base_services() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(data["services"])


def test_compose_sentinel_variant_points_every_process_at_three_sentinels() -> None:
    services = _override()["services"]
    base = _base_services()
    sentinels = sorted(n for n in services if n.startswith("sentinel-"))
    assert len(sentinels) == 3
    (monitor,) = MONITOR.findall((DEPLOY / "sentinel.conf").read_text())
    service, primary, port, quorum = monitor
    assert primary in base and port == "6379", "the Sentinels monitor the compose file's redis"
    assert int(quorum) > len(sentinels) // 2, "a quorum is a majority of the Sentinels"
    agent_cluster = [n for n, s in base.items() if s.get("command", [""])[0] == "agent-cluster"]
    agent_cluster.remove("simulator")  # talks to no Redis
    for name in agent_cluster:
        env = services[name]["environment"]
        settings = ClusterSettings.from_env({k: str(v) for k, v in env.items()})
        target = parse_sentinel_url(settings.redis_url, shown="compose")
        assert sorted(h for h, _ in target.sentinels) == sentinels, name
        assert {p for _, p in target.sentinels} == {26379}
        assert target.service == service
        assert settings.redis_durability == "replica"
        assert set(services[name]["depends_on"]) == set(sentinels)
    for name in sentinels:
        entry = " ".join(services[name]["entrypoint"])
        assert "--sentinel" in entry and "cp /etc/redis/sentinel.conf /data/" in entry
        (mount,) = [v for v in services[name]["volumes"] if v.endswith(":ro")]
        assert (ROOT / mount.split(":")[0]).resolve() == DEPLOY / "sentinel.conf"


def test_compose_replicas_follow_the_primary_and_every_node_announces_its_name() -> None:
    services = _override()["services"]
    nodes = {n: s for n, s in services.items() if n == "redis" or n.startswith("redis-replica")}
    assert len(nodes) == 3
    for name, node in nodes.items():
        command = node["command"]
        assert command[0] == "redis-server"
        assert command[command.index("--replica-announce-ip") + 1] == name
        assert "--maxmemory-policy" in command and "noeviction" in command
        if name != "redis":
            assert command[command.index("--replicaof") + 1 :][:2] == ["redis", "6379"]


def _overlay_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert kustomization["resources"][0] == ".."
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"][1:]:
        docs.extend(d for d in yaml.safe_load_all((OVERLAY / resource).read_text()) if d)
    return docs


def _by(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _overlay_documents() if d["kind"] == kind}


def test_k8s_overlay_replaces_the_single_redis_with_nodes_and_sentinels() -> None:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    deleted = set()
    durable = set()
    for patch in kustomization["patches"]:
        doc = yaml.safe_load((OVERLAY / patch["path"]).read_text())
        if doc.get("$patch") == "delete":
            deleted.add((doc["kind"], doc["metadata"]["name"]))
        else:
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e["value"] for e in container["env"]}
            settings = ClusterSettings.from_env(env)
            assert settings.redis_durability == "replica"
            durable.add(doc["metadata"]["name"])
    assert deleted == {("StatefulSet", "redis"), ("Service", "redis")}
    assert durable == {"agent-cluster-worker", "agent-cluster-coordinator"}
    sets = _by("StatefulSet")
    assert sets["redis-node"]["spec"]["replicas"] == 3
    assert sets["redis-sentinel"]["spec"]["replicas"] == 3
    budgets = _by("PodDisruptionBudget")
    assert budgets["redis-node"]["spec"]["maxUnavailable"] == 1
    assert budgets["redis-sentinel"]["spec"]["maxUnavailable"] == 1


def test_k8s_secret_url_names_every_sentinel_pod_and_the_monitored_service() -> None:
    (secret,) = [d for d in yaml.safe_load_all((OVERLAY / "secrets.example.yaml").read_text()) if d]
    data = secret["stringData"]
    target = parse_sentinel_url(data["url"], shown="secrets.example.yaml")
    sentinels = _by("StatefulSet")["redis-sentinel"]
    service = sentinels["spec"]["serviceName"]
    count = sentinels["spec"]["replicas"]
    assert [h for h, _ in target.sentinels] == [
        f"redis-sentinel-{i}.{service}" for i in range(count)
    ]
    assert {p for _, p in target.sentinels} == {26379}
    script = _by("ConfigMap")["redis-sentinel-scripts"]["data"]["sentinel.sh"]
    (monitor,) = MONITOR.findall(script)
    assert monitor[0] == target.service and int(monitor[3]) > count // 2
    password = re.fullmatch(r"requirepass (\S+)\nmasterauth (\S+)\n?", data["redis.conf"])
    assert password and password[1] == password[2] == target.password
    assert "requirepass" not in " ".join(sum((c.get("command", []) for c in _containers()), []))


def _containers() -> list[dict[str, Any]]:
    return [
        c for d in _by("StatefulSet").values() for c in d["spec"]["template"]["spec"]["containers"]
    ]


def test_k8s_start_scripts_are_valid_shell_and_ask_the_sentinels_first() -> None:
    scripts = _by("ConfigMap")["redis-sentinel-scripts"]["data"]
    for name, text in scripts.items():
        checked = subprocess.run(["sh", "-n"], input=text, text=True, capture_output=True)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
        ask = text.index("sentinel get-master-addr-by-name agent-cluster")
        assert ask < text.index("exec redis-server"), f"{name} chooses its role after asking"
    assert "include /etc/redis-auth/redis.conf" in scripts["node.sh"], "the password stays put"
    for container in _containers():
        script = container["command"][-1].removeprefix("/scripts/")
        assert script in scripts
