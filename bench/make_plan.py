"""A synthetic plan for benchmarks: `python bench/make_plan.py OUT.csv [ROWS FLOWS MACHINES]`.

Default 10,000 rows, 500 flows, 20 machines. Deterministic (seeded): the same arguments give the
same bytes. Each flow's rows hop between a few machines (calls and returns), templates carry one
to three fields, and some flows pass a secret.
"""

from __future__ import annotations

import random
import sys

WORDS = (
    "fetching loading checking sending storing validating rendering queueing charging "
    "reserving releasing recording refreshing resolving indexing scoring notifying"
).split()
NOUNS = "order cart user session invoice payment report feed token profile stock email".split()
FIELDS = (
    "order_id cart_id user_id session_id amount sku email status region locale".split()
)


def make_plan(
    rows: int = 10_000, flows: int = 500, machines: int = 20, seed: int = 7
) -> str:
    rnd = random.Random(seed)
    names = [f"machine{m:02d}" for m in range(machines)]
    lines = ["request,log,machine"]
    per_flow = [rows // flows + (1 if f < rows % flows else 0) for f in range(flows)]
    for f, count in enumerate(per_flow):
        flow = f"flow{f:04d}"
        cast = rnd.sample(names, k=min(len(names), rnd.randint(2, 4)))
        secret = rnd.random() < 0.2
        machine = cast[0]
        for s in range(count):
            if s and rnd.random() < 0.4:
                machine = rnd.choice(cast)
            fields = rnd.sample(FIELDS, k=rnd.randint(1, 3))
            text = (
                f"{rnd.choice(WORDS).capitalize()} {rnd.choice(NOUNS)} {s} for "
                + " and ".join(f":{name}" for name in fields)
            )
            if secret and s == 0:
                text += " with #api_key"
            lines.append(f"{flow},{text},{machine}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    out = argv[1]
    numbers = [int(a) for a in argv[2:5]]
    with open(out, "w", encoding="utf-8", newline="") as handle:
        handle.write(make_plan(*numbers))


if __name__ == "__main__":
    main(sys.argv)
