"""Steps of flow 'abc' that run on machine 'b'. `mode` (a field) makes them misbehave on purpose."""

from sl2s.runtime import step


class Opaque:
    """Not JSON data."""


@step("abc", "B2 sees :x and #key", id="b2")
def b2(x, key, trail, mode):
    if mode == "not_a_mapping":
        return ["b2"]
    if mode == "unsafe_field":
        return {"trail": trail + ["b2"], "handle": Opaque()}
    if mode == "unsafe_secret":
        return {"trail": trail + ["b2"], "key": {"opaque": Opaque()}}
    if mode == "copy_secret":
        return {"trail": trail + ["b2"], "note": f"the key is {key}"}
    if mode == "rotate_key":
        return {"trail": trail + ["b2"], "key": key + "-rotated"}
    return {"trail": trail + ["b2"]}


@step("abc", "B5 finishes :y", id="b5")
def b5(trail):
    return {"trail": trail + ["b5"], "y": 5}
