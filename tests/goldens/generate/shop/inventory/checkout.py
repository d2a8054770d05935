"""Steps of flow 'checkout' that run on machine 'inventory'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("checkout", "Reserving stock for cart :cart_id")
def reserving_stock_for_cart_cart_id(cart_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("checkout", "Reserved :item_count items; reservation :reservation_id")
def reserved_item_count_items_reservation_reservation_id(
    item_count: object, reservation_id: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None
