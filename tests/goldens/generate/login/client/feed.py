"""Steps of flow 'feed' that run on machine 'client'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("feed", "Fetching feed information")
def fetching_feed_information() -> None:
    # Not implemented yet: this step does nothing.
    return None
