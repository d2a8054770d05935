"""Steps of flow 'checkout' that run on machine 'web'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("checkout", "Received checkout request for cart :cart_id")
def received_checkout_request_for_cart_cart_id(cart_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("checkout", "Pricing cart :cart_id at :amount_cents cents")
def pricing_cart_cart_id_at_amount_cents_cents(
    cart_id: object, amount_cents: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("checkout", "Created order :order_id for cart :cart_id")
def created_order_order_id_for_cart_cart_id(order_id: object, cart_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("checkout", "Checkout of cart :cart_id finished as order :order_id")
def checkout_of_cart_cart_id_finished_as_order_order_id(
    cart_id: object, order_id: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None
