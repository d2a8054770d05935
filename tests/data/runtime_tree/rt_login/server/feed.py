"""Steps of flow 'feed' that run on machine 'server'."""

from sl2s.runtime import step


@step("feed", "Retrieving feed information")
def retrieving_feed_information():
    return {"items": ["first post", "second post"]}
