"""Jinja rendering of the generated files, one top-level chunk at a time.

Templates come from the package data `sl2s.templates` only (importlib.resources), with
StrictUndefined and autoescape off. Plan text reaches code only through `lit` (see encode.py), and
comments only through `inner`; identifiers come from sl2s.names (via the plan and the projection).
Output is black-formatted by construction for the common case; blackcheck.py verifies it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources

import jinja2

from sl2s.generate.encode import bracket, inner, lit
from sl2s.projection import Activation, Call, Return, RunStep

# The separator black puts between top-level definitions.
JOIN = "\n\n"


def py(value: object) -> str:
    """A plan-derived value as Python source: str via `lit`, None, or a tuple of str."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return lit(value)
    if isinstance(value, tuple):
        if len(value) == 1:
            return f"({py(value[0])},)"
        return "(" + ", ".join(py(v) for v in value) + ")"
    raise TypeError(f"cannot encode {type(value).__name__}")


def _load(name: str):
    source = (
        resources.files("sl2s.templates").joinpath(name).read_text(encoding="utf-8")
    )
    return source, None, lambda: True


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters.update(
        lit=lit,
        inner=inner,
        py=py,
        kw_unset=lambda name: f"{name}=UNSET",
        kw_self=lambda name: f"{name}={name}",
    )
    env.globals.update(bracket=bracket)
    return env


def template(name: str) -> jinja2.Template:
    return environment().get_template(name)


def join(header: str, chunks: Sequence[str]) -> str:
    """A Python file: its header, then each top-level definition after two blank lines."""
    return header + "".join(JOIN + chunk for chunk in chunks)


# --- user modules ------------------------------------------------------------------------------


def user_module_header(flow: str, machine: str) -> str:
    return template("user_module.py.j2").render(flow=flow, machine=machine)


def stub(step, function: str, types: Mapping[str, str] | None = None) -> str:
    """One step stub: the @step decorator, params = the fields the step's log line needs, each
    annotated with the type the flow's other steps give it (`object` when none does)."""
    types = types or {}
    return template("stub.py.j2").render(
        flow=step.flow,
        template=step.template,
        id=step.id,
        explicit_id=step.explicit_id,
        function=function,
        params=[f"{p}: {types.get(p, 'object')}" for p in step.placeholders],
    )


# --- wiring ------------------------------------------------------------------------------------


def _op(op) -> dict:
    if isinstance(op, RunStep):
        return {"kind": "step", "step": op.step.id}
    if isinstance(op, Call):
        return {
            "kind": "call",
            "target": op.target,
            "at": op.at,
            "resume_at": op.resume_at,
            "secrets": tuple(op.secrets),
        }
    if isinstance(op, Return):
        return {
            "kind": "return",
            "target": op.target,
            "resume_at": op.resume_at,
            "secrets": tuple(op.secrets),
        }
    raise TypeError(f"unknown op {op!r}")


def wiring_header(
    machine: str,
    machine_var: str,
    imports: Sequence[str],
    typing_imports: Sequence[str],
    plan_ref: str,
    version: str,
) -> str:
    return template("wiring.py.j2").render(
        machine=machine,
        machine_var=machine_var,
        imports=list(imports),
        typing_imports=list(typing_imports),
        plan_ref=plan_ref,
        version=version,
    )


def docstring(text: str, indent: str = "    ") -> str:
    """A one-line docstring, or, when that is longer than black's 88 columns, its words
    wrapped (plan identifiers are at most 60 characters: no word is too long)."""
    one = f'{indent}"""{text}"""'
    if len(one) <= 88:
        return one
    lines: list[str] = []
    line = f'{indent}"""'
    for word in text.split(" "):
        if len(line) + 1 + len(word) > 84 and not line.endswith('"""'):
            lines.append(line)
            line = indent + word
        else:
            line = line + ("" if line.endswith('"""') else " ") + word
    lines.append(line + '"""')
    return "\n".join(lines)


def context(flow: str, name: str, fields: Sequence[tuple[str, str]]) -> str:
    """The TypedDict of a flow's context: every field, typed as the step functions annotate it."""
    return template("context.py.j2").render(
        name=name,
        doc=docstring(
            f"The context of flow '{flow}': its fields as the step functions type them."
        ),
        fields=list(fields),
    )


def entry(
    activation: Activation,
    function: str,
    fields: Sequence[tuple[str, str | None]],
    machine_var: str,
    context: str,
    cast: str,
) -> str:
    """An entry function; `fields`: (name, annotation or None) of each keyword parameter."""
    return template("entry.py.j2").render(
        flow=activation.flow,
        machine=activation.machine,
        function=function,
        fields=[f for f, _ in fields],
        params=[
            f"{f}: {t} | Unset = UNSET" if t else f"{f}: object = UNSET"
            for f, t in fields
        ],
        machine_var=machine_var,
        context=context,
        cast=cast,
        doc=docstring(
            f"Run flow '{activation.flow}' from machine '{activation.machine}'; "
            "return the final context."
        ),
        items=[_op(op) for op in activation.ops],
    )


def segment(activation: Activation, function: str, machine_var: str) -> str:
    ops = activation.ops
    return template("segment.py.j2").render(
        flow=activation.flow,
        at=activation.at,
        function=function,
        machine_var=machine_var,
        items=[_op(op) for op in ops],
        returns=bool(ops) and isinstance(ops[-1], Return),
    )


# --- package files -----------------------------------------------------------------------------


def isort_key(name: str) -> list[str | int]:
    """How isort (and ruff's I rules) order imported names: case-folded, numbers by value."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name.lower())]


def _sequence(head: str, items: Sequence[str], open_: str, close: str) -> str:
    """`head[items]` (or a tuple) laid out as black lays out a collection literal."""
    if open_ == "(" and len(items) == 1:
        one = f"{head}({items[0]},)"
        if len(one) <= 88:
            return one
    one = f"{head}{open_}{', '.join(items)}{close}"
    if len(one) <= 88:
        return one
    middle = "    " + ", ".join(items)
    if len(middle) <= 88 and len(items) > 1:
        return f"{head}{open_}\n{middle}\n{close}"
    body = "".join(f"    {item},\n" for item in items)
    return f"{head}{open_}\n{body}{close}"


def machine_init(
    machine: str,
    modules: Sequence[str],
    entries: Sequence[str],
    plan_ref: str,
    version: str,
) -> str:
    """The machine's package: imports its flow modules (for their @step functions, under
    private names: a flow that starts here has an entry function of the same name) and its
    wiring, and exports the entry functions. Imports are in isort order (ruff's I rules).
    """
    modules = sorted(modules, key=isort_key)
    entries = sorted(entries, key=isort_key)
    aliases = [f"_{m}_steps" for m in modules]
    one = "from ._wiring import " + ", ".join(entries)
    if len(one) <= 88:
        entry_import = one
    else:
        entry_import = _sequence("from ._wiring import ", entries, "(", ")")
    exports = _sequence("__all__ = ", [lit(e) for e in entries], "[", "]")
    loaded = _sequence("_LOADED = ", [*aliases, "_wiring"], "(", ")")
    return template("machine_init.py.j2").render(
        machine=machine,
        modules=list(zip(modules, aliases)),
        entries=entries,
        entry_import=entry_import if entries else "",
        exports=exports if entries else "",
        loaded=loaded,
        plan_ref=plan_ref,
        version=version,
    )


def services_init(plan_ref: str, version: str) -> str:
    return template("services_init.py.j2").render(plan_ref=plan_ref, version=version)


def gitattributes(version: str) -> str:
    return template("gitattributes.j2").render(version=version)


def plan_md(body: str, version: str) -> str:
    return template("plan_md.j2").render(body=body.rstrip("\n"), version=version)
