"""Plain-text logs for `sl2s patterns --text` and the mining options (issue: errors reach people
first, items 5 and 6)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from observe_tree import clean_env, sl2s

from sl2s.diagnostics import Sl2sError
from sl2s.observe.mining import MiningOptions, grouping_accuracy, masker, shown
from sl2s.observe.textlog import compile_prefix, split_line

APP_LOG = """\
2026-11-23 10:00:01,234 INFO app.web: user 12 logged in from 10.0.0.7
2026-11-23 10:00:02,001 INFO app.web: user 13 logged in from 10.0.0.9
2026-11-23 10:00:02,500 WARNING app.db: slow query took 812ms
2026-11-23 10:00:03,001 INFO app.web: user 14 logged in from 10.0.0.7
"""
NEW_LINE = (
    "2026-11-23 10:05:00,000 ERROR php: PHP Fatal error:  Uncaught Error: Call to undefined "
    "function mysql_connect() in /var/www/shop/db.php:41\n"
)


@pytest.mark.parametrize(
    "line, message, level",
    [
        ("2026-11-23 10:00:01,234 ERROR app.db: disk full", "disk full", "ERROR"),
        (
            "2026-11-23T10:00:01.5Z [worker-3] WARN retrying in 5s",
            "retrying in 5s",
            "WARN",
        ),
        (
            "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster",
            "Invalid user webmaster",
            "INFO",
        ),
        (
            "[Sun Dec 04 04:47:44 2005] [error] mod_jk child in error state 6",
            "mod_jk child in error state 6",
            "ERROR",
        ),
        (
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
            "PacketResponder 1 terminating",
            "INFO",
        ),
        (
            "12 apples fell",
            "12 apples fell",
            "INFO",
        ),  # no timestamp or level: no prefix
        ("plain message: with a colon", "plain message: with a colon", "INFO"),
        # a line that is all prefix is its own message (HPC's `warning`, `critical` lines)
        ("warning", "warning", "WARN"),
        ("critical", "critical", "FATAL"),
    ],
)
def test_default_prefixes_are_stripped(line, message, level):
    found = split_line(line)
    assert (found.message, found.level) == (message, level)


def test_a_configured_prefix_regex_with_message_and_level_groups():
    prefix = compile_prefix(r"(?P<level>[A-Z]+)\|[^|]*\|(?P<message>.*)")
    found = split_line("ERROR|node-7|cannot open /data", prefix)
    assert (found.message, found.level, found.severity) == (
        "cannot open /data",
        "ERROR",
        17,
    )
    assert split_line("no|match", compile_prefix(r"\d+ ")).message == "no|match"
    with pytest.raises(Sl2sError, match="not a regular expression"):
        compile_prefix("(")


def test_patterns_text_json_lists_members_as_file_and_line(tmp_path):
    log = tmp_path / "app.log"
    log.write_text(APP_LOG, encoding="utf-8")
    done = sl2s("patterns", "--text", str(log), "--format", "json", env=clean_env())
    assert done.returncode == 1, done.stderr  # everything is new without a state
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    by_template = {r["template"]: r for r in rows}
    login = by_template["user * logged in from *"]
    assert login["count"] == 3
    assert login["members"] == [f"{log}:1", f"{log}:2", f"{log}:4"]
    assert by_template["slow query took *"]["members"] == [f"{log}:3"]


def test_a_never_seen_line_is_reported_once_with_the_lines_before_it(tmp_path):
    log, state = tmp_path / "app.log", tmp_path / "state.json"
    log.write_text(APP_LOG, encoding="utf-8")
    first = sl2s(
        "patterns", "--text", str(log), "--new-since", str(state), env=clean_env()
    )
    assert first.returncode == 1 and "2 new pattern(s)" in first.stdout
    with log.open("a", encoding="utf-8") as handle:
        handle.write(APP_LOG.splitlines(keepends=True)[0] + NEW_LINE)
    second = sl2s(
        "patterns", "--text", str(log), "--new-since", str(state), env=clean_env()
    )
    assert second.returncode == 1, second.stderr
    lines = second.stdout.splitlines()
    assert lines[0].startswith(
        "NEW  log line  1x  PHP Fatal error: Uncaught Error: Call to"
    )
    assert lines[1] == "      before: app.log:4  INFO  user 14 logged in from 10.0.0.7"
    assert lines[2] == "      before: app.log:5  INFO  user 12 logged in from 10.0.0.7"
    assert lines[-1] == "1 new pattern(s) in 6 lines from 1 file(s)"
    third = sl2s(
        "patterns", "--text", str(log), "--new-since", str(state), env=clean_env()
    )
    assert third.returncode == 0 and third.stdout.startswith("0 new pattern(s)")


def test_events_mode_says_when_lines_are_not_events(tmp_path):
    log = tmp_path / "app.log"
    log.write_text(APP_LOG, encoding="utf-8")
    plan = tmp_path / "p.csv"
    plan.write_text("request,log,machine\nf,Hello,a\n", encoding="utf-8")
    done = sl2s("patterns", str(plan), str(log), env=clean_env())
    assert "note: 4 line(s) were not sl2s events (first: " in done.stdout
    assert "read plain-text logs with --text" in done.stdout


def test_mining_options_are_configurable_and_checked(tmp_path):
    log = tmp_path / "app.log"
    log.write_text(APP_LOG, encoding="utf-8")

    def templates(*options):
        done = sl2s(
            "patterns",
            "--text",
            str(log),
            "--format",
            "json",
            *options,
            env=clean_env(),
        )
        return {json.loads(line)["template"] for line in done.stdout.splitlines()}

    # nothing masked: at the default similarity (0.7) lines differing in 2 of 6 words are apart
    assert templates("--masks", "none") == {
        "user * logged in from 10.0.0.7",  # users 12 and 14
        "user 13 logged in from 10.0.0.9",
        "slow query took 812ms",
    }
    assert templates("--masks", "none", "--similarity", "0.4") == {
        "user * logged in from *",
        "slow query took 812ms",
    }
    assert templates() == {"user * logged in from *", "slow query took *"}
    custom = sl2s(
        "patterns",
        "--text",
        str(log),
        "--masks",
        "none",
        "--mask-regex",
        r"user \d+",
        "--format",
        "json",
        env=clean_env(),
    )
    assert any(
        t.startswith("* logged in from")
        for t in (json.loads(line)["template"] for line in custom.stdout.splitlines())
    )
    for bad, said in (
        (["--masks", "bogus"], "unknown mask 'bogus'"),
        (["--similarity", "1.5"], "similarity 1.5: must be in (0, 1]"),
        (["--depth", "2"], "depth 2: must be 3 to 12"),
        (["--mask-regex", "("], "mask regex '(':"),
    ):
        done = sl2s("patterns", "--text", str(log), *bad, env=clean_env())
        assert (
            done.returncode == 2 and said in done.stderr
        ), done.stderr  # a usage error
        assert "Traceback" not in done.stderr


def test_a_state_keeps_its_mining_options(tmp_path):
    log, state = tmp_path / "app.log", tmp_path / "s.json"
    log.write_text(APP_LOG, encoding="utf-8")
    sl2s(
        "patterns",
        "--text",
        str(log),
        "--new-since",
        str(state),
        "--depth",
        "6",
        env=clean_env(),
    )
    assert json.loads(state.read_text())["mining"]["depth"] == 6
    done = sl2s(
        "patterns",
        "--text",
        str(log),
        "--new-since",
        str(state),
        "--depth",
        "4",
        env=clean_env(),
    )
    assert done.returncode == 1 and "other mining options" in done.stderr


def test_masks_replace_values_in_one_pass():
    mask = masker(MiningOptions())
    text = (
        "ip 10.0.0.7:80 id 0xdeadbeef took 12ms, run 51 blk_-42 at 10:30:01 on 1.2,3.4"
    )
    assert mask(text) == ("ip <*> id <*> took <*>, run <*> <*> at <*> on <*>")
    assert shown(mask(text)) == "ip * id * took *, run * * at * on *"
    assert masker(MiningOptions(masks=()))("a 1") == "a 1"


labels = st.lists(st.integers(0, 4), min_size=1, max_size=40)


@given(labels, st.permutations(range(5)))
def test_grouping_accuracy_is_one_for_any_relabelling(truth, perm):
    assert grouping_accuracy(truth, [perm[t] for t in truth]) == 1.0


@given(labels, labels)
def test_grouping_accuracy_is_a_share_of_lines(truth, predicted):
    n = min(len(truth), len(predicted))
    score = grouping_accuracy(truth[:n], predicted[:n])
    assert 0.0 <= score <= 1.0
    assert round(score * n) == pytest.approx(score * n)


def test_grouping_accuracy_counts_only_whole_groups():
    # truth: A A B B ; predicted merges one B into A's group: no line of A or that B is right
    assert grouping_accuracy("AABB", [1, 1, 1, 2]) == 0.0
    assert grouping_accuracy("AABC", [1, 1, 2, 2]) == 0.5
    with pytest.raises(ValueError):
        grouping_accuracy("AB", [1])
    assert re.fullmatch(r"\d\.\d+", str(grouping_accuracy("ABCD", [1, 2, 3, 3])))


def _groups(lines, options=None):
    """The pattern key of each line, mined as `patterns --text` mines them."""
    from sl2s.observe.patterns import Analyzer
    from sl2s.observe.textlog import TEXT

    analyzer = Analyzer(None, options=options, keep_members=True)
    for i, line in enumerate(lines, 1):
        event = {
            "event_name": TEXT,
            "severity_text": "INFO",
            "body": line,
            "attributes": {"sl2s.machine": "m"},
        }
        analyzer._feed_text("app.log", i, event)
    found = {}
    for pattern in analyzer.finish():
        for member in pattern.members:
            found[int(member.rsplit(":", 1)[1])] = pattern.key
    return [found[i] for i in range(1, len(lines) + 1)]


def test_a_dotted_name_with_a_port_is_a_value():
    # without the `hostport` mask the first word keys Drain's tree: one pattern per host
    lines = [
        f"{host}:443 open through proxy proxy.example.com:5070 HTTPS"
        for host in ("github.com", "csdnimg.cn", "google.com", "baidu.com")
    ]
    assert len(set(_groups(lines))) == 1
    masks = tuple(m for m in MiningOptions().masks if m != "hostport")
    assert len(set(_groups(lines, MiningOptions(masks=masks)))) == 4
    # not a key:value pair whose key has a dot and capitals
    assert masker()("state.clipTopAmount:0, i:1") == "state.clipTopAmount:<*>, i:<*>"


def test_a_value_with_its_unit_is_one_value():
    mask = masker()
    assert mask("120 bytes (18.4 KB) sent, lifetime <1 sec") == (
        "<*> bytes (<*>) sent, lifetime <*>"
    )
    assert mask("took 335 seconds") == "took <*> seconds"  # words are not units


def test_templates_differing_only_in_masked_values_are_one_pattern():
    # an optional `(1.2 KB)` and a lifetime with a unit change the number of tokens: Drain
    # alone makes 4 clusters; their shapes (the templates without value tokens) are one
    lines = [
        "a.example.com:80 close, 1020 bytes sent, 607 bytes received, lifetime 00:30",
        "b.example.com:80 close, 3020 bytes (2.9 KB) sent, 1607 bytes received, lifetime 01:30",
        "c.example.com:80 close, 20 bytes sent, 7 bytes received, lifetime <1 sec",
        "d.example.com:80 close, 99 bytes sent, 4607 bytes (4.5 KB) received, lifetime 00:01",
        "e.example.com:80 close, 1020 bytes sent, 607 bytes received, lifetime 00:30",
    ]
    assert len(set(_groups(lines))) == 1
    # a word that differs is not a value: `user=root` keeps its own pattern
    lines = [
        "authentication failure; uid=0 rhost=10.0.0.1",
        "authentication failure; uid=0 rhost=10.0.0.2",
        "authentication failure; uid=0 rhost=10.0.0.1 user=root",
        "authentication failure; uid=0 rhost=10.0.0.2 user=ann",
    ]
    groups = _groups(lines)
    assert groups[0] == groups[1] and groups[2] == groups[3] != groups[0]


def test_a_level_word_starting_a_dotted_name_is_not_a_level():
    assert split_line("info.pinyin.sogou.com:80 close").message == (
        "info.pinyin.sogou.com:80 close"
    )


def test_urls_and_written_out_dates_are_values():
    mask = masker()
    assert mask(
        "com.apple.ical.sync.x-coredata://DB05-483D/CalDAVPrincipal/p11: run, see "
        "https://example.com/a?b=1."
    ) == ("<*>: run, see <*>.")
    assert mask("connection from 1.2.3.4 () at Sat Jul  9 22:53:19 2005") == (
        "connection from <*> () at <*>"
    )
    # without `date`, the month and weekday are words: one pattern per month and weekday
    lines = [
        f"connection from 10.0.0.{i} at {day} {month} {i} 22:53:19 2005"
        for i, (day, month) in enumerate(
            [("Sat", "Jul"), ("Sun", "Jun"), ("Mon", "Jul"), ("Tue", "Aug")], 1
        )
    ]
    assert len(set(_groups(lines))) == 1
    masks = tuple(m for m in MiningOptions().masks if m != "date")
    assert len(set(_groups(lines, MiningOptions(masks=masks)))) > 1


def test_a_line_seen_up_to_its_digits_is_not_masked_again():
    from sl2s.observe.mining import add_line, make_miner

    calls = []

    def counting(options):
        mask = masker(options)

        def counted(text):
            calls.append(text)
            return mask(text)

        return counted

    miner = make_miner()
    mask = counting(MiningOptions())
    first = add_line(miner, mask, "took 12 ms on node-7")
    assert add_line(miner, mask, "took 48 ms on node-3") == first
    assert calls == ["took 12 ms on node-7"]
    # with a user mask, which may depend on the digits themselves, only the same text is
    options = MiningOptions(extra_masks=(r"node-7",))
    miner, calls[:] = make_miner(options), []
    mask = counting(options)
    add_line(miner, mask, "took 12 ms on node-7")
    add_line(miner, mask, "took 48 ms on node-3")
    add_line(miner, mask, "took 48 ms on node-3")
    assert calls == ["took 12 ms on node-7", "took 48 ms on node-3"]


class _Forgetful(dict):
    def __setitem__(self, key, value):
        pass


words = st.sampled_from(
    ["took", "ms", "on", "node-7", "node-3", "12", "48", "a.b.c", "x"]
)


@given(st.lists(st.lists(words, min_size=1, max_size=6).map(" ".join), max_size=30))
def test_remembering_lines_changes_no_grouping(lines):
    from sl2s.observe.mining import add_line, make_miner

    mask = masker()
    remembering, forgetful = make_miner(), make_miner()
    forgetful.sl2s_seen = _Forgetful()
    assert [add_line(remembering, mask, line) for line in lines] == [
        add_line(forgetful, mask, line) for line in lines
    ]


def test_a_cluster_merged_after_its_first_lines_is_one_pattern_with_them():
    lines = [
        "copy 5 bytes (1 KB) to ssd disk",
        "copy 6 bytes (2 KB) to hdd disk",  # template: copy * bytes (*) to * disk
        "copy 5 bytes to ssd disk",  # another cluster, shape `copy bytes to ssd disk`
        "copy 7 bytes to hdd disk",  # its template now `copy * bytes to * disk`: merged
    ]
    assert len(set(_groups(lines))) == 1
    # without the merge, Drain alone: two clusters
    from sl2s.observe.mining import make_miner

    miner, mask = make_miner(), masker()
    ids = {miner.drain.add_log_message(mask(line))[0].cluster_id for line in lines}
    assert len(ids) == 2
