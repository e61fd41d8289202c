"""deploy/kubernetes: valid against the Kubernetes schemas, and consistent.

kubernetes-validate ships the API schemas, so no cluster is needed. Beyond
the schemas: the config and rules in the ConfigMap pass ``blackhole -t``
with the files the Deployment mounts where it mounts them, and the ports,
names, labels, user and grace period agree across the files and with the
Containerfile.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.certs import self_signed

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
CONTAINERFILE = DEPLOY.parent.parent / "Containerfile"
# The oldest Kubernetes these manifests promise to work with, and the newest
# whose schemas the validator ships.
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
RESOURCES = {
    (doc["kind"], doc["metadata"]["name"]): doc for path in MANIFESTS for doc in _documents(path)
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_passes_strict_schema_validation(path: Path, version: str) -> None:
    for doc in _documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    [kustomization] = _documents(DEPLOY / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    assert {image["name"] for image in kustomization["images"]} == {"blackhole"}


def _pod() -> dict[str, Any]:
    spec: dict[str, Any] = RESOURCES["Deployment", "blackhole"]["spec"]["template"]
    return spec


def _container() -> dict[str, Any]:
    [container] = _pod()["spec"]["containers"]
    return container


def _config() -> str:
    text: str = RESOURCES["ConfigMap", "blackhole-config"]["data"]["blackhole.conf"]
    return text


def test_the_configmap_passes_blackhole_t_with_the_files_the_pod_mounts(tmp_path: Path) -> None:
    """Every path the config names is under a mount, filled as the pod's would be."""
    volumes = {volume["name"]: volume for volume in _pod()["spec"]["volumes"]}
    mounted: dict[str, Path] = {}
    for mount in _container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        local = tmp_path / mount["name"]
        local.mkdir()
        if "configMap" in volume:
            data = RESOURCES["ConfigMap", volume["configMap"]["name"]]["data"]
            for name, content in data.items():
                (local / name).write_text(content)
        elif volume.get("secret", {}).get("secretName") == "blackhole-tls":
            # What `kubectl create secret tls` stores: tls.crt and tls.key.
            self_signed(local, prefix="tls.")
            (local / "tls.cert.pem").rename(local / "tls.crt")
            (local / "tls.key.pem").rename(local / "tls.key")
        elif volume.get("secret", {}).get("secretName") == "blackhole-token":
            (local / "token").write_text("a-token-from-the-secret\n")
        mounted[mount["mountPath"]] = local

    def local_path(match: re.Match[str]) -> str:
        path = match.group(0)
        for mount_path, local in mounted.items():
            if path.startswith(mount_path + "/"):
                return str(local) + path[len(mount_path) :]
        raise AssertionError(f"{path} is under no mount of the pod")

    config = re.sub(r"(?<=[\s=])/\S+", local_path, _config())
    path = tmp_path / "blackhole.conf"
    path.write_text(config)
    done = subprocess.run(
        [sys.executable, "-m", "blackhole", "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _config_port(key: str) -> int:
    match = re.search(rf"^{key}\s*=\s*\S*:(\d+)\s*$", _config(), re.MULTILINE)
    assert match is not None, key
    return int(match.group(1))


def test_ports_agree_across_config_deployment_service_and_image() -> None:
    ports = {port["name"]: port["containerPort"] for port in _container()["ports"]}
    assert ports == {
        "smtp": _config_port("listen"),
        "smtps": _config_port("tls_listen"),
        "control": _config_port("control_listen"),
    }
    for probe in ("readinessProbe", "livenessProbe"):
        assert _container()[probe]["httpGet"] == {"path": "/healthz", "port": "control"}
    annotations = _pod()["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["control"])
    assert annotations["prometheus.io/path"] == "/metrics"
    service = RESOURCES["Service", "blackhole"]["spec"]
    assert {p["targetPort"] for p in service["ports"]} == {"smtp", "smtps"}
    exposed = re.search(r"^EXPOSE (.+)$", CONTAINERFILE.read_text(), re.MULTILINE)
    assert exposed is not None
    assert sorted(int(p) for p in exposed.group(1).split()) == sorted(ports.values())


def test_selectors_match_the_pods_they_mean() -> None:
    labels = _pod()["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = RESOURCES[kind, "blackhole"]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    redis = RESOURCES["Deployment", "blackhole-redis"]["spec"]["template"]["metadata"]["labels"]
    assert RESOURCES["Service", "blackhole-redis"]["spec"]["selector"].items() <= redis.items()


def test_pods_run_as_the_images_user_and_drain_before_they_are_killed() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", CONTAINERFILE.read_text(), re.MULTILINE)
    assert user is not None
    security = _pod()["spec"]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(user[1]), int(user[2]))
    assert security["runAsNonRoot"] is True
    grace = re.search(r"^grace_period\s*=\s*(\d+)", _config(), re.MULTILINE)
    assert grace is not None
    assert int(grace.group(1)) < _pod()["spec"]["terminationGracePeriodSeconds"]
