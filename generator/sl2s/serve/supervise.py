"""When `sl2s up` restarts a machine that exited, and what it prints (pure: no processes here).

The policy is a process manager's (systemd's `Restart=always` with a start limit, Kubernetes'
crash-loop back-off): a machine that exits without being asked to is started again on the same
address after a delay that doubles with each crash in a row — 0.5 s, 1 s, 2 s, ... up to 10 s.
A run that lasted `stable_after` seconds (30) ends the series: its crash is attempt 1 again.
After `give_up_after` (8) crashes in a row, none of whose runs lasted `stable_after`, the machine
is broken rather than unlucky (about 40 s of trying): `up` says so, stops every machine and exits 1.

`sl2s.serve.up` owns the processes and asks `decide` what to do when one exits.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    base: float = 0.5  # seconds before the first restart
    cap: float = 10.0  # the longest delay
    stable_after: float = 30.0  # a run this long resets the series
    give_up_after: int = 8  # crashes in a row, each before `stable_after`


@dataclass(frozen=True)
class Decision:
    attempt: int  # the crash's place in the series (1 = first since a stable run)
    delay: float | None  # seconds before the restart; None = give up


def backoff_delay(attempt: int, policy: RestartPolicy = RestartPolicy()) -> float:
    """Seconds before restart number `attempt` of a series: base · 2^(attempt-1), at most cap."""
    if attempt < 1:
        raise ValueError(f"attempt {attempt}: counts from 1")
    return min(policy.cap, policy.base * 2 ** min(attempt - 1, 62))


def decide(
    previous_attempt: int, uptime: float, policy: RestartPolicy = RestartPolicy()
) -> Decision:
    """What to do about a machine that exited after running `uptime` seconds, when its crash
    before that was attempt `previous_attempt` of the series (0: none since `up` started it).
    """
    attempt = 1 if uptime >= policy.stable_after else previous_attempt + 1
    if attempt >= policy.give_up_after and uptime < policy.stable_after:
        return Decision(attempt, None)
    return Decision(attempt, backoff_delay(attempt, policy))


def exit_text(returncode: int) -> str:
    """How a process ended, from `Popen.returncode`: `exit status 3`, `killed by SIGKILL`."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


def restart_line(
    machine: str, pid: int, returncode: int, uptime: float, decision: Decision
) -> str:
    """The one line `up` prints when a machine exits and is to be started again."""
    return (
        f"machine '{machine}' (pid {pid}) stopped: {exit_text(returncode)} after"
        f" {_seconds(uptime)}; restart {decision.attempt} in {_seconds(decision.delay or 0.0)}"
    )


def give_up_line(
    machine: str,
    pid: int,
    returncode: int,
    decision: Decision,
    policy: RestartPolicy = RestartPolicy(),
) -> str:
    """The line `up` prints when it stops restarting a machine (and stops all of them)."""
    return (
        f"machine '{machine}' (pid {pid}) stopped: {exit_text(returncode)};"
        f" {decision.attempt} crashes in a row, none after running"
        f" {_seconds(policy.stable_after)}: giving up, stopping all"
    )


def back_line(machine: str, pid: int, url: str) -> str:
    """The line `up` prints once a restarted machine answers its health check."""
    return f"machine '{machine}' is back (pid {pid}) on {url}"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
