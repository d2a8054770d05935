"""Deployment manifests for the served machines of a generated tree (pure: data in, text out).

`sl2s deploy DIR --target kubernetes|compose` renders these; docs/deploy.md explains them. Only
machines that other machines hop to (that have segments) are served; a machine that only ever
starts flows (a CLI, a front end) runs wherever its caller runs and reads the same address map.

A machine may run as several replicas (`[machines.<name>] replicas = N`, checked by
sl2s.serve.machines: more than one only with the PostgreSQL flow store). With that store the
machines get its URL as `SL2S_STORE` from a Kubernetes Secret or the shell's environment, never
written here: it usually holds a password.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sl2s.runtime.transport.http.config import env_name
from sl2s.runtime.transport.http.protocol import HEALTH_PATH

SECRET_NAME = "sl2s-hop-key"
SECRET_KEY = "hop-key"
STORE_SECRET_NAME = "sl2s-store"  # the PostgreSQL store's URL, key STORE_SECRET_KEY
STORE_SECRET_KEY = "url"


@dataclass(frozen=True)
class DeploySpec:
    system: str  # the generated package's name, e.g. "services"
    served: tuple[str, ...]  # machines with an inbound endpoint, sorted
    image: str = (
        "sl2s-services:latest"  # holds the generated tree at /app/<system> and sl2s
    )
    port: int = 8000
    app_dir: str = "/app"
    replicas: Mapping[str, int] = field(
        default_factory=dict
    )  # machine -> count (default 1)
    shared_store: bool = False  # the PostgreSQL store: pass SL2S_STORE from a secret

    def replicas_of(self, machine: str) -> int:
        return self.replicas.get(machine, 1)


def dns_name(*parts: str) -> str:
    """A DNS-1035 label from identifiers: lower case, `_` -> `-`, at most 63 characters."""
    text = "-".join(parts).lower().replace("_", "-")
    text = re.sub(r"[^a-z0-9-]+", "-", text).strip("-")
    if not text or not text[0].isalpha():
        text = "m-" + text
    return text[:63].rstrip("-")


def service_name(spec: DeploySpec, machine: str) -> str:
    return dns_name(spec.system, machine)


def address_map(spec: DeploySpec) -> dict[str, str]:
    """`SL2S_URL_<MACHINE>` -> in-cluster URL, for every served machine."""
    return {
        env_name(m): f"http://{service_name(spec, m)}:{spec.port}" for m in spec.served
    }


def _command(spec: DeploySpec, machine: str) -> list[str]:
    return [
        "sl2s",
        "serve",
        f"{spec.app_dir}/{spec.system}",
        machine,
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.port),
    ]


def _secret_env(spec: DeploySpec) -> list[dict]:
    """The container's variables from Secrets: the hop key, and the store's URL if shared."""
    pairs = [("SL2S_HOP_KEY", SECRET_NAME, SECRET_KEY)]
    if spec.shared_store:
        pairs.append(("SL2S_STORE", STORE_SECRET_NAME, STORE_SECRET_KEY))
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for env, secret, key in pairs
    ]


def kubernetes_objects(spec: DeploySpec) -> list[dict]:
    """ConfigMap (address map), then a Deployment and a Service per served machine."""
    config_name = dns_name(spec.system, "addresses")
    objects: list[dict] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": config_name,
                "labels": {"app.kubernetes.io/part-of": dns_name(spec.system)},
            },
            "data": address_map(spec),
        }
    ]
    for machine in spec.served:
        name = service_name(spec, machine)
        labels = {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/part-of": dns_name(spec.system),
        }
        probe = {
            "httpGet": {"path": HEALTH_PATH, "port": "hop"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
        }
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": spec.replicas_of(machine),
                    "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                    # a rollout starts a new pod before it stops an old one, and stops none
                    # before its replacement is ready (docs/deploy.md, "Rolling updates")
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                    },
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "machine",
                                    "image": spec.image,
                                    "command": _command(spec, machine),
                                    "ports": [
                                        {
                                            "name": "hop",
                                            "containerPort": spec.port,
                                            "protocol": "TCP",
                                        }
                                    ],
                                    "envFrom": [
                                        {"configMapRef": {"name": config_name}}
                                    ],
                                    "env": _secret_env(spec),
                                    "readinessProbe": {
                                        **probe,
                                        "initialDelaySeconds": 1,
                                    },
                                    "livenessProbe": {
                                        **probe,
                                        "initialDelaySeconds": 10,
                                        "failureThreshold": 3,
                                    },
                                }
                            ]
                        },
                    },
                },
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "selector": {"app.kubernetes.io/name": name},
                    "ports": [
                        {
                            "name": "hop",
                            "port": spec.port,
                            "targetPort": "hop",
                            "protocol": "TCP",
                        }
                    ],
                },
            }
        )
    return objects


def compose_document(spec: DeploySpec, host_base_port: int = 18000) -> dict:
    """A Compose file: one service per served machine, published on 127.0.0.1 only. A machine
    with N replicas publishes a range of N host ports (one per container); the machines take
    consecutive ports in their order."""
    services: dict[str, dict] = {}
    health = (
        "import urllib.request; urllib.request.urlopen("
        f"'http://127.0.0.1:{spec.port}{HEALTH_PATH}', timeout=2)"
    )
    environment: dict[str, str] = {
        **address_map(spec),
        "SL2S_HOP_KEY": "${SL2S_HOP_KEY:?set SL2S_HOP_KEY to a long random string}",
    }
    if spec.shared_store:
        environment["SL2S_STORE"] = (
            "${SL2S_STORE:?set SL2S_STORE to the postgresql:// URL of the flow store}"
        )
    host_port = host_base_port
    for machine in spec.served:
        count = spec.replicas_of(machine)
        published = (
            f"{host_port}" if count == 1 else f"{host_port}-{host_port + count - 1}"
        )
        host_port += count
        service: dict[str, object] = {
            "image": spec.image,
            "command": _command(spec, machine),
            "environment": dict(environment),
            "ports": [f"127.0.0.1:{published}:{spec.port}"],
            "healthcheck": {
                "test": ["CMD", "python", "-c", health],
                "interval": "10s",
                "timeout": "3s",
                "retries": 3,
            },
            "restart": "unless-stopped",
        }
        if count > 1:
            service["deploy"] = {"replicas": count}
        services[service_name(spec, machine)] = service
    return {"services": services}


# ---------------------------------------------------------------------------------------------
# a small, deterministic YAML writer (block style; every string double-quoted, so no YAML
# surprises such as `no` becoming false)

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        for key, item in value.items():
            if isinstance(item, (Mapping, list, tuple)) and item:
                out.append(f"{pad}{_key(key)}:")
                out.extend(
                    _lines(item, indent + (2 if isinstance(item, Mapping) else 0))
                )
            else:
                out.append(f"{pad}{_key(key)}: {_empty_or_scalar(item)}")
        return out
    if isinstance(value, (list, tuple)):
        if not value:
            return [pad + "[]"]
        for item in value:
            if isinstance(item, (Mapping, list, tuple)) and item:
                inner = _lines(item, indent + 2)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out.extend(inner[1:])
            else:
                out.append(f"{pad}- {_empty_or_scalar(item)}")
        return out
    return [pad + _scalar(value)]


def _empty_or_scalar(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return _scalar(value)


def to_yaml(documents: Sequence[object], header: str = "") -> str:
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + "".join(
        "---\n" + "\n".join(_lines(doc, 0)) + "\n" for doc in documents
    )


def render(spec: DeploySpec, target: str) -> str:
    header = (
        f"Generated by `sl2s deploy --target {target}` for the machines of '{spec.system}' that\n"
        "other machines hop to. The hop key is not in this file: "
        + (
            f"create it once with\n  kubectl create secret generic {SECRET_NAME} "
            f"--from-literal={SECRET_KEY}=$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
            if target == "kubernetes"
            else "export SL2S_HOP_KEY before `docker compose up`."
        )
    )
    if spec.shared_store:
        header += "\nNor is the flow store's URL (PostgreSQL): " + (
            f"create it once with\n  kubectl create secret generic {STORE_SECRET_NAME} "
            f"--from-literal={STORE_SECRET_KEY}='postgresql://USER:PASSWORD@HOST:5432/DB'"
            if target == "kubernetes"
            else "export SL2S_STORE=postgresql://... as well."
        )
    if target == "kubernetes":
        return to_yaml(kubernetes_objects(spec), header)
    if target == "compose":
        return to_yaml([compose_document(spec)], header)
    raise ValueError(f"unknown deploy target {target!r} (kubernetes, compose)")
