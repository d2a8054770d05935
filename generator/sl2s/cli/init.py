"""`sl2s init [DIR]`: parse, delegate to sl2s.newproject, exit."""

from __future__ import annotations

from pathlib import Path

import typer

from sl2s.cli.app import app


@app.command("init")
def init_command(
    directory: Path = typer.Argument(
        Path("."), help="The new project's directory (created when missing)."
    ),
) -> None:
    """Start a new project in DIR: a sample plan (plan.csv), its generated services
    (services/) and a .gitignore that keeps sl2s's .sl2s/ state out of git and the services in.
    Refuses, writing nothing, when DIR already has any of them."""
    from sl2s.newproject import create_project

    create_project(directory, typer.echo)
