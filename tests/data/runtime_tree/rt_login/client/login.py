"""Steps of flow 'login' that run on machine 'client'."""

from sl2s.runtime import step


@step("login", "User attempted login as :username and #password")
def user_attempted_login_as_username_and_password(username, password):
    return None


@step("login", "Login successful")
def login_successful(session):
    return {"greeting": f"welcome back ({session})"}
