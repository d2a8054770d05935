"""Log template mining: the options (similarity, depth, masks), the miner, and how it is measured.

Lines are masked before mining — each mask replaces a whole token-like value with `*`, Drain's
wildcard too — then mined with Drain (drain3). The defaults were chosen by measuring grouping
accuracy (`grouping_accuracy`, Zhu et al. 2019) on the 16 public Loghub 2k samples with one set
of options for all (bench/bench_patterns_loghub.py prints the table; README "Performance").

Named masks (`MiningOptions.masks`, applied in this order):

| name | replaces |
|---|---|
| `url` | URLs (`scheme://…` up to a space or a quote) |
| `date` | dates written out (`Sat Jul  9 22:53:19 2005`, `Jul 9 22:53`) |
| `uuid` | UUIDs |
| `ip` | IPv4 addresses, with a port |
| `hex` | `0x…` literals |
| `hexid` | hex ids and digests of 8+ characters (with a digit) |
| `hostport` | dotted names with a port (`api.github.com:443`, `csdnimg.cn:80`) |
| `host` | dotted names of 3+ labels (`proxy.example.com`, `com.apple.cts`), with a port |
| `path` | absolute paths of 2+ components (`/var/log/app`) |
| `number` | numbers, with a short unit (`12ms`, `3.5`, `-7`, `40%`) |
| `digits` | any other token holding a digit (`blk_-1608999687`, `node-129`, `HTTP/1.1`); tokens end at spaces and `= : ; , | ( ) [ ] " '` |

With `digits` on, `uuid`, `ip`, `hex`, `hexid` and `number` are not applied: every value they
match holds a digit, so `digits` masks it too (and the pieces are joined below), in one cheaper
pass.

plus any regular expressions of the user's (`extra_masks`), applied after them.

Masked values joined by punctuation (`10.0.0.1,10.0.0.2`, `12:30:01`) become one value, and so
does a value with a unit abbreviation after it (`18.4 KB`, `<1 sec`; `UNITS`). While mining, a
masked value is the token `<*>`, which Drain compares like any other token (so a line of mostly
numbers still matches its template); templates show it, and Drain's own wildcard, as `*`.

After Drain, clusters whose templates differ only in their value tokens — an optional `(<*>)`,
two ids instead of three, so another number of tokens, which Drain never compares — are one
pattern (`shape`, `add_line`): the first cluster of that shape. A word that differed between
lines (Drain's `*`) is not a value: `… rhost=<*>` and `… rhost=<*> user=root` stay two.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

NAMED_MASKS = {
    # a date written out (`Sat Jul  9 22:53:19 2005`, `Jul 9 22:53:19`): one value
    "date": r"(?<!\w)(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? +)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
    r"|Sep|Oct|Nov|Dec) +\d{1,2},? +(?:\d{4} +)?\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?: +\d{4})?(?!\w)",
    # a URL (`https://example.com/a?b=1`, `x-coredata://DB05/p11`), up to a space or a quote; a
    # final `.,:;)` is not part of it
    "url": r"(?<![\w.+-])[A-Za-z][\w+.-]*://[^\s\"'<>]*[^\s\"'<>.,:;)]",
    "uuid": r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
    "ip": r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.])",
    "hex": r"(?<![\w])0x[0-9a-fA-F]+\b",
    "hexid": r"(?<![\w])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}(?![\w])",
    "host": r"(?<![\w.-])(?:[A-Za-z0-9-]+\.){2,}[A-Za-z]{2,}(?::\d+)?(?![\w.-])",
    "path": r"(?<![\w])(?:/[\w.@-]+){2,}/?",
    # a dotted name with a port (`api.github.com:443`, `csdnimg.cn:80`): an address
    "hostport": r"(?<![\w.-])(?:[A-Za-z0-9-]+\.)+[a-z]{2,6}:\d+(?![\w.])",
    "number": r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[a-zA-Z%]{0,3})(?![\w.])",
    # any token holding a digit (tokens end at spaces and = : ; , | ( ) [ ] " '): blk_-1608999687,
    # node-129, R02-M1-N0, 3.2.1
    "digits": r"(?<![^\s=:;,|()\[\]\"'])[^\s=:;,|()\[\]\"']*\d[^\s=:;,|()\[\]\"']*",
}
_SUBSUMED_BY_DIGITS = (
    "uuid",
    "ip",
    "hex",
    "hexid",
    "number",
)  # values (nearly) always with a digit
DEFAULT_MASKS = (
    "url",
    "date",
    "uuid",
    "ip",
    "hex",
    "hexid",
    "hostport",
    "host",
    "number",
    "digits",
)
DEFAULT_SIMILARITY = 0.8
DEFAULT_DEPTH = 5


@dataclass(frozen=True)
class MiningOptions:
    similarity: float = DEFAULT_SIMILARITY
    depth: int = DEFAULT_DEPTH
    masks: tuple[str, ...] = DEFAULT_MASKS
    extra_masks: tuple[str, ...] = ()

    def check(self) -> MiningOptions:
        """Self, or a ValueError saying what is wrong (an unknown mask, a bad regex, a range)."""
        if not 0.0 < self.similarity <= 1.0:
            raise ValueError(f"similarity {self.similarity}: must be in (0, 1]")
        if not 3 <= self.depth <= 12:
            raise ValueError(f"depth {self.depth}: must be 3 to 12")
        unknown = [m for m in self.masks if m not in NAMED_MASKS]
        if unknown:
            raise ValueError(
                f"unknown mask {unknown[0]!r} (masks: {', '.join(NAMED_MASKS)})"
            )
        for pattern in self.extra_masks:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"mask regex {pattern!r}: {error}") from None
        return self

    def regexes(self) -> list[str]:
        names = self.masks
        if (
            "digits" in names
        ):  # it masks every token these would (and joins the pieces): skip them
            names = tuple(m for m in names if m not in _SUBSUMED_BY_DIGITS)
        return [NAMED_MASKS[m] for m in names] + list(self.extra_masks)

    def as_dict(self) -> dict:
        return {
            "similarity": self.similarity,
            "depth": self.depth,
            "masks": list(self.masks),
            "extra_masks": list(self.extra_masks),
        }


def parse_masks(text: str | None) -> tuple[str, ...]:
    """`uuid,ip,number` -> the names; `default` (or None) -> DEFAULT_MASKS; `none` -> ()."""
    if text is None or text.strip() in ("", "default"):
        return DEFAULT_MASKS
    if text.strip() == "none":
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def make_miner(options: MiningOptions | None = None, state: str | None = None):
    """A drain3 TemplateMiner for `options`, optionally restored from `miner_state`'s text."""
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    options = options or MiningOptions()
    config = TemplateMinerConfig()
    config.mask_prefix = ""
    config.mask_suffix = ""
    config.masking_instructions = []  # masked before, in one pass (`masker`)
    config.drain_sim_th = options.similarity
    config.drain_depth = options.depth
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    # a line's key (the text, or the text with its digits as 0 — `sl2s_key` — when no mask
    # depends on which digits a value holds) -> the Drain cluster it joined (`add_line`)
    miner.sl2s_seen = {}
    miner.sl2s_key = (
        _digits_as_zero
        if "digits" in options.masks and not options.extra_masks
        else None
    )
    miner.sl2s_aliases = {}  # cluster id -> the cluster it is merged into (`add_line`)
    miner.sl2s_shapes = (
        {}
    )  # a template's shape (`shape`) -> the first cluster of that shape
    if state:
        import jsonpickle

        loaded = jsonpickle.loads(
            zlib.decompress(base64.b64decode(state)).decode(), keys=True
        )
        miner.drain.id_to_cluster = loaded.id_to_cluster
        miner.drain.clusters_counter = loaded.clusters_counter
        miner.drain.root_node = loaded.root_node
        for cluster_id in sorted(miner.drain.id_to_cluster):
            _merge(miner, miner.drain.id_to_cluster[cluster_id])
    return miner


# What a mask puts in place while mining: not Drain's wildcard (`*`), so that masked values count
# as equal tokens in Drain's similarity (a line of mostly numbers still matches its template);
# shown as `*` (`shown`).
MASK_TOKEN = "<*>"
# unit abbreviations a value may be followed by (`18.4 KB`, `3 sec`): part of the value
UNITS = "[KMGTP]i?B|secs?"


def masker(options: MiningOptions | None = None):
    """`text -> text` with every mask's matches replaced by MASK_TOKEN: one regex, one pass (the
    masks as alternatives, in their order: at each position the first that matches wins).
    """
    regexes = (options or MiningOptions()).regexes()
    if not regexes:
        return lambda text: text
    combined = re.compile("|".join(f"(?:{r})" for r in regexes))
    token = re.escape(MASK_TOKEN)
    # values joined by punctuation (`10.0.0.1,10.0.0.2`, `12:30`) are one value, and so is a
    # value with its unit (`18.4 KB`, `<1 sec`)
    joined = re.compile(f"{token}(?:[,;:/._-]+{token}|\\s?(?:{UNITS})(?![\\w]))+")

    only_digits = regexes == [NAMED_MASKS["digits"]]
    has_digit = re.compile(r"\d").search

    def mask(text: str) -> str:
        if only_digits and not has_digit(text):
            return text  # nothing for the digits mask to do
        masked = combined.sub(MASK_TOKEN, text)
        return joined.sub(MASK_TOKEN, masked) if MASK_TOKEN in masked else masked

    return mask


def shown(template: str) -> str:
    """A mined template or masked text as shown: masked values and wildcards alike are `*`."""
    return template.replace(MASK_TOKEN, "*")


def is_value(token: str) -> bool:
    """A template token that is only masked values and punctuation (`<*>`, `(<*>)`, `<*>,`);
    not Drain's wildcard `*` (a word that differed between lines, e.g. `user=root`)."""
    return MASK_TOKEN in token and not any(
        c.isalnum() or c == "*" for c in token.replace(MASK_TOKEN, "")
    )


def shape(tokens) -> tuple[str, ...]:
    """A template without its value tokens: two templates of one shape differ only in values
    (their number too: an optional `(<*>)`, a list of 2 or 3 ids) and are one pattern.
    """
    return tuple(t for t in tokens if not is_value(t))


def _merge(miner, cluster) -> int:
    """The cluster `cluster` is one pattern with: itself, or the first cluster of its shape."""
    aliases = miner.sl2s_aliases
    cluster_id = cluster.cluster_id
    if cluster_id in aliases:
        return resolve(aliases, cluster_id)
    first = resolve(
        aliases,
        miner.sl2s_shapes.setdefault(shape(cluster.log_template_tokens), cluster_id),
    )
    if first != cluster_id:
        aliases[cluster_id] = first
    return first


def resolve(aliases: dict[int, int], cluster_id: int) -> int:
    """The cluster `cluster_id` is merged into, following merges of merges."""
    seen = 0
    while cluster_id in aliases and seen < len(aliases):
        cluster_id = aliases[cluster_id]
        seen += 1
    return cluster_id


_ZEROS = str.maketrans("123456789", "000000000")
SEEN_LINES = (
    100_000  # lines remembered by `add_line` (then forgotten, and remembered anew)
)


def _digits_as_zero(text: str) -> str:
    return text.translate(_ZEROS)


def add_line(miner, mask, text: str) -> int:
    """Mine one line (masked with `mask`); the id of its pattern: the cluster it joined or
    started, or the first cluster of the same shape (`shape`) when that is another.

    A line seen before joins the same cluster without being masked and mined again: the same
    text, or — with the `digits` mask and no user masks, where no mask depends on which digits a
    value holds — the same text up to its digits (the same masked line). Drain would find that
    cluster again (its template already covers the line), unless the tree's routing changed since,
    which takes a node with 100 children (Drain then routes new tokens to a wildcard child).
    """
    seen = miner.sl2s_seen
    key = text if miner.sl2s_key is None else miner.sl2s_key(text)
    cluster = seen.get(key)
    if cluster is not None:
        cluster.size += 1
        return resolve(miner.sl2s_aliases, cluster.cluster_id)
    cluster, change = miner.drain.add_log_message(mask(text))
    if len(seen) >= SEEN_LINES:
        seen.clear()
    seen[key] = cluster
    if change == "none":
        return resolve(miner.sl2s_aliases, cluster.cluster_id)
    return _merge(miner, cluster)


def miner_state(miner) -> str:
    import jsonpickle

    return base64.b64encode(
        zlib.compress(jsonpickle.dumps(miner.drain, keys=True).encode())
    ).decode()


def grouping_accuracy(truth: Sequence[object], predicted: Sequence[object]) -> float:
    """Zhu et al. 2019: the share of lines whose predicted group holds exactly the lines of its
    true group (a line counts only when its whole group was found, nothing more, nothing less).
    """
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    if not truth:
        return 1.0
    true_groups: dict[object, set[int]] = {}
    predicted_groups: dict[object, set[int]] = {}
    for i, (t, p) in enumerate(zip(truth, predicted)):
        true_groups.setdefault(t, set()).add(i)
        predicted_groups.setdefault(p, set()).add(i)
    correct = 0
    for members in predicted_groups.values():
        first = next(iter(members))
        if true_groups[truth[first]] == members:
            correct += len(members)
    return correct / len(truth)
