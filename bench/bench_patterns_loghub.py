"""`sl2s patterns --text` on the 16 public Loghub 2k samples: grouping accuracy and time.

    python bench/bench_patterns_loghub.py PATH_TO_LOGHUB [--repeat 3] [--grid]

PATH_TO_LOGHUB is a checkout of github.com/logpai/loghub (each dataset a directory `<Name>/` with
`<Name>_2k.log` and `<Name>_2k.log_structured.csv`: the message of each line, `Content`, and its
true template id, `EventId`). The datasets are not part of sl2s and are never shipped with it.

For each dataset:

- **accuracy** — grouping accuracy (Zhu et al. 2019, `sl2s.observe.mining.grouping_accuracy`) of
  the patterns `sl2s patterns --text` finds, with its defaults (one set for all datasets), over
  (a) the messages (`Content`, as the published benchmark feeds Drain) and (b) the raw lines with
  sl2s's default prefix stripping; beside it drain3 with its own defaults on the same messages,
  and Drain's published figure (Zhu et al. 2019, with per-dataset regexes and parameters);
- **time** — the whole `--text` analysis (read the file, split prefixes, mask, mine, count) against
  drain3 alone (`TemplateMiner.add_log_message` per message, default config) on the same lines,
  CPU time, best of `--repeat`, as a ratio (target ≤ 2×).

`--grid` also prints the average accuracy of a grid of similarity/depth/mask settings (how the
defaults were chosen).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from sl2s.observe.mining import MiningOptions, grouping_accuracy
from sl2s.observe.patterns import analyse

DATASETS = (
    "Android Apache BGL HDFS HPC Hadoop HealthApp Linux Mac OpenSSH OpenStack Proxifier Spark "
    "Thunderbird Windows Zookeeper"
).split()

# Zhu et al., "Tools and Benchmarks for Automated Log Parsing", ICSE-SEIP 2019: Drain's accuracy
PUBLISHED_DRAIN = {
    "HDFS": 0.998,
    "Hadoop": 0.948,
    "Spark": 0.920,
    "Zookeeper": 0.967,
    "OpenStack": 0.733,
    "BGL": 0.963,
    "HPC": 0.887,
    "Thunderbird": 0.955,
    "Windows": 0.997,
    "Linux": 0.690,
    "Mac": 0.787,
    "Android": 0.911,
    "HealthApp": 0.780,
    "Apache": 1.000,
    "OpenSSH": 0.788,
    "Proxifier": 0.527,
}


def load(root: Path, name: str) -> tuple[list[str], list[str], list[str]]:
    """(messages, true template ids, raw lines) of one dataset."""
    with (root / name / f"{name}_2k.log_structured.csv").open(
        newline="", encoding="utf-8"
    ) as handle:
        rows = list(csv.DictReader(handle))
    raw = (root / name / f"{name}_2k.log").read_text(encoding="utf-8", errors="replace")
    lines = [line for line in raw.splitlines() if line.strip()]
    if len(lines) != len(rows):
        lines = []  # cannot pair raw lines with the ground truth
    return [r["Content"] for r in rows], [r["EventId"] for r in rows], lines


def sl2s_groups(
    path: Path, count: int, options: MiningOptions | None = None
) -> list[str]:
    """The pattern each line of `path` falls in, from `sl2s patterns --text`'s analysis."""
    patterns, _analyzer, _stats = analyse(
        None, [str(path)], text=True, options=options, keep_members=True
    )
    found = [""] * count
    for pattern in patterns:
        for member in pattern.members:
            found[int(member.rsplit(":", 1)[1]) - 1] = pattern.key
    return found


def drain3_groups(lines: list[str]) -> list[int]:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    return [miner.add_log_message(line)["cluster_id"] for line in lines]


def write_lines(directory: Path, name: str, lines: list[str]) -> Path:
    path = directory / f"{name}.log"
    path.write_text(
        "".join(line.replace("\n", " ") + "\n" for line in lines), encoding="utf-8"
    )
    return path


def best_of(repeat: int, function) -> float:
    """CPU time of this process (a shared machine's other load does not count), best of `repeat`."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("loghub", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grid", action="store_true")
    args = parser.parse_args(argv)
    missing = [
        d
        for d in DATASETS
        if not (args.loghub / d / f"{d}_2k.log_structured.csv").is_file()
    ]
    if missing:
        print(
            f"{args.loghub}: no {', '.join(missing)} (a checkout of logpai/loghub)",
            file=sys.stderr,
        )
        return 2
    data = {d: load(args.loghub, d) for d in DATASETS}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(
            f"{'dataset':<12} {'sl2s':>6} {'raw':>6} {'drain3':>7} {'Drain (pub.)':>12} "
            f"{'sl2s s':>8} {'drain3 s':>8} {'ratio':>6}"
        )
        for name in DATASETS:
            messages, truth, raw = data[name]
            content = write_lines(work, name, messages)
            ours = grouping_accuracy(truth, sl2s_groups(content, len(messages)))
            raw_accuracy = None
            if raw:
                raw_path = write_lines(work, name + "_raw", raw)
                raw_accuracy = grouping_accuracy(truth, sl2s_groups(raw_path, len(raw)))
            peer = grouping_accuracy(truth, drain3_groups(messages))
            ours_s = best_of(args.repeat, partial(sl2s_groups, content, len(messages)))
            peer_s = best_of(args.repeat, partial(drain3_groups, messages))
            rows.append(
                (name, ours, raw_accuracy, peer, PUBLISHED_DRAIN[name], ours_s, peer_s)
            )
            print(
                f"{name:<12} {ours:6.3f} "
                + (f"{raw_accuracy:6.3f}" if raw_accuracy is not None else "     -")
                + f" {peer:7.3f} {PUBLISHED_DRAIN[name]:12.3f} {ours_s:8.3f} {peer_s:8.3f} "
                f"{ours_s / peer_s:6.2f}"
            )

        def avg(i: int) -> float:
            return statistics.mean(r[i] for r in rows if r[i] is not None)

        total_ours, total_peer = sum(r[5] for r in rows), sum(r[6] for r in rows)
        print(
            f"{'average':<12} {avg(1):6.3f} {avg(2):6.3f} {avg(3):7.3f} {avg(4):12.3f} "
            f"{total_ours:8.3f} {total_peer:8.3f} {total_ours / total_peer:6.2f}"
        )
        print(
            "targets: accuracy >= Drain's published figure per dataset, average >= 0.90; "
            "time <= 2x drain3 alone"
        )
        if args.grid:
            print("\ngrid (average accuracy over the 16 messages files):")
            defaults = MiningOptions().masks
            for masks in (
                (
                    "uuid",
                    "ip",
                    "hex",
                    "hexid",
                    "number",
                    "digits",
                ),  # the defaults before
                tuple(m for m in defaults if m != "host"),
                defaults,
                defaults + ("path",),
            ):
                for similarity in (0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
                    for depth in (4, 5, 6):
                        options = MiningOptions(similarity, depth, masks)
                        scores = [
                            grouping_accuracy(
                                data[d][1],
                                sl2s_groups(
                                    work / f"{d}.log", len(data[d][0]), options
                                ),
                            )
                            for d in DATASETS
                        ]
                        print(
                            f"  similarity {similarity} depth {depth} masks {','.join(masks)}: "
                            f"{statistics.mean(scores):.3f}"
                        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
