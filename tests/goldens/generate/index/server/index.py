"""Steps of flow 'index' that run on machine 'server'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("index", "Received request for the index page from :email")
def received_request_for_the_index_page_from_email(email: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("index", "Queueing welcome email to :email")
def queueing_welcome_email_to_email(email: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("index", "Rendering index page for :email")
def rendering_index_page_for_email(email: object) -> None:
    # Not implemented yet: this step does nothing.
    return None
