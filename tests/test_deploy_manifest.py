"""deploy/kubernetes/modelmon-sidecar.yaml: valid Kubernetes (the API's own schemas, strict),
and its ports, probes, volumes and Service agree with the modelmon config in its ConfigMap, as
read by modelmon's own config loader. tests/test_deploy_running.py runs the two containers'
commands from it and probes them."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from capture_proxy.health import HEALTH_PATH, METRICS_PATH
from modelmon.config import ModelmonConfig, parse_config, parse_listen

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "kubernetes" / "modelmon-sidecar.yaml"
ANALYZER_HEALTH = "/monitor/health"
ANALYZER_METRICS = "/monitor/metrics"
KUBERNETES_VERSION = "1.29"  # the oldest release still common in clusters


@cache
def _parsed() -> tuple[dict[str, Any], ...]:
    return tuple(doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc)


def documents() -> dict[str, dict[str, Any]]:
    """ConfigMap, Deployment and Service by kind (a fresh copy each call)."""
    docs = copy.deepcopy(_parsed())
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs) == 3, [doc["kind"] for doc in docs]
    return by_kind


def containers() -> dict[str, dict[str, Any]]:
    pod = documents()["Deployment"]["spec"]["template"]["spec"]
    return {container["name"]: container for container in pod["containers"]}


def config_text() -> str:
    text: str = documents()["ConfigMap"]["data"]["modelmon.yaml"]
    return text


def sidecar_config() -> ModelmonConfig:
    return parse_config(yaml.safe_load(config_text()), source=MANIFEST, base=Path("/"))


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    assert isinstance(number, int)
    return number


def config_path(container: dict[str, Any]) -> str:
    args = container["args"]
    assert args[1] == "--config", args
    path: str = args[2]
    return path


def _mount_of(container: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """The volume mount that holds ``path`` (the deepest one)."""
    path = PurePosixPath(path)
    holding = [
        mount
        for mount in container.get("volumeMounts", [])
        if path == PurePosixPath(mount["mountPath"])
        or PurePosixPath(mount["mountPath"]) in path.parents
    ]
    assert holding, f"{container['name']}: nothing mounted at {path}"
    return max(holding, key=lambda mount: len(mount["mountPath"]))


def _volume(name: str) -> dict[str, Any]:
    pod = documents()["Deployment"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == name]
    return dict(volume)


@pytest.mark.parametrize("kind", ["ConfigMap", "Deployment", "Service"])
def test_manifest_is_valid_kubernetes(kind: str) -> None:
    kubernetes_validate.validate(documents()[kind], KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    deployment = documents()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][1]["livenesProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_config_in_the_configmap_loads_and_each_container_reads_it() -> None:
    config = sidecar_config()
    assert config.proxy.upstream and config.analyzer.payload.input.columns
    mounted = containers()
    for name, command in (("modelmon-proxy", "proxy"), ("modelmon-analyzer", "analyzer")):
        container = mounted[name]
        assert container["args"][0] == command
        mount = _mount_of(container, config_path(container))
        assert mount["mountPath"] == config_path(container)
        assert mount["subPath"] == "modelmon.yaml"
        volume = _volume(mount["name"])
        assert volume["configMap"]["name"] == documents()["ConfigMap"]["metadata"]["name"]


def test_proxy_probes_reach_its_own_health_on_its_listen_port() -> None:
    config = sidecar_config()
    proxy = containers()["modelmon-proxy"]
    host, port = parse_listen(config.proxy.listen)
    assert host == "0.0.0.0"  # the kubelet probes the Pod's address, not the loopback
    assert [p["containerPort"] for p in proxy["ports"]] == [port]
    for kind in ("readinessProbe", "livenessProbe"):
        probe = proxy[kind]["httpGet"]
        assert probe["path"] == HEALTH_PATH
        assert container_port(proxy, probe["port"]) == port


def test_analyzer_is_probed_for_liveness_only_on_its_listen_port() -> None:
    config = sidecar_config()
    analyzer = containers()["modelmon-analyzer"]
    host, port = parse_listen(config.analyzer.listen)
    assert host == "0.0.0.0"
    assert [p["containerPort"] for p in analyzer["ports"]] == [port]
    probe = analyzer["livenessProbe"]["httpGet"]
    assert probe["path"] == ANALYZER_HEALTH
    assert container_port(analyzer, probe["port"]) == port
    # A Pod is Ready only when every container is: the monitor must not take the model out of
    # the Service.
    assert "readinessProbe" not in analyzer
    assert config.analyzer_url == f"http://127.0.0.1:{port}"
    annotations = documents()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == ANALYZER_METRICS
    assert METRICS_PATH in MANIFEST.read_text()  # the proxy's own scrape path is named


def test_proxy_forwards_to_the_model_container_in_the_pod() -> None:
    upstream = urlsplit(sidecar_config().proxy.upstream)
    assert upstream.hostname == "127.0.0.1"
    model = containers()["model"]
    assert upstream.port in [p["containerPort"] for p in model["ports"]]


def test_captures_are_on_one_volume_shared_by_proxy_and_analyzer() -> None:
    config = sidecar_config()
    mounted = containers()
    proxy_mount = _mount_of(mounted["modelmon-proxy"], config.capture.dir)
    analyzer_mount = _mount_of(mounted["modelmon-analyzer"], config.capture.dir)
    assert proxy_mount["name"] == analyzer_mount["name"]
    assert not proxy_mount.get("readOnly") and not analyzer_mount.get("readOnly")
    volume = _volume(proxy_mount["name"])
    assert "emptyDir" in volume or "persistentVolumeClaim" in volume
    for path in (config.analyzer.db, config.analyzer.reports_dir):
        assert _mount_of(mounted["modelmon-analyzer"], path)["name"] == proxy_mount["name"]
    for path in (config.analyzer.baseline.statistics, config.analyzer.baseline.constraints):
        mount = _mount_of(mounted["modelmon-analyzer"], path)
        assert "configMap" in _volume(mount["name"])
        assert mount["mountPath"] == str(PurePosixPath(path).parent)


def test_service_sends_traffic_to_the_proxy() -> None:
    docs = documents()
    service, deployment = docs["Service"], docs["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    mounted = containers()
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    _, proxy_port = parse_listen(sidecar_config().proxy.listen)
    assert container_port(mounted["modelmon-proxy"], by_name["http"]["targetPort"]) == proxy_port
    _, analyzer_port = parse_listen(sidecar_config().analyzer.listen)
    target = by_name["metrics"]["targetPort"]
    assert container_port(mounted["modelmon-analyzer"], target) == analyzer_port
