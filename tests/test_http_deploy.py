"""`sl2s deploy`: Kubernetes manifests validated offline against the API schemas, and Compose."""

from __future__ import annotations

import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from sl2s.serve.deploy import (
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
    assert bad.returncode == 2  # a usage error: the choices are listed
    assert "'nomad' is not one of 'kubernetes', 'compose'" in bad.stderr


@pytest.mark.parametrize("target", ["kubernetes", "compose"])
def test_rendering_is_deterministic(target):
    assert render(SPEC, target) == render(SPEC, target)


# -- replicas (issue 9): `[machines.<name>] replicas = N`, only with the PostgreSQL store --------

from sl2s.serve.machines import check_replicas, setting_line  # noqa: E402

REPLICATED = DeploySpec(
    system="services",
    served=("back", "email_service"),
    image="registry.local/shop:1.2",
    replicas={"back": 3},
    shared_store=True,
)


def test_replicas_in_kubernetes_roll_one_pod_at_a_time_and_read_the_store_from_a_secret():
    docs = documents(render(REPLICATED, "kubernetes"))
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert deployments["services-back"]["spec"]["replicas"] == 3
    assert deployments["services-email-service"]["spec"]["replicas"] == 1
    for deployment in deployments.values():
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert [e["name"] for e in container["env"]] == ["SL2S_HOP_KEY", "SL2S_STORE"]
        assert container["env"][1]["valueFrom"] == {
            "secretKeyRef": {"name": "sl2s-store", "key": "url"}
        }
        assert container["readinessProbe"]["httpGet"]["path"] == "/sl2s/v1/health"
    text = render(REPLICATED, "kubernetes")
    assert "kubectl create secret generic sl2s-store --from-literal=url=" in text
    # without a shared store nothing about it is rendered
    plain = documents(render(SPEC, "kubernetes"))
    for doc in plain:
        if doc["kind"] == "Deployment":
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            assert [e["name"] for e in container["env"]] == ["SL2S_HOP_KEY"]
    assert "sl2s-store" not in render(SPEC, "kubernetes")


def test_replicas_in_compose_publish_a_port_per_container_and_take_the_store_from_the_shell():
    doc = documents(render(REPLICATED, "compose"))[0]
    back, mail = (
        doc["services"]["services-back"],
        doc["services"]["services-email-service"],
    )
    assert back["deploy"] == {"replicas": 3} and "deploy" not in mail
    assert back["ports"] == ["127.0.0.1:18000-18002:8000"]
    assert mail["ports"] == ["127.0.0.1:18003:8000"]
    for service in (back, mail):
        assert service["environment"]["SL2S_STORE"].startswith("${SL2S_STORE:?")
    assert (
        "SL2S_STORE"
        not in compose_document(SPEC)["services"]["services-back"]["environment"]
    )


def test_the_line_of_a_replicas_setting_in_each_toml_spelling():
    text = (
        "[machines]\n"  # 1
        'front = "http://f:1"\n'  # 2
        "mail = { replicas = 2 }\n"  # 3
        "cart.replicas = 4\n"  # 4
        "\n"  # 5
        '[machines."back"]  # the back end\n'  # 6
        'url = "http://b:1"\n'  # 7
        "replicas = 3\n"  # 8
        "[machines.backup]\n"  # 9
        "replicas = 5\n"  # 10
    )
    assert setting_line(text, "mail") == 3
    assert setting_line(text, "cart") == 4
    assert setting_line(text, "back") == 8
    assert setting_line(text, "backup") == 10
    assert setting_line(text, "front") == 0  # it has none


def test_replica_settings_that_cannot_work_are_file_line_errors():
    settings = {
        "back": (2, "svc/sl2s.toml", 7),
        "front": (2, "svc/sl2s.toml", 9),
        "ghost": (1, "svc/sl2s.toml", 11),
        "mail": (0, "svc/sl2s.toml", 13),
        "cart": (True, "svc/sl2s.toml", 15),
    }
    served, names = ["back", "cart", "mail"], ["back", "cart", "front", "mail"]
    problems = check_replicas(
        settings, served, names, "sqlite:///srv/flows.sqlite3", "default", "svc"
    )
    assert [str(d) for d in problems] == [
        "svc/sl2s.toml:7: [machines.back] replicas = 2 needs the PostgreSQL flow store,"
        " where every replica finds the hops and checkpoints of the others; the store is"
        ' sqlite:///srv/flows.sqlite3 (from default): set [store] url = "postgresql://..."'
        " in sl2s.toml or SL2S_STORE",
        "svc/sl2s.toml:15: [machines.cart] replicas = True: expected a whole number of at"
        " least 1",
        "svc/sl2s.toml:9: [machines.front] replicas: machine 'front' receives no hops, so"
        " it is not deployed (it runs inside the program that starts its flows)",
        "svc/sl2s.toml:11: [machines.ghost] replicas: 'svc' has no machine 'ghost' (its"
        " machines: back, cart, front, mail)",
        "svc/sl2s.toml:13: [machines.mail] replicas = 0: expected a whole number of at"
        " least 1",
    ]
    pg = "postgresql://app:s3cret@db:5432/flows"
    ok = {"back": (2, "svc/sl2s.toml", 7), "mail": (1, "svc/sl2s.toml", 9)}
    assert check_replicas(ok, served, names, pg, "SL2S_STORE", "svc") == []
    (none,) = check_replicas(ok, served, names, "none", "SL2S_STORE", "svc")
    assert "the store is none (from SL2S_STORE)" in str(none)


def test_deploy_with_replicas_needs_the_postgresql_store_and_never_writes_its_url(
    tmp_path,
):
    from harness import base_env

    tree = tmp_path / "svc_relay"
    plan = ROOT / "tests" / "data" / "http" / "relay.csv"
    assert sl2s("generate", str(plan), "--out", str(tree)).returncode == 0
    config = tree / "sl2s.toml"
    config.write_text("# replicated\n[machines.back]\nreplicas = 2\n", encoding="utf-8")
    env = base_env()
    args = ("deploy", str(tree), "--target", "kubernetes", "--image", "relay:1")
    bad = sl2s(*args, env=env)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith(
        "svc_relay/sl2s.toml:3: [machines.back] replicas = 2 needs the PostgreSQL flow store"
    ), bad.stderr
    assert (
        'set [store] url = "postgresql://..." in sl2s.toml or SL2S_STORE' in bad.stderr
    )
    assert len(bad.stderr.strip().splitlines()) == 1

    url = "postgresql://app:s3cret@db.internal:5432/flows"
    config.write_text(
        config.read_text() + f'\n[store]\nurl = "{url}"\n', encoding="utf-8"
    )
    done = sl2s(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout and "db.internal" not in done.stdout
    docs = documents(done.stdout)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    replicas = {
        d["metadata"]["name"]: d["spec"]["replicas"]
        for d in docs
        if d["kind"] == "Deployment"
    }
    assert replicas == {"svc-relay-back": 2, "svc-relay-middle": 1}

    # the same store chosen by SL2S_STORE instead of sl2s.toml
    config.write_text("[machines.back]\nreplicas = 2\n", encoding="utf-8")
    compose = sl2s(
        "deploy", str(tree), "--target", "compose", env={**env, "SL2S_STORE": url}
    )
    assert compose.returncode == 0, compose.stderr
    assert "s3cret" not in compose.stdout
    back = documents(compose.stdout)[0]["services"]["svc-relay-back"]
    assert back["deploy"] == {"replicas": 2}
    assert back["environment"]["SL2S_STORE"].startswith("${SL2S_STORE:?")


def test_machine_tables_carry_a_url_and_replicas_for_the_runtime_config(tmp_path):
    from sl2s.runtime.transport.http.config import HopConfigError, load_config

    root = tmp_path / "svc"
    root.mkdir()
    (root / "sl2s.toml").write_text(
        "[machines]\n"
        'front = "http://f:1"\n'
        "mail = { replicas = 2 }\n"
        "[machines.back]\n"
        'url = "http://b:2/"\n'
        "replicas = 3\n",
        encoding="utf-8",
    )
    config = load_config(root, environ={})
    assert dict(config.urls) == {"front": "http://f:1", "back": "http://b:2"}
    (root / "sl2s.toml").write_text("[machines.back]\nreplica = 3\n", encoding="utf-8")
    with pytest.raises(HopConfigError) as caught:
        load_config(root, environ={})
    assert str(caught.value) == (
        "svc/sl2s.toml: [machines.back] has unknown setting(s): replica"
        " (expected url, replicas)"
    )
