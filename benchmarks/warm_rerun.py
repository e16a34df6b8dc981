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
import sys
import tempfile
from pathlib import Path

from cpu_overhead import timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import build_tiny_models  # noqa: E402

CASE = """\
  - id: case-{n}
    prompt: "a watercolor painting of animal number {n} on a branch"
    negative_prompt: "blurry, low quality"
    clip:
      expect: "{expect}"
      distractors: ["an oil painting of an animal", "a photo of an animal"]
    resnet: {{expect: ["great grey owl"], top_k: 1000}}
"""
LABELS = ("a watercolor painting of an animal", "a watercolour painting of an animal", "a watercolor of an animal")


def write_cases(path: Path, expect: str, cases: int) -> None:
    body = "".join(CASE.format(n=n, expect=expect) for n in range(cases))
    path.write_text(f"defaults:\n  steps: 2\n  seeds: [0, 1]\ncases:\n{body}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=200)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="t2i-warm-"))
    models = build_tiny_models(work / "models")
    suite = work / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    cases = suite / "big.yaml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "big.yaml",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--t2i-model={models.pipeline_dir}",
        f"--t2i-clip-model={models.clip_dir}",
        f"--t2i-resnet-weights={models.resnet_path}",
        "--t2i-device=cpu",
        "--html=reports/report.html",
        "--self-contained-html",
    ]
    cold, warm = [], []
    for repeat in range(args.repeats):
        cache = f"--t2i-cache-dir={work}/cache-{repeat}"
        write_cases(cases, LABELS[0], args.cases)
        cold.append(timed([*command, cache], suite))
        for label in LABELS[1:]:  # two label edits in a row: each a warm run
            write_cases(cases, label, args.cases)
            warm.append(timed([*command, cache], suite))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{args.cases} cases x 2 seeds, 2 steps, CLIP + ResNet-50 on every image (s):")
    print(f"   cold {statistics.median(cold):.2f}  {sorted(round(t, 2) for t in cold)}")
    print(f"   warm after a label edit {statistics.median(warm):.2f}  {sorted(round(t, 2) for t in warm)}")
    print(f"   speed-up cold/warm = {statistics.median(cold) / statistics.median(warm):.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
