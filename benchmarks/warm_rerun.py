"""A suite of realistic size re-run after a label edit (run by hand, never in CI).

200 cases x 2 seeds (400 images) on the tiny random-weight pipeline, with CLIP and the full-size ResNet-50 on
every image: a cold run, then the labels of every case edited and the suite run again, twice. On a CPU the
judges dominate a warm run, so this shows what the score cache saves; the image cache alone saves generation.

    python benchmarks/warm_rerun.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics

from common import harness_command, timed, workspace, write_cases

LABELS = ("a watercolor painting of an animal", "a watercolour painting of an animal", "a watercolor of an animal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=200)
    args = parser.parse_args()

    work, models, suite = workspace("t2i-warm-")
    cases = suite / "big.yaml"
    command = harness_command(models, "big.yaml")
    cold, warm = [], []
    for repeat in range(args.repeats):
        cache = f"--t2i-cache-dir={work}/cache-{repeat}"
        write_cases(cases, LABELS[0], cases=args.cases, steps=2)
        cold.append(timed([*command, cache], suite))
        for label in LABELS[1:]:  # two label edits in a row: each a warm run
            write_cases(cases, label, cases=args.cases, steps=2)
            warm.append(timed([*command, cache], suite))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{args.cases} cases x 2 seeds, 2 steps, CLIP + ResNet-50 on every image (s):")
    print(f"   cold {statistics.median(cold):.2f}  {sorted(round(t, 2) for t in cold)}")
    print(f"   warm after a label edit {statistics.median(warm):.2f}  {sorted(round(t, 2) for t in warm)}")
    print(f"   speed-up cold/warm = {statistics.median(cold) / statistics.median(warm):.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
