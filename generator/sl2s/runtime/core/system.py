"""What the runtime knows about a generated system package: its directory, and (read once, lazily)
the plan locations and templates recorded in `<system dir>/sl2s.lock.json`.

The lock file is optional: without it (or with an unreadable one) events carry no `sl2s.plan`.
"""

from __future__ import annotations

import os
import posixpath
import sys
import threading
from dataclasses import dataclass, field

import orjson

from sl2s.template import parse

LOCK_FILE = "sl2s.lock.json"


@dataclass
class SystemInfo:
    package: str  # e.g. "services" ("" when machine packages are top-level)
    dir: str  # directory of the system package
    root: str  # its parent (code paths in events are relative to this when below it)
    plan_path: str | None = None
    plan_lines: dict[str, dict[str, int]] = field(default_factory=dict)
    templates: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # flow -> {step: template}
    machines: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # flow -> {step: machine}
    flow_digests: dict[str, str] = field(
        default_factory=dict
    )  # flow -> projection digest (the lock's `flows`; empty for trees generated before it)

    def plan_location(self, flow: str, step: str) -> str | None:
        line = self.plan_lines.get(flow, {}).get(step)
        if line is None or not self.plan_path:
            return None
        return f"{self.plan_path}:{line}"

    def secret_names(self, flow: str) -> set[str]:
        """`#name` placeholders of every step of `flow` recorded in the lock."""
        names: set[str] = set()
        for template in self.templates.get(flow, {}).values():
            names.update(p.name for p in _placeholders(template) if p.secret)
        return names

    def relative(self, path: str) -> str:
        """`path` relative to the system's parent directory when below it (shorter, machine-free)."""
        try:
            rel = os.path.relpath(path, self.root)
        except ValueError:  # another drive on Windows
            return path
        return path if rel.startswith("..") else rel.replace(os.sep, "/")


def _placeholders(template: str):
    try:
        return [p for p in parse(template) if not isinstance(p, str)]
    except ValueError:
        return []


_cache: dict[str, SystemInfo] = {}
_lock = threading.Lock()


def _package_dir(package: str) -> str | None:
    module = sys.modules.get(package)
    path = getattr(module, "__file__", None) if module is not None else None
    if path:
        return os.path.dirname(os.path.abspath(path))
    paths = list(getattr(module, "__path__", []) or []) if module is not None else []
    return os.path.abspath(paths[0]) if paths else None


def info(system: str, machine_package: str) -> SystemInfo:
    """The SystemInfo of `system` (cached; the lock file is read on first use)."""
    key = system or "." + machine_package
    found = _cache.get(key)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(key)
        if found is not None:
            return found
        directory = _package_dir(system) if system else None
        if directory is None:
            machine_dir = _package_dir(machine_package) or os.getcwd()
            directory = os.path.dirname(machine_dir)
        found = SystemInfo(system, directory, os.path.dirname(directory))
        _read_lock(found)
        _cache[key] = found
        return found


def _read_lock(found: SystemInfo) -> None:
    try:
        with open(os.path.join(found.dir, LOCK_FILE), "rb") as handle:
            data = orjson.loads(handle.read())
    except (OSError, orjson.JSONDecodeError):
        return
    if not isinstance(data, dict):
        return
    plan = data.get("plan")
    if isinstance(plan, dict) and isinstance(plan.get("path"), str):
        found.plan_path = _plan_path(plan["path"], found.dir)
    lines = data.get("plan_lines")
    if isinstance(lines, dict):
        found.plan_lines = {
            flow: {s: n for s, n in steps.items() if isinstance(n, int)}
            for flow, steps in lines.items()
            if isinstance(steps, dict)
        }
    flows = data.get("flows")
    if isinstance(flows, dict):
        found.flow_digests = {
            flow: digest for flow, digest in flows.items() if isinstance(digest, str)
        }
    steps = data.get("steps")
    if isinstance(steps, dict):
        for flow, by_id in steps.items():
            if not isinstance(by_id, dict):
                continue
            for step_id, entry in by_id.items():
                if not isinstance(entry, dict):
                    continue
                if isinstance(entry.get("template"), str):
                    found.templates.setdefault(flow, {})[step_id] = entry["template"]
                if isinstance(entry.get("machine"), str):
                    found.machines.setdefault(flow, {})[step_id] = entry["machine"]


def _plan_path(recorded: str, directory: str) -> str:
    """The lock records the plan relative to the system directory (`../login.csv`); events show it
    relative to the system directory's parent, like `code.filepath` (`login.csv`)."""
    if posixpath.isabs(recorded) or os.path.isabs(recorded):
        return recorded
    return posixpath.normpath(posixpath.join(os.path.basename(directory), recorded))


def forget() -> None:
    """Drop cached system info (tests that rewrite a lock file)."""
    with _lock:
        _cache.clear()


def log_dir(system_info: SystemInfo) -> str:
    """`SL2S_LOG_DIR`, or `<system dir>/.sl2s/logs`."""
    return os.environ.get("SL2S_LOG_DIR") or os.path.join(
        system_info.dir, ".sl2s", "logs"
    )
