"""Steps of flow 'add_to_cart' that run on machine 'web'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("add_to_cart", "Received add-to-cart request for :sku")
def received_add_to_cart_request_for_sku(sku: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("add_to_cart", "Recording cart view for :cart_id")
def recording_cart_view_for_cart_id(cart_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
