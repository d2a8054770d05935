"""Steps of flow 'checkout' that run on machine 'browser'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("checkout", "Customer :customer_id places an order for cart :cart_id")
def customer_customer_id_places_an_order_for_cart_cart_id(
    customer_id: object, cart_id: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("checkout", "Showing confirmation page for order :order_id")
def showing_confirmation_page_for_order_order_id(order_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
