"""Steps of flow 'refund' that run on machine 'web'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("refund", "Refund requested for order :order_id by :agent")
def refund_requested_for_order_order_id_by_agent(
    order_id: object, agent: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("refund", "Recording refund :refund_id on order :order_id")
def recording_refund_refund_id_on_order_order_id(
    refund_id: object, order_id: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("refund", "Marking order :order_id as refunded")
def marking_order_order_id_as_refunded(order_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("refund", "Refund of order :order_id complete")
def refund_of_order_order_id_complete(order_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
