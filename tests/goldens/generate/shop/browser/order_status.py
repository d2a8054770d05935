"""Steps of flow 'order_status' that run on machine 'browser'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("order_status", "Checking the status of order :order_id")
def checking_the_status_of_order_order_id(order_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("order_status", "Showing status :status of order :order_id")
def showing_status_status_of_order_order_id(status: object, order_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
