"""Steps of flow 'refund' that run on machine 'payments'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("refund", "Refunding payment :payment_id of order :order_id")
def refunding_payment_payment_id_of_order_order_id(
    payment_id: object, order_id: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("refund", "Refund :refund_id issued")
def refund_refund_id_issued(refund_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
