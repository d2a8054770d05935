"""Steps of flow 'feed' that run on machine 'client'."""

from sl2s.runtime import step


@step("feed", "Fetching feed information")
def fetching_feed_information():
    return None
