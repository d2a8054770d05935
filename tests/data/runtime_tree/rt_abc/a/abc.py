"""Steps of flow 'abc' that run on machine 'a'."""

from sl2s.runtime import step


@step("abc", "A1 starts with :x and #key in :mode", id="a1")
def a1(x, key, mode):
    return {"trail": ["a1"]}


@step("abc", "A4 after :trail", id="a4")
def a4(trail):
    return {"trail": trail + ["a4"]}


@step("abc", "A6 done with :y", id="a6")
def a6(trail, y):
    return {"trail": trail + ["a6"]}
