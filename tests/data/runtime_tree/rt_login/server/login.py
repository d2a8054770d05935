"""Steps of flow 'login' that run on machine 'server'."""

import logging

from sl2s.runtime import step

log = logging.getLogger(__name__)

PASSWORDS = {"ann": "hunter2"}


@step("login", "Received request to login as :username")
def received_request_to_login_as_username(username):
    return None


@step("login", "Testing password for :username")
def testing_password_for_username(username, password):
    log.debug("checking password %s of %s", password, username)  # careless, but scrubbed
    if PASSWORDS.get(username) != password:
        raise PermissionError(f"password {password} is wrong for {username}")
    return {"authenticated": True}


@step("login", "Setting session for :username")
def setting_session_for_username(username, authenticated):
    session = f"s-{username}"
    log.info("session %s created for %s", session, username)
    return {"session": session}


@step("login", "Finish handling user login")
def finish_handling_user_login():
    return None
