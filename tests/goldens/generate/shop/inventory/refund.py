"""Steps of flow 'refund' that run on machine 'inventory'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("refund", "Releasing reservation :reservation_id back to stock")
def releasing_reservation_reservation_id_back_to_stock(reservation_id: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
