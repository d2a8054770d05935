"""The pure parts moved out of the CLI: sl2s.serve.up, sl2s.serve.machines, sl2s.runtime.story_print."""

from __future__ import annotations

from pathlib import Path

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.runtime.http_config import KEY_FILE, HttpConfig, load_config
from sl2s.runtime.story_print import (
    StoryPrinter,
    shown_context,
    story_line,
    user_traceback,
)
from sl2s.serve.machines import check_target
from sl2s.serve.up import (
    SERVE_CODE,
    banner,
    child_argv,
    child_env,
    up_file_text,
    uses_env_key,
)

KEY = "ab" * 32


def test_a_fresh_key_without_sl2s_hop_key_or_with_only_a_left_over_key_file(tmp_path):
    root = tmp_path / "services"
    root.mkdir()
    assert not uses_env_key(HttpConfig(), root)
    (root / ".sl2s").mkdir()
    (root / KEY_FILE).write_text(KEY + "\n", encoding="utf-8")
    left_over = load_config(root, environ={})
    assert left_over.keys and not uses_env_key(left_over, root)
    from_env = load_config(root, environ={"SL2S_HOP_KEY": KEY})
    assert uses_env_key(from_env, root)


def test_child_env_carries_every_address_the_key_and_the_http_transport():
    urls = {"server": "http://127.0.0.1:1", "mail": "http://127.0.0.1:2"}
    base = {"PATH": "/bin", "SL2S_TRANSPORT": "local"}
    env = child_env(base, urls, KEY, Path("services"))
    assert env == {
        "PATH": "/bin",
        "SL2S_URL_SERVER": "http://127.0.0.1:1",
        "SL2S_URL_MAIL": "http://127.0.0.1:2",
        "SL2S_HOP_KEY": KEY,
        "SL2S_TRANSPORT": "http",
        "SL2S_SERVICES": "services",
    }
    assert base == {"PATH": "/bin", "SL2S_TRANSPORT": "local"}


def test_child_argv_serves_one_machine_on_the_inherited_socket():
    argv = child_argv("python", Path("services"), "server", 7)
    assert argv == ["python", "-c", SERVE_CODE, "services", "server", "--fd", "7"]


def test_banner_aligns_the_machines_and_names_the_key_file_only_when_made():
    urls = {"server": "http://127.0.0.1:1", "emailservice": "http://127.0.0.1:2"}
    up_file, key_file = Path("s/.sl2s/up.toml"), Path("s/.sl2s/hop.key")
    lines = banner("s", ["server", "emailservice"], urls, up_file, key_file, True)
    assert lines == [
        "server        http://127.0.0.1:1",
        "emailservice  http://127.0.0.1:2",
        f"addresses: {up_file}",
        f"hop key: generated for this session in {key_file}",
        "run a flow: sl2s run s FLOW --remote    stop: Ctrl-C",
    ]
    assert not any(
        line.startswith("hop key")
        for line in banner("s", ["server"], urls, up_file, key_file, False)
    )


def test_up_file_names_the_process_and_maps_the_machines():
    text = up_file_text({"server": "http://127.0.0.1:1"}, 42)
    assert text == (
        "# Written by `sl2s up` (pid 42); removed when it stops.\n"
        "[machines]\n"
        'server = "http://127.0.0.1:1"\n'
    )


def test_deploy_targets():
    check_target("kubernetes")
    check_target("compose")
    with pytest.raises(
        Sl2sError, match="--target helm: expected kubernetes or compose"
    ):
        check_target("helm")


def _event(name, **attributes):
    return {
        "event_name": name,
        "severity_text": attributes.pop("severity", "INFO"),
        "body": attributes.pop("body", "Hello ann"),
        "attributes": attributes,
    }


def test_story_lines_for_steps_logs_and_other_events():
    step = _event(
        "sl2s.step",
        **{"sl2s.machine": "server", "sl2s.step": "hello", "sl2s.plan": "p.csv:3"},
    )
    assert story_line(step) == "server: Hello ann  (hello, p.csv:3)"
    failed = _event("sl2s.step", severity="ERROR", **{"sl2s.step": "hello"})
    assert story_line(failed) == "?: Hello ann  (hello)  FAILED"
    log = _event(
        "sl2s.log", severity="WARNING", body="slow", **{"sl2s.machine": "server"}
    )
    assert story_line(log) == "server:   WARNING slow"
    assert story_line(_event("sl2s.hop_failed")) is None


def test_the_story_printer_counts_steps_only():
    printed: list[str] = []
    printer = StoryPrinter(printed.append)
    for evt in (
        _event("sl2s.step", **{"sl2s.machine": "a"}),
        _event("sl2s.log", **{"sl2s.machine": "a"}),
        _event("sl2s.deviation"),
    ):
        printer.event(evt)
    assert printer.steps == 1
    assert printed == ["a: Hello ann  ()", "a:   INFO Hello ann"]


def test_shown_context_sorts_keys_and_hides_secrets():
    context = {"username": "ann", "password": "pw", "tags": [1, 2], "when": object}
    text = shown_context(context, {"password"})
    assert text.startswith('{"password":"***","tags":[1,2],"username":"ann","when":"')


def test_user_traceback_keeps_the_users_frames_and_drops_those_of_sl2s():
    from sl2s.runtime.launch import parse_values

    def users_code():
        parse_values(["no-equals-sign"])

    try:
        users_code()
    except Sl2sError as error:
        text = user_traceback(error)
    assert text.startswith("Traceback (most recent call last):\n")
    assert "users_code" in text
    assert "launch.py" not in text
    assert text.endswith("expected FIELD=VALUE or FIELD:=JSON")
