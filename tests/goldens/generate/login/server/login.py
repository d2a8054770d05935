"""Steps of flow 'login' that run on machine 'server'.

This module is yours. sl2s created it, and afterwards only appends a stub when the plan
gains a step here (`sl2s rebalance` moves whole functions). Steps are found by their
@step decorator: rename functions, add helpers, imports and comments freely. A step
function receives the context fields named by its parameters and returns None or a
mapping of the fields it sets.
"""

from sl2s.api import step


@step("login", "Received request to login as :username")
def received_request_to_login_as_username(username: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("login", "Testing password for :username")
def testing_password_for_username(username: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("login", "Setting session for :username")
def setting_session_for_username(username: object) -> None:
    # Not implemented yet: this step does nothing.
    return None


@step("login", "Finish handling user login")
def finish_handling_user_login() -> None:
    # Not implemented yet: this step does nothing.
    return None
