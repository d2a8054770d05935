"""Finding and starting a flow of a generated system in this process (what `sl2s run` does).

`parse_values(["username=ann", "tags:=[1, 2]"])` -> `{"username": "ann", "tags": [1, 2]}`:
`FIELD=VALUE` gives the string VALUE, `FIELD:=JSON` the JSON value. Field names are normalised like
plan identifiers (`userName=x` is the field `user_name`).

`load_entry(directory, flow)` imports the system package at `directory` (its parent goes on
`sys.path`) and returns the flow's entry function and the Machine it starts on. The entry machine is
the machine of the flow's first step in `sl2s.lock.json`; without a lock file, the one machine whose
`_wiring.py` defines a function named after the flow.

`capture_info_records()` lets the steps' INFO `logging` records reach the events when the program
has not configured logging. What `sl2s run` prints is in sl2s.runtime.story_print.
"""

from __future__ import annotations

import getpass
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from sl2s.diagnostics import Sl2sError
from sl2s.names import identifier_or_none
from sl2s.runtime.core import system
from sl2s.runtime.core.machine import Machine, load_machine
from sl2s.runtime.core.metadata import checked
from sl2s.runtime.errors import WiringError


@dataclass(frozen=True)
class Entry:
    flow: str
    function: Callable[..., dict]
    machine: Machine
    fields: tuple[str, ...]  # keyword parameters of the entry function


def parse_values(values: list[str] | tuple[str, ...]) -> dict[str, object]:
    fields: dict[str, object] = {}
    problems: list[str] = []
    for text in values:
        name, sep, value = text.partition("=")
        as_json = name.endswith(":")
        if as_json:
            name = name[:-1]
        field = identifier_or_none(name) if name else None
        if not sep or field is None:
            problems.append(f"{text!r}: expected FIELD=VALUE or FIELD:=JSON")
            continue
        if as_json:
            try:
                fields[field] = orjson.loads(value)
            except orjson.JSONDecodeError as error:
                # the field's name only: the value may be a secret (docs/runtime.md, "Secrets")
                problems.append(
                    f"'{name}:=…': the value after := is not JSON ({error})"
                )
                continue
        else:
            fields[field] = value
    if problems:
        raise Sl2sError(problems[0] if len(problems) == 1 else "; ".join(problems))
    return fields


def _import_system(directory: str) -> tuple[str, str]:
    path = os.path.abspath(directory)
    name = os.path.basename(path.rstrip(os.sep))
    if os.path.isfile(path):
        raise Sl2sError(
            f"{directory}: is a file; name the generated tree (`sl2s generate {directory} "
            "--out services`, then `sl2s run services FLOW`)"
        )
    if not os.path.isdir(path):
        raise Sl2sError(
            f"{directory}: no such directory (generate it with `sl2s generate`)"
        )
    # the same rule as `sl2s up` and `sl2s serve` (the hop protocol names the system)
    if not os.path.isfile(os.path.join(path, "__init__.py")) or not name.isidentifier():
        raise Sl2sError(
            f"{directory}: not a generated system package (needs __init__.py and a directory "
            "name that is a Python identifier)"
        )
    parent = os.path.dirname(path)
    loaded = sys.modules.get(name)
    if (
        loaded is not None
        and os.path.dirname(os.path.abspath(loaded.__file__ or "")) != path
    ):
        raise Sl2sError(
            f"{directory}: another module named '{name}' is already imported"
        )
    if parent not in sys.path:
        sys.path.insert(0, parent)
    importlib.import_module(name)
    return name, path


def load_entry(directory: str, flow: str) -> Entry:
    package, path = _import_system(directory)
    flow_id = identifier_or_none(flow) or flow
    info = system.info(package, package + "._")
    machine_name = _entry_machine(info, flow_id, path, directory)
    try:
        wiring = importlib.import_module(f"{package}.{machine_name}._wiring")
        importlib.import_module(f"{package}.{machine_name}")
    except ModuleNotFoundError as error:
        raise Sl2sError(
            f"{directory}: machine '{machine_name}' of flow '{flow_id}' has no wiring ({error})"
        ) from None
    for other in sorted(
        {m for steps in info.machines.values() for m in steps.values()}
    ):
        # every machine now, so that a module that fails to import fails before the flow starts
        if os.path.isdir(os.path.join(path, other)):
            importlib.import_module(f"{package}.{other}")
    function = getattr(wiring, flow_id, None)
    if not callable(function):
        raise Sl2sError(
            f"{directory}: {machine_name}/_wiring.py has no entry function '{flow_id}' "
            "(regenerate with `sl2s generate`)"
        )
    fields = tuple(
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    )
    return Entry(flow_id, function, load_machine(package, machine_name), fields)


def _entry_machine(
    info: system.SystemInfo, flow: str, path: str, directory: str
) -> str:
    if info.plan_lines or info.machines:
        if flow not in info.machines:
            known = ", ".join(sorted(info.machines)) or "none"
            raise Sl2sError(
                f"{directory}: no flow '{flow}' in this system (flows: {known})"
            )
        lines = info.plan_lines.get(flow, {})
        steps = info.machines[flow]
        first = min(steps, key=lambda step: lines.get(step, 1 << 30))
        return steps[first]
    found = []
    for name in sorted(os.listdir(path)):
        wiring = os.path.join(path, name, "_wiring.py")
        if os.path.isfile(wiring):
            module = importlib.import_module(f"{os.path.basename(path)}.{name}._wiring")
            if callable(getattr(module, flow, None)):
                found.append(name)
    if len(found) != 1:
        raise Sl2sError(
            f"{directory}: no sl2s.lock.json, and "
            + (
                f"several machines define '{flow}': {', '.join(found)}"
                if found
                else f"no machine defines an entry '{flow}'"
            )
        )
    return found[0]


def check_fields(entry: Entry, fields: dict[str, object]) -> None:
    unknown = [name for name in fields if name not in entry.fields]
    if unknown:
        known = ", ".join(entry.fields) or "none"
        raise Sl2sError(
            f"flow '{entry.flow}' has no field {', '.join(repr(n) for n in unknown)} "
            f"(its fields: {known})"
        )


def capture_info_records() -> None:
    """With logging unconfigured (no root handler, root level WARNING), set the root level to INFO
    so that the steps' INFO records are captured; stderr still shows warnings and above only.
    """
    root = logging.getLogger()
    if not root.handlers and root.level == logging.WARNING:
        root.setLevel(logging.INFO)


def run_metadata_of(
    actor: str | None, ticket: str | None, reason: str | None, extra: list[str]
) -> dict[str, str]:
    """The run metadata of `sl2s run`: `--actor` (default: the user's name, so that a run started
    by hand never goes unrecorded), `--ticket`, `--reason`, and `--meta NAME=VALUE` pairs.
    """
    meta: dict[str, str] = {}
    problems = []
    for text in extra:
        name, sep, value = text.partition("=")
        if not sep or not name.isidentifier() or not name.isascii():
            problems.append(
                f"--meta {text!r}: expected NAME=VALUE (NAME an identifier)"
            )
            continue
        meta[name] = value
    if problems:
        raise Sl2sError(problems[0])
    if actor is None and "actor" not in meta:
        actor = _user_name()
    meta.update(
        (k, v)
        for k, v in (("actor", actor), ("ticket", ticket), ("reason", reason))
        if v is not None
    )
    try:
        return checked(meta)
    except WiringError as error:
        raise Sl2sError(error.message) from None


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's user)
        return None
