"""`sl2s check`, `sl2s show`, `sl2s diff`: validate a plan, render its projection, compare two plans."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from sl2s.cli.app import app, report, usage
from sl2s.diagnostics import Sl2sError


class ShowFormat(str, Enum):
    text = "text"
    mermaid = "mermaid"
    markdown = "markdown"


class DiffFormat(str, Enum):
    text = "text"
    markdown = "markdown"


@app.command("check")
def check(
    plans: list[str] = typer.Argument(
        ..., metavar="PLAN", help="Plan files (CSV/TSV) to check."
    ),
) -> None:
    """Check that each PLAN is valid and can be projected onto its machines.

    For each valid plan prints one line, e.g. `login.csv: 2 flows, 8 steps, 2 machines, 4 hops`.
    Every problem of every plan is printed to stderr as `FILE:LINE: message`.

    Exit status: 0 when all plans are valid, 1 when any is not.
    """
    from sl2s.plan import read_plan
    from sl2s.projection import project, summary

    failed = False
    for path in plans:
        try:
            projection = project(read_plan(path))
        except Sl2sError as error:
            report(error)
            failed = True
            continue
        typer.echo(str(summary(projection)))
    raise typer.Exit(1 if failed else 0)


@app.command("show")
def show_plan(
    plan: str = typer.Argument(..., metavar="PLAN", help="The plan file."),
    format: ShowFormat = typer.Option(
        ShowFormat.text,
        "--format",
        "-f",
        case_sensitive=False,
        help="text: flows with their segments, plan lines and hops; mermaid: a sequence diagram "
        "(GitHub renders it); markdown: heading, diagram and step table, as in PLAN.md.",
    ),
    tree: Path | None = typer.Option(
        None,
        "--tree",
        metavar="DIR",
        help="The tree generated from PLAN: secrets travel to the machines whose steps take them, "
        "as in DIR/PLAN.md (default: services/ when it was generated from PLAN).",
    ),
) -> None:
    """Show how PLAN runs across its machines: who calls whom, when, and with which fields.

    Exit status: 0 on success, 1 when the plan is invalid (problems are printed as `FILE:LINE: message`).
    """
    from sl2s import show
    from sl2s.treeview import projection_in_tree, tree_of

    if tree is not None and not tree.is_dir():
        usage(f"--tree {tree}: no such directory")
    try:
        projection = projection_in_tree(Path(plan), tree or tree_of(Path(plan)))
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    typer.echo(show.render(projection, format.value), nl=False)


@app.command("diff")
def diff(
    old: str = typer.Argument(..., metavar="OLD", help="The plan before the change."),
    new: str = typer.Argument(..., metavar="NEW", help="The plan after the change."),
    format: DiffFormat = typer.Option(
        DiffFormat.text,
        "--format",
        "-f",
        case_sensitive=False,
        help="text for a terminal; markdown for a pull-request comment.",
    ),
) -> None:
    """Show what changed from plan OLD to plan NEW, flow by flow.

    Reports steps added, removed, renamed (text or id changed), moved to another machine or
    reordered; hops added and removed; fields and secrets that now reach a machine they did not
    reach before. Comments, blank lines, delimiters and line numbers do not count.

    Exit status, like diff(1): 0 when the plans are the same, 1 when they differ, 2 when either
    plan cannot be read or is invalid (problems are printed as `FILE:LINE: message`).
    """
    from sl2s import plandiff
    from sl2s.plan import read_plan
    from sl2s.projection import project

    problems: list[Sl2sError] = []
    plans = []
    for path in (old, new):
        try:
            plans.append(read_plan(path))
            project(
                plans[-1]
            )  # every problem of both plans is reported, not only the first's
        except Sl2sError as error:
            problems.append(error)
    if problems:
        for problem in problems:
            report(problem)
        raise typer.Exit(2)
    changes = plandiff.diff_plans(plans[0], plans[1])
    typer.echo(plandiff.render(changes, format.value), nl=False)
    raise typer.Exit(0 if changes.empty else 1)
