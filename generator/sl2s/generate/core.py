"""Plan (+ the user modules as they are) -> the file set of the generated system. Pure.

`generate()` reads nothing and writes nothing: the shell (writer.py, cli/generate.py) reads the
plan and the existing user modules, calls it, and writes the result.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from sl2s import __version__
from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.generate import lock as lockfile
from sl2s.generate import render, rendercache
from sl2s.generate.blackcheck import BlackCheck
from sl2s.generate.flowdigest import flow_digests
from sl2s.generate.lock import LOCK
from sl2s.generate.usercode import (
    FoundStep,
    UserCodeError,
    append_stubs,
    module_names,
    parse,
    scan_module,
    stub_types,
)
from sl2s.model import Flow, Placeholder, Plan, Step
from sl2s.names import identifier
from sl2s.projection import MachineView, Projection, project
from sl2s.show import markdown

# The top-level statements each rendered chunk may contain (checked by BlackCheck.ensure).
SYSTEM_INIT = (
    "doc",
    "ImportFrom",
    "Expr",
)  # docstring, import + call of the flight recorder
INIT = ("doc", "ImportFrom", "Assign")
WIRING_HEADER = ("doc", "ImportFrom", "Assign")
USER_HEADER = ("doc", "ImportFrom")
DEFINITION = ("FunctionDef",)
CONTEXT = ("ClassDef",)
STEP_IMPORT = "from sl2s.api import step\n"


@dataclass(frozen=True)
class OutFile:
    """A file of the generated tree. `generated`: rewritten freely; else user-owned (created or
    appended to — user modules that need no change are not in the file set at all)."""

    path: str  # relative to the output directory, with `/`
    content: str
    generated: bool


@dataclass(frozen=True)
class Orphan:
    """A step function whose step is no longer in the plan on its machine. It is kept."""

    path: str
    line: int
    function: str
    flow: str
    id: str
    # False: its module is no longer imported (the flow left the machine)
    imported: bool

    def message(self, prefix: str = "") -> str:
        where = (
            "its module is no longer imported"
            if not self.imported
            else "it is never called"
        )
        return (
            f"{prefix}{self.path}:{self.line}: step function {self.function}() "
            f"({self.flow}/{self.id}) is not in the plan on this machine; kept, {where}"
        )


@dataclass(frozen=True)
class Generation:
    files: tuple[OutFile, ...]  # sorted by path
    orphans: tuple[Orphan, ...]
    added: tuple[tuple[str, str], ...]  # (user module path, step id) of each new stub
    projection: Projection | None = None
    # What scan_module() finds in each user module this generation creates (for caches).
    created: tuple[tuple[str, tuple[FoundStep, ...]], ...] = ()

    def file(self, path: str) -> OutFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)


Scanner = Callable[[str, str], list[FoundStep]]  # (path, source) -> steps


def _default_scan(path: str, source: str) -> list[FoundStep]:
    return scan_module(source)


@dataclass
class _Names:
    """Allocates distinct identifiers in one module namespace, deterministically."""

    taken: set[str] = field(default_factory=set)

    def take(self, base: str) -> str:
        name = base
        number = 2
        while name in self.taken:
            name = f"{base}_{number}"
            number += 1
        self.taken.add(name)
        return name


def _unique(items):
    return tuple(dict.fromkeys(items))


def generate(
    plan: Plan,
    *,
    plan_ref: str,
    user_modules: Mapping[str, str],
    scan: Scanner = _default_scan,
    check: BlackCheck | None = None,
    version: str = __version__,
    prefix: str = "",
    origins: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Generation:
    """The files of the system for `plan`.

    plan_ref: how generated headers and the lock name the plan (the CLI passes its path relative
    to the output directory). user_modules: `{"<machine>/<name>.py": source}` of every existing
    non-generated module in the output tree. prefix: put before paths in diagnostics.
    origins: where `sl2s rebalance` took definitions from (kept in the lock for the modules that
    still exist). progress: told `(machines rendered, machines)` as each machine's files are done.
    Raises Sl2sError (every problem) when a user module cannot be read.
    """
    check = check or BlackCheck()
    diagnostics: list[Diagnostic] = []
    scans: dict[str, list[FoundStep]] = {}
    for path in sorted(user_modules):
        try:
            scans[path] = scan(path, user_modules[path])
        except UserCodeError as error:
            diagnostics.append(Diagnostic(prefix + path, error.line, error.message))
    if diagnostics:
        raise Sl2sError(diagnostics)

    machines = plan.machines
    flows = {f.name: f for f in plan.flows}
    flows_on: dict[str, list[str]] = {m: [] for m in machines}
    for f in plan.flows:
        for m in f.machines:
            flows_on[m].append(f.name)
    expected: dict[str, dict[tuple[str, str], Step]] = {m: {} for m in machines}
    for s in plan.steps:
        expected[s.machine][(s.flow, s.id)] = s

    # Where each step's function is, per machine (only modules the machine's package imports count).
    found: dict[tuple[str, str, str], tuple[str, FoundStep]] = {}  # (machine, flow, id)
    orphans: list[Orphan] = []
    for path, steps in scans.items():
        machine, _, module = path.partition("/")
        imported = machine in flows_on and module[:-3] in flows_on[machine]
        for fs in steps:
            key = (machine, fs.flow, fs.id)
            if imported and (fs.flow, fs.id) in expected[machine]:
                if key in found:
                    other_path, other = found[key]
                    diagnostics.append(
                        Diagnostic(
                            prefix + path,
                            fs.line,
                            f"step {fs.flow}/{fs.id} is defined twice on machine {machine}: "
                            f"here and at {prefix}{other_path}:{other.line}",
                        )
                    )
                    continue
                found[key] = (path, fs)
            else:
                orphans.append(
                    Orphan(path, fs.line, fs.function, fs.flow, fs.id, imported)
                )
    if diagnostics:
        raise Sl2sError(diagnostics)

    uses: dict[tuple[str, str], set[str]] = {}
    # Flow.secrets as a set (its order does not matter here), without Step.secrets per step
    secrets_of = {
        name: {
            p.name
            for s in f.steps
            for p in s.parts
            if type(p) is Placeholder and p.secret
        }
        for name, f in flows.items()
    }
    for (machine, flow, _), (_, fs) in found.items():
        secrets = secrets_of[flow]
        if not secrets or not fs.params:
            continue
        needed = secrets.intersection(fs.params)
        if needed:
            uses.setdefault((flow, machine), set()).update(needed)
    projection = project(plan, uses={k: tuple(sorted(v)) for k, v in uses.items()})
    types = _field_types(found, prefix)

    files: list[OutFile] = []
    added: list[tuple[str, str]] = []
    created: list[tuple[str, tuple[FoundStep, ...]]] = []
    for machine in machines:
        for flow in flows_on[machine]:
            path = f"{machine}/{flow}.py"
            missing: list[Step] = [
                s
                for s in flows[flow].steps
                if s.machine == machine and (machine, flow, s.id) not in found
            ]
            if not missing:
                continue
            where = prefix + path
            source = user_modules.get(path)
            bound = set() if source is None else module_names(parse(source))
            names = _Names(bound | {"step"})
            stubs = []
            for s in missing:
                function = names.take(s.id)
                stubs.append(
                    check.ensure(
                        render.stub(s, function, types.get(flow, {})), DEFINITION, where
                    )
                )
                found[(machine, flow, s.id)] = (
                    path,
                    FoundStep(flow, s.id, s.template, function, (), 0),
                )
                added.append((path, s.id))
            if source is None:
                header = check.ensure(
                    render.user_module_header(flow, machine), USER_HEADER, where
                )
                content = render.join(header, stubs)
                created.append(
                    (path, _stub_steps(header, stubs, missing, found, machine, types))
                )
            else:
                if (
                    "step" not in bound
                ):  # the user removed the import: the stubs need it
                    stubs.insert(0, STEP_IMPORT)
                content = append_stubs(source, stubs)
                _validate_append(where, source, content, stubs)
            files.append(OutFile(path, content, generated=False))

    lock_steps: dict[str, dict[str, dict[str, str]]] = {}
    for (machine, flow, step_id), (path, fs) in sorted(found.items()):
        if (flow, step_id) not in expected.get(machine, {}):
            continue
        lock_steps.setdefault(flow, {})[step_id] = {
            "machine": machine,
            "module": path,
            "function": fs.function,
            "template": expected[machine][(flow, step_id)].template,
        }

    for done, view in enumerate(projection.machines):
        if progress is not None:
            progress(done, len(projection.machines))
        files.extend(
            _machine_files(
                plan,
                flows,
                view,
                flows_on[view.name],
                plan_ref,
                version,
                check,
                prefix,
                types,
            )
        )

    if progress is not None:
        progress(len(projection.machines), len(projection.machines))
    services = check.ensure(
        render.services_init(plan_ref, version), SYSTEM_INIT, prefix + "__init__.py"
    )
    files.append(OutFile("__init__.py", services, True))
    files.append(OutFile(".gitattributes", render.gitattributes(version), True))
    files.append(
        OutFile("PLAN.md", render.plan_md(markdown(projection), version), True)
    )
    digests = {
        f.path: hashlib.sha256(f.content.encode("utf-8")).hexdigest()
        for f in files
        if f.generated
    }
    lock_text = lockfile.render(
        version=version,
        plan_ref=plan_ref,
        digest=plan.digest,
        steps=lock_steps,
        plan_lines={f.name: {s.id: s.line for s in f.steps} for f in plan.flows},
        files=digests,
        flows=flow_digests(projection),
        origins={
            path: names
            for path, names in sorted((origins or {}).items())
            if names and (path in user_modules or any(f.path == path for f in files))
        },
    )
    files.append(OutFile(LOCK, lock_text, True))
    files.sort(key=lambda f: f.path)
    orphans.sort(key=lambda o: (o.path, o.line))
    return Generation(
        tuple(files), tuple(orphans), tuple(added), projection, tuple(created)
    )


def _stub_steps(
    header, stubs, steps, found, machine, types: FieldTypes
) -> tuple[FoundStep, ...]:
    """The FoundSteps of a freshly rendered user module (header + stubs), without parsing it."""
    line = header.count("\n") + 1
    out = []
    for stub, s in zip(stubs, steps):
        line += render.JOIN.count("\n")
        function = found[(machine, s.flow, s.id)][1].function
        out.append(
            FoundStep(
                s.flow,
                s.id,
                s.template,
                function,
                s.placeholders,
                line,
                # what its annotations declare (parsed only when a field has a type)
                (
                    stub_types(stub, line)
                    if any(p in types.get(s.flow, {}) for p in s.placeholders)
                    else ()
                ),
            )
        )
        line += stub.count("\n")
    return tuple(out)


FieldTypes = dict[str, dict[str, str]]  # {flow: {field: annotation}}


def _field_types(
    found: Mapping[tuple[str, str, str], tuple[str, FoundStep]], prefix: str
) -> FieldTypes:
    """The type of each context field that the step functions annotate, per flow.

    Two different annotations of one field in one flow are an error naming both places.
    """
    seen: dict[tuple[str, str], tuple[str, str, int]] = {}  # (flow, field) -> where
    diagnostics: list[Diagnostic] = []
    places = sorted(
        (path, line, fs.flow, name, text)
        for path, fs in found.values()
        for name, text, line in fs.types
    )
    for path, line, flow, name, text in places:
        first = seen.setdefault((flow, name), (text, path, line))
        if first[0] != text:
            diagnostics.append(
                Diagnostic(
                    prefix + path,
                    line,
                    f"field {name!r} of flow {flow!r} is annotated {text!r} here and "
                    f"{first[0]!r} at {prefix}{first[1]}:{first[2]}; "
                    "one field has one type",
                )
            )
    if diagnostics:
        raise Sl2sError(diagnostics)
    out: FieldTypes = {}
    for (flow, name), (text, _, _) in seen.items():
        out.setdefault(flow, {})[name] = text
    return out


def _checked(
    check: BlackCheck,
    where: str,
    allowed: tuple[str, ...],
    make: Callable[..., str],
    *args: object,
) -> str:
    """A chunk rendered by `make(*args)` and checked (what the render cache keeps)."""
    return check.ensure(make(*args), allowed, where)


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) or "Flow"


def _machine_files(
    plan: Plan,
    flows: Mapping[str, Flow],
    view: MachineView,
    flows_here: list[str],
    plan_ref: str,
    version: str,
    check: BlackCheck,
    prefix: str,
    types: FieldTypes,
) -> list[OutFile]:
    machine = view.name
    where = f"{prefix}{machine}/_wiring.py"
    names = _Names({"UNSET", "Unset", "Machine", "Run", "TypedDict"})
    entries = [a for a in view.entries if a.at is None]
    entry_fields: dict[str, tuple[str, ...]] = {}
    for a in entries:
        names.taken.add(a.flow)
        # an entry's parameters shadow module names inside it: `machine` must stay reachable
        fields = _unique(p for s in flows[a.flow].steps for p in s.placeholders)
        entry_fields[a.flow] = fields
        names.taken.update(fields)
    machine_var = names.take("machine")
    cast = names.take("cast") if entries else "cast"
    contexts = {a.flow: names.take(_camel(a.flow) + "Context") for a in entries}
    chunks = []
    memo = check.rendered
    for a in entries:
        flow_types = types.get(a.flow, {})
        # the context: the flow's fields, then fields only a step's declared result names
        fields = entry_fields[a.flow]
        extra = tuple(sorted(set(flow_types) - set(fields)))
        typed = tuple((f, flow_types.get(f, "object")) for f in fields + extra)
        key = rendercache.key(
            "context", a, contexts[a.flow], [repr(typed)], machine_var, CONTEXT
        )
        chunks.append(
            memo.get(
                machine,
                key,
                partial(
                    _checked,
                    check,
                    where,
                    CONTEXT,
                    render.context,
                    a.flow,
                    contexts[a.flow],
                    typed,
                ),
            )
        )
    for activation in view.entries:
        if activation.at is None:
            flow_types = types.get(activation.flow, {})
            fields = entry_fields[activation.flow]
            params = tuple((f, flow_types.get(f)) for f in fields)
            context = contexts[activation.flow]
            key = rendercache.key(
                "entry",
                activation,
                activation.flow,
                [repr(params), context, cast],
                machine_var,
                DEFINITION,
            )
            chunk = memo.get(
                machine,
                key,
                partial(
                    _checked,
                    check,
                    where,
                    DEFINITION,
                    render.entry,
                    activation,
                    activation.flow,
                    params,
                    machine_var,
                    context,
                    cast,
                ),
            )
        else:
            function = names.take(identifier(f"{activation.flow}_at_{activation.at}"))
            key = rendercache.key(
                "segment", activation, function, (), machine_var, DEFINITION
            )
            chunk = memo.get(
                machine,
                key,
                partial(
                    _checked,
                    check,
                    where,
                    DEFINITION,
                    render.segment,
                    activation,
                    function,
                    machine_var,
                ),
            )
        chunks.append(chunk)
    need_unset = any(entry_fields[a.flow] for a in entries)
    imports = ["UNSET", "Machine"] if need_unset else ["Machine"]
    if len(entries) < len(view.entries):
        imports.append("Run")
    if any(f in types.get(a.flow, {}) for a in entries for f in entry_fields[a.flow]):
        imports.append("Unset")  # an annotated field: `name: T | Unset = UNSET`
    typing_imports = []
    if entries:
        # isort keeps an aliased import on a line of its own
        typing_imports = (
            ["from typing import TypedDict, cast"]
            if cast == "cast"
            else ["from typing import TypedDict", f"from typing import cast as {cast}"]
        )
    header = render.wiring_header(
        machine, machine_var, imports, typing_imports, plan_ref, version
    )
    wiring = render.join(check.ensure(header, WIRING_HEADER, where), chunks)
    init = render.machine_init(
        machine, flows_here, [a.flow for a in entries], plan_ref, version
    )
    init = check.ensure(init, INIT, f"{prefix}{machine}/__init__.py")
    return [
        OutFile(f"{machine}/__init__.py", init, True),
        OutFile(f"{machine}/_wiring.py", wiring, True),
    ]


# --- validation of an appended user module (the rest is checked chunk by chunk) ------------------


def _validate_append(where: str, before: str, after: str, stubs: list[str]) -> None:
    """The appended module parses, and what was added is exactly the stubs (and the import)."""
    try:
        tree = ast.parse(after.removeprefix("\ufeff"))
        old = ast.parse(before.removeprefix("\ufeff"))
    except SyntaxError as error:
        raise Sl2sError(
            Diagnostic(where, error.lineno or 0, f"cannot append stubs: {error.msg}")
        ) from None
    new_nodes = tree.body[len(old.body) :]
    kinds = [type(n).__name__ for n in new_nodes]
    expected = ["ImportFrom" if s == STEP_IMPORT else "FunctionDef" for s in stubs]
    if kinds != expected:
        raise Sl2sError(
            Diagnostic(where, 0, "sl2s could not append the step stubs cleanly")
        )
