"""What long commands tell their progress display: `story` and the console's index count the bytes
of the event files they read, forward only, up to the total they announced."""

from __future__ import annotations

from pathlib import Path

import orjson

from sl2s.console.index import Index
from sl2s.observe import events as ev
from sl2s.observe.story import Selection, tell


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
