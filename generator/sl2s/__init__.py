"""sl2s — structured logging to system.

A plan (a CSV of log lines, each on one machine) becomes one Python service per machine; sl2s keeps
that code in step with the plan as the plan changes.
"""

__version__ = "0.1.0"
