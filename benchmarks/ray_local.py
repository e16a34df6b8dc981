"""The same suite serially and with `--t2i-ray local` (run by hand, never in CI).

On a CPU machine a local Ray instance offers one CPU slot per core, so the harness starts one actor per core
(two on the 2-core dev machine), each loading the tiny models once and running one torch thread; the serial run
is one process whose torch uses every core. Both are fresh processes (imports, Ray's start, actors' start and
model loading included), alternated, median of N; no image cache, so every image is generated.

    python benchmarks/ray_local.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics

from common import SESSION_SECONDS, harness_command, timed, workspace, write_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    work, models, suite = workspace("t2i-ray-")
    write_cases(suite / "bench.yaml", "a watercolor painting of an animal", cases=args.cases, steps=args.steps)
    command = [*harness_command(models, "bench.yaml"), "--t2i-no-cache"]
    images = args.cases * 2
    serial, on_ray, serial_session, ray_session = [], [], [], []
    for _ in range(args.repeats):
        serial.append(timed(command, suite))
        serial_session.append(SESSION_SECONDS[-1])
        on_ray.append(timed([*command, "--t2i-ray=local"], suite))
        ray_session.append(SESSION_SECONDS[-1])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"load average at the end (1, 5, 15 min): {', '.join(f'{load:.1f}' for load in os.getloadavg())}")
    print(
        f"{args.cases} cases x 2 seeds x {args.steps} steps ({images} images), CLIP + ResNet-50, "
        f"median of {args.repeats}:"
    )
    for name, walls, sessions in (("serial", serial, serial_session), ("--t2i-ray local", on_ray, ray_session)):
        wall, session = statistics.median(walls), statistics.median(sessions)
        print(
            f"   {name:16} wall {wall:6.2f} s {sorted(round(t, 2) for t in walls)}, session {session:6.2f} s, "
            f"{images / wall:.2f} images/s"
        )
    print(f"   ratio ray/serial (wall) = {statistics.median(on_ray) / statistics.median(serial):.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
