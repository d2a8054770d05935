"""`Run`, an activation of a machine in a flow run, split by concern (see steps.py)."""

from sl2s.runtime.core.run.steps import Run

__all__ = ["Run"]
