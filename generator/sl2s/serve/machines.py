"""Which machines of a generated tree are served, and the deploy manifests for them.

`served_machines(directory)` -> (machines that other machines hop to, all machines); a machine whose
user code does not import is an `Sl2sError` naming it. `deploy_manifests(directory, target, ...)`
checks the target, finds the served machines, checks their `replicas` settings against the flow
store (more than one replica only with PostgreSQL: `check_replicas`) and renders the manifests
(sl2s.serve.deploy).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

from sl2s.diagnostics import Diagnostic, Sl2sError

TARGETS = ("kubernetes", "compose")


def served_machines(directory: str) -> tuple[list[str], list[str]]:
    """(machines that other machines hop to, all machines) of the tree at `directory`."""
    from sl2s.runtime.transport.http.server import (
        load_machine,
        machine_names,
        serves_inbound,
    )

    names = machine_names(directory)
    served = []
    for name in names:
        try:
            machine = load_machine(directory, name)
        except Sl2sError:
            raise
        except Exception as error:  # noqa: BLE001 - user code that does not import
            raise Sl2sError(
                f"{directory}: machine '{name}' cannot be imported: "
                f"{type(error).__name__}: {error}"
            ) from None
        if serves_inbound(machine):
            served.append(name)
    return served, names


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise Sl2sError(f"--target {target}: expected kubernetes or compose")


def deploy_manifests(
    directory: str, target: str, *, image: str, port: int
) -> tuple[str, list[str]]:
    """(manifest text, served machines) for `sl2s deploy`; user mistakes raise `Sl2sError`."""
    from sl2s.runtime.store import store_setting
    from sl2s.serve.deploy import DeploySpec, render

    check_target(target)
    served, names = served_machines(directory)
    if not served:
        raise Sl2sError(f"{directory}: no machine receives hops; nothing to deploy")
    settings = replica_settings(directory)
    store_url, store_source = store_setting(directory)
    problems = check_replicas(
        settings, served, names, store_url, store_source, Path(directory).name
    )
    if problems:
        raise Sl2sError(problems)
    spec = DeploySpec(
        system=Path(directory).resolve().name,
        served=tuple(served),
        image=image,
        port=port,
        # (whole numbers: check_replicas refused anything else)
        replicas={name: cast(int, count) for name, (count, _, _) in settings.items()},
        shared_store=is_postgresql(store_url),
    )
    return render(spec, target), served


# ---------------------------------------------------------------------------------------------
# replicas: `[machines.<name>] replicas = N` in <services>/sl2s.toml

# A machine's replicas share its hops and checkpoints only through a store they all reach: the
# PostgreSQL one. With the embedded SQLite store each replica would keep its own file, and a hop
# retried on another replica would run its steps again.
# machine -> (the value as written, file label, line)
ReplicaSettings = dict[str, tuple[object, str, int]]


def is_postgresql(url: str) -> bool:
    """Whether a store URL names the PostgreSQL store (the one replicas can share)."""
    return url.startswith(("postgresql://", "postgres://"))


def replica_settings(directory: str) -> ReplicaSettings:
    """Every `replicas` setting of `<directory>/sl2s.toml`, as written (checked by
    `check_replicas`), with the line it is on for messages."""
    from sl2s.runtime.transport.http.config import CONFIG_FILE, _read_toml

    path = Path(directory) / CONFIG_FILE
    label = f"{Path(directory).name}/{CONFIG_FILE}"
    machines = _read_toml(path, label).get("machines", {})
    if not isinstance(machines, dict):
        return {}  # load_config reports it
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return {
        name: (table["replicas"], label, setting_line(text, name))
        for name, table in machines.items()
        if isinstance(table, dict) and "replicas" in table
    }


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def setting_line(text: str, machine: str) -> int:
    """The 1-based line of machine `machine`'s `replicas` setting in TOML `text`, written as
    `[machines.<machine>]` then `replicas = N`, as `<machine> = { ..., replicas = N }` or
    `<machine>.replicas = N` under `[machines]`; 0 when it cannot be placed."""
    name = re.escape(machine)
    quoted = rf"(?:{name}|\"{name}\"|'{name}')"
    table = re.compile(rf"^machines\s*\.\s*{quoted}$")
    inline = re.compile(rf"^\s*{quoted}\s*(?:=\s*\{{.*\breplicas\b|\.\s*replicas\s*=)")
    key = re.compile(r"^\s*replicas\s*=")
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            current = header.group(1).replace(" ", "")
            continue
        if table.match(current) and key.match(line):
            return number
        if current == "machines" and inline.match(line):
            return number
    return 0


def check_replicas(
    settings: ReplicaSettings,
    served: list[str],
    names: list[str],
    store_url: str,
    store_source: str,
    system: str,
) -> list[Diagnostic]:
    """What is wrong with the `replicas` settings (pure): a count that is not a whole number of
    at least 1, a machine that does not exist or is not served, or more than one replica without
    the PostgreSQL store."""
    from sl2s.runtime.store import redact

    problems = []
    for machine, (value, label, line) in sorted(settings.items()):
        where = f"[machines.{machine}] replicas"
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(
                Diagnostic(
                    label,
                    line,
                    f"{where} = {value!r}: expected a whole number of at least 1",
                )
            )
        elif machine not in names:
            problems.append(
                Diagnostic(
                    label,
                    line,
                    f"{where}: '{system}' has no machine '{machine}'"
                    f" (its machines: {', '.join(names)})",
                )
            )
        elif machine not in served:
            problems.append(
                Diagnostic(
                    label,
                    line,
                    f"{where}: machine '{machine}' receives no hops, so it is not deployed"
                    " (it runs inside the program that starts its flows)",
                )
            )
        elif value > 1 and not is_postgresql(store_url):
            shown = "none" if store_url.lower() == "none" else redact(store_url)
            problems.append(
                Diagnostic(
                    label,
                    line,
                    f"{where} = {value} needs the PostgreSQL flow store, where every replica"
                    f" finds the hops and checkpoints of the others; the store is {shown}"
                    f' (from {store_source}): set [store] url = "postgresql://..." in'
                    " sl2s.toml or SL2S_STORE",
                )
            )
    return problems
