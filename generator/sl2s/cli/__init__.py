"""The `sl2s` command line. Each module here registers its commands on `app`; see app.py.

Imported in the order `sl2s --help` lists the commands: the plan, the code, running it, reading
what happened.
"""

# ruff: noqa: I001  (the order of these imports is the order of `sl2s --help`)

from sl2s.cli.app import app, main
from sl2s.cli import init as _init  # noqa: F401  (init)
from sl2s.cli import plan as _plan  # noqa: F401  (check, show, diff)
from sl2s.cli import generate as _generate  # noqa: F401  (generate)
from sl2s.cli import rebalance as _rebalance  # noqa: F401  (rebalance)
from sl2s.cli import run as _run  # noqa: F401  (run)
from sl2s.cli import flows as _flows  # noqa: F401  (flows list/show/resume/cancel)
from sl2s.cli import serve as _serve  # noqa: F401  (serve, up, deploy)
from sl2s.cli import observe as _observe  # noqa: F401  (story, patterns, incidents)
from sl2s.cli import errors as _errors  # noqa: F401  (errors, deploys)
from sl2s.cli import watch as _watch  # noqa: F401  (watch)
from sl2s.cli import console as _console  # noqa: F401  (console)

__all__ = ["app", "main"]
