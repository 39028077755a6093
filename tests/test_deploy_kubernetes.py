"""deploy/kubernetes/: the manifests are valid Kubernetes objects and agree with the rest.

Each object is checked against the Kubernetes API schemas that ``kubernetes-validate``
ships (strict: an unknown field is an error; no cluster and no network), for the
oldest and the newest Kubernetes versions it knows; a broken copy is rejected. The
ConfigMaps are what ``render.py`` writes; the volume they become holds policies/ as it
is in the repository, and ``dnspol check`` accepts the configuration the pods run.
The pieces agree: ports, probes, the drain time, the names dnsdist finds dnspol by.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import dnspol
from dnspol.server import DRAIN_SECONDS

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
MANIFESTS = ("dnspol.yaml", "dnsdist.yaml", "dnspol-config.yaml", "dnsdist-config.yaml")
VERSIONS = (kubernetes_validate.utils.all_versions()[0], kubernetes_validate.latest_version())


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]


def find(kind: str, name: str) -> dict[str, Any]:
    for manifest in MANIFESTS:
        for doc in documents(manifest):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes/")


def container(deployment: str) -> dict[str, Any]:
    (only,) = find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def pod_spec(deployment: str) -> dict[str, Any]:
    return find("Deployment", deployment)["spec"]["template"]["spec"]


def render_module():
    spec = importlib.util.spec_from_file_location("k8s_render", K8S / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --- the schemas --------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS)
def test_every_object_is_valid_for_kubernetes(manifest: str, version: str) -> None:
    docs = documents(manifest)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def _wrong_type(d: dict) -> None:
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "5353/udp"


def _unknown_field(d: dict) -> None:
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["readinessProbes"] = c.pop("readinessProbe")


def _missing_field(d: dict) -> None:
    del d["spec"]["selector"]


def _bad_enum(d: dict) -> None:
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = 17


@pytest.mark.parametrize("breaking", [_wrong_type, _unknown_field, _missing_field, _bad_enum])
def test_a_broken_deployment_is_rejected(breaking) -> None:
    deployment = find("Deployment", "dnspol")
    broken = copy.deepcopy(deployment)
    breaking(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_kustomization_lists_every_manifest_and_tags_this_version() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk) == sorted(MANIFESTS)
    (image,) = kustomization["images"]
    assert image["name"] == container("dnspol")["image"]
    assert image["newTag"] == dnspol.__version__


def test_kustomize_builds_valid_objects_with_the_image_tagged() -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed (scripts/test.sh installs kubernetes-client)"
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    wanted = sorted((d["kind"], d["metadata"]["name"]) for m in MANIFESTS for d in documents(m))
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == wanted
    for doc in built:
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)
    (deployment,) = [
        d for d in built if d["kind"] == "Deployment" and d["metadata"]["name"] == "dnspol"
    ]
    (box,) = deployment["spec"]["template"]["spec"]["containers"]
    assert box["image"] == f"dnspol:{dnspol.__version__}"


# --- the ConfigMaps -----------------------------------------------------------------------


def test_the_config_maps_are_what_render_writes() -> None:
    for name, text in render_module().rendered().items():
        assert (K8S / name).read_text() == text, f"run: python deploy/kubernetes/render.py ({name})"


def materialize(tmp_path: Path) -> Path:
    """The dnspol-config volume as the pod sees it at /etc/dnspol: each key at its path."""
    config = find("ConfigMap", "dnspol-config")
    data = {key: text.encode() for key, text in config["data"].items()}
    data.update({k: base64.b64decode(v) for k, v in config.get("binaryData", {}).items()})
    for volume in pod_spec("dnspol")["volumes"]:
        if volume["name"] == "config":
            items = volume["configMap"]["items"]
    for item in items:
        path = tmp_path / "etc-dnspol" / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[item["key"]])
    return tmp_path / "etc-dnspol"


def test_the_volume_lists_every_key_once_at_its_path() -> None:
    config = find("ConfigMap", "dnspol-config")
    keys = set(config["data"]) | set(config.get("binaryData", {}))
    (volume,) = [v for v in pod_spec("dnspol")["volumes"] if v["name"] == "config"]
    items = volume["configMap"]["items"]
    listed = [i["key"] for i in items]
    assert len(listed) == len(set(listed))
    missing = [f"{{key: {k}, path: {k.replace('__', '/')}}}" for k in sorted(keys - set(listed))]
    assert not missing, f"add to dnspol.yaml's config volume items: {missing}"
    assert set(listed) == keys
    assert all(i["path"] == i["key"].replace("__", "/") for i in items)


def test_the_volume_holds_policies_as_they_are_in_the_repository(tmp_path) -> None:
    volume = materialize(tmp_path)
    policies = ROOT / "policies"
    wanted = {p.relative_to(policies) for p in policies.rglob("*") if render_module().carried(p)}
    held = {p.relative_to(volume / "policies") for p in (volume / "policies").rglob("*")}
    assert {p for p in held if (volume / "policies" / p).is_file()} == wanted
    for rel in wanted:
        assert (volume / "policies" / rel).read_bytes() == (policies / rel).read_bytes(), rel


def test_the_replica_config_is_the_compose_one_but_for_the_trusted_proxies() -> None:
    k8s = yaml.safe_load((K8S / "config" / "replica.yaml").read_text())
    compose = yaml.safe_load((ROOT / "deploy" / "dnspol-replica.yaml").read_text())
    assert k8s["server"].pop("trusted_proxies") != compose["server"].pop("trusted_proxies")
    assert k8s == compose


def test_dnspol_check_accepts_what_the_pods_run(tmp_path) -> None:
    volume = materialize(tmp_path)
    config = option(container("dnspol")["args"], "--config")
    assert config.startswith("/etc/dnspol/")
    runs = [volume / config.removeprefix("/etc/dnspol/"), volume / "policies" / "dnspol.yaml"]
    for path in runs:
        done = subprocess.run(
            [sys.executable, "-m", "dnspol", "check", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ok" in done.stdout


def test_dnsdist_accepts_its_config_map_with_the_pod_environment(tmp_path) -> None:
    exe = shutil.which("dnsdist")
    assert exe, "dnsdist is not installed (apt-get install dnsdist; scripts/test.sh does)"
    conf = tmp_path / "dnsdist.conf"
    conf.write_text(find("ConfigMap", "dnsdist-config")["data"]["dnsdist.conf"])
    env = {e["name"]: e["value"] for e in container("dnsdist")["env"]}
    service_env = {"DNSPOL_SERVICE_HOST": "10.96.0.53", "DNSPOL_SERVICE_PORT_DNS_UDP": "53"}
    env = {k: re.sub(r"\$\((\w+)\)", lambda m: service_env[m[1]], v) for k, v in env.items()}
    done = subprocess.run(
        [exe, "--check-config", "-C", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


# --- the pieces agree ---------------------------------------------------------------------


def named_ports(deployment: str) -> dict[str, tuple[int, str]]:
    return {p["name"]: (p["containerPort"], p["protocol"]) for p in container(deployment)["ports"]}


def test_dnspol_listens_where_its_ports_and_probes_say() -> None:
    dnspol_container = container("dnspol")
    args = dnspol_container["args"]
    ports = named_ports("dnspol")
    dns = port_of(option(args, "--listen"))
    assert dns == 5353  # as in the Dockerfile: no capability needed
    assert ports["dns-udp"] == (dns, "UDP") and ports["dns-tcp"] == (dns, "TCP")
    assert ports["metrics"] == (port_of(option(args, "--metrics-listen")), "TCP")
    assert int(option(args, "--workers")) >= 1  # the default would count the node's cores
    probes = {k: dnspol_container[k]["httpGet"] for k in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"] == {"path": "/ready", "port": "metrics"}
    assert probes["livenessProbe"] == {"path": "/health", "port": "metrics"}


@pytest.mark.parametrize("deployment", ["dnspol", "dnsdist"])
def test_the_pods_run_unprivileged_on_a_read_only_root(deployment: str) -> None:
    pod, box = pod_spec(deployment), container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = box["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}  # nothing added: DNS on 5353
    assert all(p["containerPort"] > 1024 for p in box["ports"])
    assert box["resources"]["requests"] and box["resources"]["limits"]["memory"]


def test_the_dnspol_user_is_the_images() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+)", dockerfile)[1])
    assert pod_spec("dnspol")["securityContext"]["runAsUser"] == uid


@pytest.mark.parametrize("deployment", ["dnspol", "dnsdist"])
def test_the_grace_period_covers_the_pre_stop_pause_and_the_drain(deployment: str) -> None:
    pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + DRAIN_SECONDS + 2  # room to exit before SIGKILL


@pytest.mark.parametrize("service", ["dnspol", "dnsdist"])
def test_each_service_publishes_53_to_5353_over_udp_and_tcp(service: str) -> None:
    spec = find("Service", service)["spec"]
    assert spec["selector"] == {"app.kubernetes.io/name": service}
    ports = named_ports(service)
    dns = {(p["port"], ports[p["targetPort"]]) for p in spec["ports"] if p["port"] == 53}
    assert dns == {(53, (5353, "UDP")), (53, (5353, "TCP"))}


def test_dnsdist_keeps_the_client_address_and_finds_dnspol() -> None:
    assert find("Service", "dnsdist")["spec"]["externalTrafficPolicy"] == "Local"
    env = {e["name"]: e["value"] for e in container("dnsdist")["env"]}
    assert port_of(env["DNSDIST_LISTEN"]) == named_ports("dnsdist")["dns-udp"][0]
    # Kubernetes' variables for the Service named "dnspol" and its port named "dns-udp"
    assert env["DNSPOL_BACKENDS"] == "$(DNSPOL_SERVICE_HOST):$(DNSPOL_SERVICE_PORT_DNS_UDP)"
    assert pod_spec("dnsdist")["enableServiceLinks"] is True
    assert "dns-udp" in {p["name"] for p in find("Service", "dnspol")["spec"]["ports"]}
    assert int(env["DNSPOL_BACKEND_SOCKETS"]) > 1


def test_only_dnsdist_reaches_the_replicas_that_trust_the_pod_network() -> None:
    policy = find("NetworkPolicy", "dnspol")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "dnspol"}
    dns_rules = [r for r in policy["ingress"] if {"port": 5353, "protocol": "UDP"} in r["ports"]]
    (rule,) = dns_rules
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "dnsdist"}}}]
    labels = find("Deployment", "dnsdist")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "dnsdist"
    replica = yaml.safe_load((K8S / "config" / "replica.yaml").read_text())
    assert replica["server"]["trusted_proxies"]
