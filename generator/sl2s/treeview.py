"""A plan's projection as its generated tree sees it: which machines use which secrets comes from
the step functions in the user's modules (a step that takes `password` makes the secret travel to
its machine), so `sl2s show PLAN --tree DIR` draws the same hops as `DIR/PLAN.md`.

The reading is `sl2s generate`'s own (`generate.core.generate` over the tree's user modules); it
writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from sl2s.projection import Projection, project


def tree_of(plan: Path, default: Path = Path("services")) -> Path | None:
    """`default` when it is the tree generated from `plan` (its lock names that plan), else None."""
    try:
        lock = json.loads((default / "sl2s.lock.json").read_text(encoding="utf-8"))
        named = (default / lock["plan"]["path"]).resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return default if named == plan.resolve() else None


def projection_in_tree(plan_path: Path, tree: Path | None) -> Projection:
    """The projection of the plan at `plan_path`, with the secret uses of `tree`'s code when a
    tree is given. Sl2sError for an invalid plan or unreadable user code."""
    from sl2s.plan import read_plan

    plan = read_plan(str(plan_path))
    if tree is None:
        return project(plan)
    from sl2s.generate.command import plan_ref
    from sl2s.generate.core import generate
    from sl2s.generate.writer import read_user_modules

    generation = generate(
        plan,
        plan_ref=plan_ref(plan_path, tree),
        user_modules=read_user_modules(tree),
        prefix=f"{tree.as_posix().rstrip('/')}/",
    )
    return generation.projection if generation.projection is not None else project(plan)
