"""Steps of flow 'add_to_cart' that run on machine 'browser'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("add_to_cart", "Adding :sku to cart :cart_id")
def adding_sku_to_cart_cart_id(sku: object, cart_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("add_to_cart", "Showing :sku in cart :cart_id with :stock_level left")
def showing_sku_in_cart_cart_id_with_stock_level_left(
    sku: object, cart_id: object, stock_level: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("add_to_cart", "Cart badge shows :item_count items")
def cart_badge_shows_item_count_items(item_count: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
