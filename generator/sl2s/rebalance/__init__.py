"""`sl2s rebalance`: move step functions between user modules when the plan moves a step.

`move` is the pure engine for one pair of modules; `journal` applies a set of file changes
all-or-nothing.
"""
