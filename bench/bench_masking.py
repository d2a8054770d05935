"""What masking secrets costs per step: the same steps in a flow without secrets and in one with a
secret in the context, measured in the same run.

    python bench/bench_masking.py [--steps N] [--repeat R]

Two flows of one machine with the same steps; they differ only in the first step's template, which
names `card` as a `:field` in flow `open` and as a `#secret` in flow `guarded`. After that first
step, each round runs the same two steps many times in each flow:

- `note`: sets one string field (`{"note": "order for ann"}`, the runtime's inline path);
- `order`: sets a string and a small nested dict (`_merge_result`).

With the secret, each value a step sets is masked by value (sl2s.runtime.redact: one `in` test per
form of the secret for a string, a walk of the nested dict) and each step's serialised fields are
checked once for a stale mirror (`Masker.stale`, in C). CPU time (`time.process_time`), the two
flows interleaved in each of R rounds; prints the best round of each (microseconds per step) and
the masking's cost as a share of the step without secrets. Target: <= 10 %.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time


def write_system(root: str) -> None:
    package = os.path.join(root, "maskbench")
    os.makedirs(os.path.join(package, "shop"))
    open(os.path.join(package, "__init__.py"), "w").close()
    with open(os.path.join(package, "shop", "__init__.py"), "w") as f:
        f.write(
            "from . import open_flow, guarded  # noqa\nfrom . import _wiring  # noqa\n"
        )
    steps = """
        @step("{flow}", "Noting :note for :username", id="note")
        def note(username):
            return {{"note": "order for ann"}}


        @step("{flow}", "Ordering :item for :username", id="order")
        def order(item, username):
            return {{"item": "book", "order": {{"items": ["book", "pen"], "total": 12}}}}
        """
    for module, flow, card in (
        ("open_flow", "open", ":card"),
        ("guarded", "guarded", "#card"),
    ):
        with open(os.path.join(package, "shop", f"{module}.py"), "w") as f:
            f.write(textwrap.dedent(f"""
                    from sl2s.runtime import step


                    @step("{flow}", "User :username pays with {card}", id="start")
                    def start(username, card):
                        return None
                    """) + textwrap.dedent(steps.format(flow=flow)))
    with open(os.path.join(package, "shop", "_wiring.py"), "w") as f:
        f.write(
            "from sl2s.runtime import Machine\n\n"
            'machine = Machine(__name__, "shop")\n'
        )


def bench_flow(flow: str, steps: int) -> float:
    from maskbench.shop._wiring import machine

    # the open flow's card is as long as the mask, so both flows write events of the same size
    card = "4111-1111-1111-1111" if flow == "guarded" else "411"
    run = machine.start(flow, username="ann", card=card, item="book")
    run.step("start")
    assert ("card" in run.secret_names) == (flow == "guarded")
    step = run.step
    start = time.process_time()
    for _ in range(steps // 2):
        step("note")
        step("order")
    elapsed = time.process_time() - start
    run.finish()
    return elapsed / (steps // 2 * 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        write_system(root)
        sys.path.insert(0, root)
        os.environ["SL2S_LOG_DIR"] = os.path.join(root, "logs")
        os.environ["SL2S_INCIDENTS"] = "0"
        os.environ.setdefault("SL2S_STORE", "none")
        os.environ.pop("SL2S_TRANSPORT", None)
        from sl2s.runtime import hooks

        for listener in hooks.listeners():
            hooks.unsubscribe(listener)
        plain, masked = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine state
            plain.append(bench_flow("open", args.steps))
            masked.append(bench_flow("guarded", args.steps))
        with open(os.path.join(root, "logs", "shop.jsonl"), "rb") as f:
            written = f.read()
        assert b'"card":"411"' in written  # the open flow shows the card ...
        guarded = [line for line in written.splitlines() if b'"guarded"' in line]
        assert guarded, "no event of the guarded flow"
        leaked = [line for line in guarded if b"4111-1111" in line]
        assert not leaked, leaked[0][:600]  # ... the other never
    best_plain, best_masked = min(plain) * 1e6, min(masked) * 1e6
    share = (best_masked - best_plain) / best_plain
    print(f"{'case':<48} {'us/step':>8}")
    print(f"{'step, no secret in the flow (floor)':<48} {best_plain:>8.2f}")
    print(f"{'step, one secret in the flow (masking)':<48} {best_masked:>8.2f}")
    print(
        f"masking cost: {share * 100:+.1f} % of the step without secrets (target <= 10 %); "
        f"{args.steps} steps x {args.repeat} rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
