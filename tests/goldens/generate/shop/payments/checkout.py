"""Steps of flow 'checkout' that run on machine 'payments'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("checkout", "Loading saved card #card_number for customer :customer_id")
def loading_saved_card_card_number_for_customer_customer_id(
    card_number: object, customer_id: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("checkout", "Charging card #card_number :amount_cents cents")
def charging_card_card_number_amount_cents_cents(
    card_number: object, amount_cents: object
) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("checkout", "Payment :payment_id approved")
def payment_payment_id_approved(payment_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
