"""The pure parts moved out of the CLI: sl2s.serve.up, sl2s.serve.machines, sl2s.runtime.story_print."""

from __future__ import annotations

from pathlib import Path

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.runtime.story_print import (
    StoryPrinter,
    shown_context,
    story_line,
    user_traceback,
)
from sl2s.runtime.transport.http.config import KEY_FILE, HttpConfig, load_config
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
    pids = {"server": 41, "emailservice": 42}
    lines = banner("s", ["server", "emailservice"], urls, up_file, key_file, True, pids)
    assert lines == [
        "server        http://127.0.0.1:1  pid 41",
        "emailservice  http://127.0.0.1:2  pid 42",
        f"addresses: {up_file}",
        f"hop key: generated for this session in {key_file}",
        "run a flow: sl2s run s FLOW --remote    stop: Ctrl-C",
    ]
    assert not any(
        line.startswith("hop key")
        for line in banner("s", ["server"], urls, up_file, key_file, False, pids)
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


def test_the_key_file_holds_exactly_the_key(tmp_path):
    from sl2s.serve.up import _write_key

    path = tmp_path / "hop.key"
    _write_key(path, KEY)
    assert (
        path.read_bytes() == KEY.encode()
        and oct(path.stat().st_mode & 0o777) == "0o600"
    )


def test_a_port_up_cannot_bind_is_a_one_line_error(monkeypatch):
    from sl2s.serve import up

    monkeypatch.setattr(
        up, "HOST", "192.0.2.1"
    )  # TEST-NET-1: no interface of this machine
    with pytest.raises(Sl2sError) as caught:
        up._bind_loopback()
    assert "cannot listen on 192.0.2.1 (a free port): " in str(caught.value)
    assert "\n" not in str(caught.value)


# -- supervision (sl2s.serve.supervise) ----------------------------------------------------------

from sl2s.serve.supervise import (  # noqa: E402
    Decision,
    RestartPolicy,
    back_line,
    backoff_delay,
    decide,
    exit_text,
    give_up_line,
    restart_line,
)


def test_the_back_off_doubles_from_half_a_second_up_to_its_cap():
    assert [backoff_delay(n) for n in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0,
    ]  # fmt: skip
    assert backoff_delay(10_000) == 10.0  # no overflow far along a series
    policy = RestartPolicy(base=0.1, cap=0.3)
    assert [backoff_delay(n, policy) for n in (1, 2, 3)] == [0.1, 0.2, 0.3]
    with pytest.raises(ValueError):
        backoff_delay(0)


def test_crashes_in_a_row_climb_the_back_off_and_a_stable_run_resets_it():
    attempt, delays = 0, []
    for _ in range(5):  # each run dies within seconds
        decision = decide(attempt, uptime=2.0)
        attempt = decision.attempt
        delays.append(decision.delay)
    assert (attempt, delays) == (5, [0.5, 1.0, 2.0, 4.0, 8.0])
    assert decide(attempt, uptime=30.0) == Decision(1, 0.5)  # stayed up: a new series
    assert decide(attempt, uptime=29.9) == Decision(6, 10.0)


def test_up_gives_up_only_after_the_limit_of_rapid_crashes():
    policy = RestartPolicy(give_up_after=3)
    assert decide(0, 0.1, policy) == Decision(1, 0.5)
    assert decide(1, 0.1, policy) == Decision(2, 1.0)
    assert decide(2, 0.1, policy) == Decision(3, None)
    assert decide(2, 60.0, policy) == Decision(1, 0.5)  # not rapid: never the last one
    assert decide(7, 1.0) == Decision(8, None)  # the default: the 8th crash in a row
    assert decide(6, 1.0).delay == 10.0


def test_how_a_machine_ended_reads_as_a_status_or_a_signal():
    assert exit_text(0) == "exit status 0"
    assert exit_text(3) == "exit status 3"
    assert exit_text(-9) == "killed by SIGKILL"
    assert exit_text(-15) == "killed by SIGTERM"
    assert exit_text(-200) == "killed by signal 200"


def test_the_restart_give_up_and_back_lines_are_one_line_each():
    line = restart_line("server", 4242, -9, 12.34, Decision(2, 1.0))
    assert line == (
        "machine 'server' (pid 4242) stopped: killed by SIGKILL after 12 s;"
        " restart 2 in 1.0 s"
    )
    assert restart_line("mail", 7, 1, 0.25, Decision(1, 0.5)) == (
        "machine 'mail' (pid 7) stopped: exit status 1 after 0.2 s; restart 1 in 0.5 s"
    )
    assert give_up_line("mail", 7, 1, Decision(8, None)) == (
        "machine 'mail' (pid 7) stopped: exit status 1; 8 crashes in a row,"
        " none after running 30 s: giving up, stopping all"
    )
    assert back_line("mail", 8, "http://127.0.0.1:5") == (
        "machine 'mail' is back (pid 8) on http://127.0.0.1:5"
    )
    for text in (line, give_up_line("m", 1, -9, Decision(3, None))):
        assert "\n" not in text
