"""CPU benchmarks on tiny random-weight models (run by hand, never in CI).

1. Overhead: `pytest` with the harness against benchmarks/plain_loop.py doing the same work
   (8 cases x 2 seeds x 20 steps, generation + CLIP + ResNet + PNGs). Goal: ratio <= 1.05.
2. Warm cache: the same suite re-run after editing only the CLIP labels. Goal: >= 10x faster than cold.

Both sides run as fresh processes (imports and model loading included), alternated, median of N.

    python benchmarks/cpu_overhead.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys

from common import ROOT, SESSION_SECONDS, harness_command, timed, workspace, write_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    work, models, suite = workspace("t2i-bench-")
    cases = suite / "bench.yaml"
    write_cases(cases, "a watercolor painting of an animal")
    harness_cmd = harness_command(models, "bench.yaml")
    plain_cmd = [
        sys.executable,
        str(ROOT / "benchmarks/plain_loop.py"),
        "--models",
        str(work / "models"),
        "--cases",
        str(cases),
        "--out",
        str(work / "plain-out"),
    ]

    plain_times, harness_times, batched_times = [], [], []
    for repeat in range(args.repeats):
        plain_times.append(timed(plain_cmd, suite))
        # Same batching as the plain loop (one call per case, 2 seeds); a fresh cache, so every image
        # is generated and stored.
        harness_times.append(timed([*harness_cmd, "--t2i-batch-size=2", f"--t2i-cache-dir={work}/c{repeat}"], suite))
        batched_times.append(timed([*harness_cmd, f"--t2i-cache-dir={work}/b{repeat}"], suite))  # default: auto
    plain, harness = statistics.median(plain_times), statistics.median(harness_times)
    batched = statistics.median(batched_times)

    cold_times, warm_times, cold_session, warm_session = [], [], [], []
    for repeat in range(args.repeats):
        cache = work / f"warm-{repeat}"
        write_cases(cases, "a watercolor painting of an animal")
        cold_times.append(timed([*harness_cmd, f"--t2i-cache-dir={cache}"], suite))
        cold_session.append(SESSION_SECONDS[-1])
        write_cases(cases, "a watercolour painting of an animal")  # only the labels change
        warm_times.append(timed([*harness_cmd, f"--t2i-cache-dir={cache}"], suite))
        warm_session.append(SESSION_SECONDS[-1])
    cold, warm = statistics.median(cold_times), statistics.median(warm_times)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"1. overhead, 8 cases x 2 seeds x 20 steps, median of {args.repeats} (s):")
    print(f"   plain loop {plain:.2f}  {sorted(round(t, 2) for t in plain_times)}")
    print(f"   harness    {harness:.2f}  {sorted(round(t, 2) for t in harness_times)}  (--t2i-batch-size=2)")
    print(f"   ratio harness/plain = {harness / plain:.3f}  (goal <= 1.05)")
    print(f"   harness, default batching across cases: {batched:.2f}  ratio {batched / plain:.3f}")
    print("2. warm cache after a label edit (s):")
    print(f"   cold {cold:.2f}  {sorted(round(t, 2) for t in cold_times)}")
    print(f"   warm {warm:.2f}  {sorted(round(t, 2) for t in warm_times)}")
    print(f"   speed-up cold/warm = {cold / warm:.1f}x  (goal >= 10x)")
    cold_s, warm_s = statistics.median(cold_session), statistics.median(warm_session)
    print(f"   inside the pytest session (no interpreter start-up or imports): cold {cold_s:.2f}, warm {warm_s:.2f}, ")
    print(f"   speed-up {cold_s / warm_s:.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
