"""Jinja rendering of the generated files, one top-level chunk at a time.

Templates come from the package data `sl2s.templates` only (importlib.resources), with
StrictUndefined and autoescape off. Plan text reaches code only through `lit` (see encode.py), and
comments only through `inner`; identifiers come from sl2s.names (via the plan and the projection).
Output is black-formatted by construction for the common case; blackcheck.py verifies it.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def stub(step, function: str) -> str:
    """One step stub: the @step decorator, params = the fields the step's log line needs."""
    return template("stub.py.j2").render(
        flow=step.flow,
        template=step.template,
        id=step.id,
        explicit_id=step.explicit_id,
        function=function,
        params=list(step.placeholders),
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
    machine: str, machine_var: str, imports: Sequence[str], plan_ref: str, version: str
) -> str:
    return template("wiring.py.j2").render(
        machine=machine,
        machine_var=machine_var,
        imports=list(imports),
        plan_ref=plan_ref,
        version=version,
    )


def entry(
    activation: Activation, function: str, fields: Sequence[str], machine_var: str
) -> str:
    return template("entry.py.j2").render(
        flow=activation.flow,
        machine=activation.machine,
        function=function,
        fields=list(fields),
        machine_var=machine_var,
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


def machine_init(
    machine: str,
    modules: Sequence[str],
    entries: Sequence[str],
    plan_ref: str,
    version: str,
) -> str:
    return template("machine_init.py.j2").render(
        machine=machine,
        modules=list(modules),
        entries=list(entries),
        plan_ref=plan_ref,
        version=version,
    )


def services_init(plan_ref: str, version: str) -> str:
    return template("services_init.py.j2").render(plan_ref=plan_ref, version=version)


def gitattributes(version: str) -> str:
    return template("gitattributes.j2").render(version=version)


def plan_md(body: str, version: str) -> str:
    return template("plan_md.j2").render(body=body.rstrip("\n"), version=version)
