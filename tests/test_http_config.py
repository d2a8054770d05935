"""Addresses and hop settings: sl2s.toml < .sl2s/up.toml < environment; clear errors."""

from __future__ import annotations

import pytest

from sl2s.runtime.transport.http.config import (
    HopConfigError,
    load_config,
    render_machines_toml,
)

KEY = "k" * 32


def tree(
    tmp_path, toml: str | None = None, up: str | None = None, key: str | None = None
):
    root = tmp_path / "services"
    (root / ".sl2s").mkdir(parents=True)
    if toml is not None:
        (root / "sl2s.toml").write_text(toml, encoding="utf-8")
    if up is not None:
        (root / ".sl2s" / "up.toml").write_text(up, encoding="utf-8")
    if key is not None:
        (root / ".sl2s" / "hop.key").write_text(key + "\n", encoding="utf-8")
    return root


def test_defaults_without_any_configuration(tmp_path):
    config = load_config(tree(tmp_path), environ={})
    assert (config.urls, config.keys, config.timeout, config.attempts) == (
        {},
        (),
        10.0,
        None,  # retried until the flow's deadline
    )
    assert config.max_body == 1024 * 1024
    assert config.deadline_for("login") == 60.0
    assert load_config(None, environ={}).urls == {}


def test_flow_deadlines_per_flow_in_the_file_and_for_all_in_the_environment(tmp_path):
    root = tree(
        tmp_path, toml="[flows.login]\ndeadline = 120\n[flows.feed]\ndeadline = 2.5\n"
    )
    config = load_config(root, environ={})
    assert (config.deadline_for("login"), config.deadline_for("feed")) == (120.0, 2.5)
    assert config.deadline_for("other") == 60.0
    # SL2S_DEADLINE is every flow's: it overrides the file's per-flow settings too
    config = load_config(root, environ={"SL2S_DEADLINE": "7"})
    assert [config.deadline_for(f) for f in ("login", "feed", "other")] == [7.0] * 3


def test_precedence_file_then_up_then_environment(tmp_path):
    root = tree(
        tmp_path,
        toml='[machines]\nserver = "http://10.0.0.1:8000/"\nemail = "http://10.0.0.2:8000"\n'
        "[hop]\ntimeout = 5\nattempts = 2\nmax_body = 2048\n",
        up=render_machines_toml({"server": "http://127.0.0.1:4001"}, "written by up"),
    )
    environ = {
        "SL2S_URL_EMAIL": "https://mail.example:443",
        "SL2S_HOP_TIMEOUT": "1.5",
        "SL2S_HOP_KEY": KEY,
    }
    config = load_config(root, environ=environ)
    assert config.urls == {
        "server": "http://127.0.0.1:4001",
        "email": "https://mail.example:443",
    }
    assert config.sources == {
        "server": "services/.sl2s/up.toml",
        "email": "environment SL2S_URL_EMAIL",
    }
    assert (config.timeout, config.attempts, config.max_body) == (1.5, 2, 2048)
    assert (
        config.keys == (KEY.encode(),)
        and config.key_source == "environment SL2S_HOP_KEY"
    )
    assert (
        "machine 'email' at https://mail.example:443 (from environment SL2S_URL_EMAIL)"
        == config.describe("email")
    )


def test_the_key_file_of_up_is_used_when_the_environment_has_none(tmp_path):
    root = tree(tmp_path, key="f" * 64)
    config = load_config(root, environ={})
    assert config.keys == (b"f" * 64,) and config.key_source == "services/.sl2s/hop.key"
    assert load_config(root, environ={"SL2S_HOP_KEY": KEY}).keys == (KEY.encode(),)


@pytest.mark.parametrize(
    "toml, environ, message",
    [
        ("[machines]\nserver = 3\n", {}, "[machines] server: expected a URL string"),
        ('[machines]\nserver = "ftp://x"\n', {}, "is not an http:// or https:// URL"),
        ('[machines]\nserver = "http://x:99999"\n', {}, "invalid port"),
        ('[machines]\nserver = "http://x/?a=1"\n', {}, "must not have a query"),
        ("[servers]\n", {}, "unknown table(s): servers"),
        ("[hop]\nretries = 3\n", {}, "unknown setting 'retries'"),
        ("[hop]\ntimeout = 0\n", {}, "timeout: 0 must be at least"),
        ("[hop]\nattempts = true\n", {}, "attempts: True must be at least"),
        ("machines = [\n", {}, "not valid TOML"),
        (
            "[flows.login]\ndeadlin = 3\n",
            {},
            "[flows.login] has unknown setting 'deadlin'",
        ),
        (
            "[flows.login]\ndeadline = 0\n",
            {},
            "[flows.login] deadline: 0 must be at least",
        ),
        (
            "[flows]\nlogin = 3\n",
            {},
            "[flows] login must be a table, like [flows.login]",
        ),
        (
            "",
            {"SL2S_DEADLINE": "soon"},
            "environment SL2S_DEADLINE: 'soon' is not a number",
        ),
        ("", {"SL2S_URL_SERVER": "nope"}, "environment SL2S_URL_SERVER"),
        (
            "",
            {"SL2S_HOP_ATTEMPTS": "many"},
            "environment SL2S_HOP_ATTEMPTS: 'many' is not a number",
        ),
        (
            "",
            {"SL2S_HOP_KEY": "short"},
            "environment SL2S_HOP_KEY: SL2S_HOP_KEY has a key of 5 characters",
        ),
    ],
)
def test_configuration_errors_name_the_source(tmp_path, toml, environ, message):
    with pytest.raises(HopConfigError) as caught:
        load_config(tree(tmp_path, toml=toml), environ=environ)
    assert message in str(caught.value)
