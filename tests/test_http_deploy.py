"""`sl2s deploy`: Kubernetes manifests validated offline against the API schemas, and Compose."""

from __future__ import annotations

import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from sl2s.runtime.http_deploy import (
    DeploySpec,
    compose_document,
    dns_name,
    render,
    to_yaml,
)

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import sl2s  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.30.0"
SPEC = DeploySpec(
    system="services", served=("back", "email_service"), image="registry.local/shop:1.2"
)


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_kubernetes_manifests_are_valid_objects():
    docs = documents(render(SPEC, "kubernetes"))
    assert [d["kind"] for d in docs] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "Deployment",
        "Service",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_wiring_address_map_secret_and_probes():
    docs = documents(render(SPEC, "kubernetes"))
    config_map = docs[0]
    assert config_map["data"] == {
        "SL2S_URL_BACK": "http://services-back:8000",
        "SL2S_URL_EMAIL_SERVICE": "http://services-email-service:8000",
    }
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert (
        set(deployments) == set(services) == {"services-back", "services-email-service"}
    )
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "registry.local/shop:1.2"
        assert (
            container["command"][:2] == ["sl2s", "serve"]
            and "0.0.0.0" in container["command"]
        )
        assert container["envFrom"] == [
            {"configMapRef": {"name": config_map["metadata"]["name"]}}
        ]
        (key_env,) = container["env"]
        assert key_env["name"] == "SL2S_HOP_KEY"
        assert key_env["valueFrom"]["secretKeyRef"] == {
            "name": "sl2s-hop-key",
            "key": "hop-key",
        }
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {
                "path": "/sl2s/v1/health",
                "port": "hop",
            }
        # the Service selects exactly this Deployment's pods, on the named port
        assert (
            services[name]["spec"]["selector"].items()
            <= pod["metadata"]["labels"].items()
        )
        assert services[name]["spec"]["ports"][0]["targetPort"] == "hop"
    assert "SL2S_HOP_KEY" not in render(SPEC, "kubernetes").replace(
        '"SL2S_HOP_KEY"', ""
    )


def test_compose_file():
    doc = documents(render(SPEC, "compose"))[0]
    assert doc == compose_document(SPEC)
    back = doc["services"]["services-back"]
    assert (
        back["environment"]["SL2S_URL_EMAIL_SERVICE"]
        == "http://services-email-service:8000"
    )
    assert back["environment"]["SL2S_HOP_KEY"].startswith("${SL2S_HOP_KEY:?")
    assert back["ports"] == ["127.0.0.1:18000:8000"]
    assert "/sl2s/v1/health" in back["healthcheck"]["test"][-1]


def test_yaml_writer_quotes_every_string():
    text = to_yaml(
        [
            {
                "a": "no",
                "b": ["1", 2, True, None],
                "c": {},
                "d": [],
                "e": [{"x": "y: z", "w": "#"}],
            }
        ]
    )
    assert yaml.safe_load(text) == {
        "a": "no",
        "b": ["1", 2, True, None],
        "c": {},
        "d": [],
        "e": [{"x": "y: z", "w": "#"}],
    }


def test_dns_names():
    assert dns_name("services", "Email_Service") == "services-email-service"
    assert dns_name("9lives") == "m-9lives"
    assert len(dns_name("x" * 100)) == 63


def test_deploy_command_renders_the_served_machines_of_a_generated_tree(tmp_path):
    tree = tmp_path / "svc_relay"
    assert (
        sl2s(
            "generate",
            str(ROOT / "tests" / "data" / "http" / "relay.csv"),
            "--out",
            str(tree),
        ).returncode
        == 0
    )
    done = sl2s("deploy", str(tree), "--target", "kubernetes", "--image", "relay:1")
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    names = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Deployment")
    assert names == ["svc-relay-back", "svc-relay-middle"]  # 'front' only starts flows
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    out = tmp_path / "compose.yaml"
    done = sl2s("deploy", str(tree), "--target", "compose", "--out", str(out))
    assert (
        done.returncode == 0
        and sorted(documents(out.read_text())[0]["services"]) == names
    )
    bad = sl2s("deploy", str(tree), "--target", "nomad")
    assert bad.returncode == 1 and "expected kubernetes or compose" in bad.stderr


@pytest.mark.parametrize("target", ["kubernetes", "compose"])
def test_rendering_is_deterministic(target):
    assert render(SPEC, target) == render(SPEC, target)
