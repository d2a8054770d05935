"""What long commands tell their progress display, forward only, up to the total they announced:
`story`, `patterns` and the console's index count the bytes of the files they read; `generate`
counts the machines whose files it rendered."""

from __future__ import annotations

from pathlib import Path

import orjson

from sl2s.console.index import Index
from sl2s.generate.command import run_generate
from sl2s.observe import events as ev
from sl2s.observe.patterns import analyse
from sl2s.observe.story import Selection, tell

SHOP = Path(__file__).resolve().parent.parent / "sample_plans" / "shop.csv"


def write_events(directory: Path, runs: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for machine in ("client", "server"):
        with (directory / f"{machine}.jsonl").open("wb") as handle:
            for run in range(runs):
                hours, seconds = divmod(run, 3600)
                event = {
                    "timestamp": f"2026-12-04T{hours:02d}:{seconds // 60:02d}:{seconds % 60:02d}Z",
                    "severity_text": "INFO",
                    "body": f"step of run {run} on {machine}",
                    "event_name": "sl2s.step",
                    "attributes": {
                        "sl2s.correlation_id": f"run-{run:06d}",
                        "sl2s.event_id": f"{machine}-{run:06d}",
                        "sl2s.machine": machine,
                        "sl2s.flow": "login",
                        "sl2s.step": "a_step",
                    },
                }
                handle.write(orjson.dumps(event) + b"\n")


def recorder() -> tuple[list[tuple[int, int]], object]:
    calls: list[tuple[int, int]] = []
    return calls, lambda done, total: calls.append((done, total))


def check(calls: list[tuple[int, int]], total: int) -> None:
    assert calls, "no progress was told"
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total


def test_story_tells_bytes_read_over_both_passes(tmp_path):
    logs = tmp_path / "logs"
    write_events(logs, 40_000)  # more lines than one report's interval
    calls, progress = recorder()
    text, failed = tell([str(logs)], Selection(last=True), progress=progress)
    assert "step of run 39999 on server" in text and not failed  # the last run
    size = ev.files_size(ev.event_files([logs]))
    check(calls, 2 * size)  # one pass to find the run, one to collect it
    assert len(calls) > 4  # within files too, not only at their ends


def test_story_of_a_given_run_reads_once(tmp_path):
    logs = tmp_path / "logs"
    write_events(logs, 100)
    calls, progress = recorder()
    tell([str(logs)], Selection(correlation_id="run-000007"), progress=progress)
    check(calls, ev.files_size(ev.event_files([logs])))


def test_the_index_counts_what_it_indexed_before_as_done(tmp_path):
    logs = tmp_path / "logs"
    write_events(logs, 2_000)
    index = Index(tmp_path / "index.sqlite")
    try:
        calls, progress = recorder()
        index.refresh([logs], progress=progress)
        size = ev.files_size(ev.event_files([logs]))
        check(calls, size)
        write_events(logs, 2_500)  # the files grow
        calls, progress = recorder()
        index.refresh([logs], progress=progress)
        check(calls, ev.files_size(ev.event_files([logs])))
    finally:
        index.close()


def test_patterns_tell_bytes_read_of_event_files_and_of_text_logs(tmp_path):
    logs = tmp_path / "logs"
    write_events(logs, 40_000)
    calls, progress = recorder()
    patterns, _, _ = analyse(None, [str(logs)], progress=progress)
    assert patterns
    check(calls, ev.files_size(ev.event_files([logs])))
    assert len(calls) > 4
    text = tmp_path / "app.log"
    text.write_text(
        "".join(f"2026-12-04 10:00:00 INFO user {i} logged in\n" for i in range(40_000))
    )
    calls, progress = recorder()
    patterns, _, _ = analyse(None, [str(text)], text=True, progress=progress)
    assert [p.count for p in patterns] == [40_000]
    check(calls, text.stat().st_size)


def test_generate_tells_the_machines_rendered(tmp_path):
    calls, progress = recorder()
    out = tmp_path / "services"
    report = run_generate(SHOP, out, progress=progress)
    assert report.exit_code == 0
    machines = sorted(p.name for p in out.iterdir() if (p / "__init__.py").is_file())
    check(calls, len(machines))
    assert [d for d, _ in calls] == list(range(len(machines) + 1))
