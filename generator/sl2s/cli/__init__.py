"""The `sl2s` command line. Each module here registers its commands on `app`; see app.py."""

from sl2s.cli.app import app, main

__all__ = ["app", "main"]
