"""What the CPU benchmarks share: the tiny models, the case file they write, the harness command, the timer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import TinyModels, build_tiny_models  # noqa: E402

CASE = """\
  - id: case-{n}
    prompt: "a watercolor painting of animal number {n} on a branch"
    negative_prompt: "blurry, low quality"
    clip:
      expect: "{expect}"
      distractors: ["an oil painting of an animal", "a photo of an animal"]
    resnet: {{expect: ["great grey owl"], top_k: 1000}}
"""


def workspace(prefix: str) -> tuple[Path, TinyModels, Path]:
    """A temp dir with the tiny models in models/ and an empty pytest rootdir in suite/."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix=prefix))
    models = build_tiny_models(work / "models")
    suite = work / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    return work, models, suite


def write_cases(path: Path, expect: str, *, cases: int = 8, steps: int = 20) -> None:
    """``cases`` cases x 2 seeds, CLIP expecting ``expect``, ResNet-50 on every image."""
    body = "".join(CASE.format(n=n, expect=expect) for n in range(cases))
    path.write_text(f"defaults:\n  steps: {steps}\n  seeds: [0, 1]\ncases:\n{body}")


def harness_command(models: TinyModels, case_file: str) -> list[str]:
    """pytest with the harness on the tiny models, writing the HTML report; no pytest cache dir."""
    return [
        sys.executable,
        "-m",
        "pytest",
        case_file,
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


SESSION_SECONDS: list[float] = []  # pytest's own "... in N.NNs": the session, without interpreter start-up


def timed(command: list[str], cwd: Path) -> float:
    """Wall seconds of ``command`` as a fresh process (start-up and imports included)."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):  # 1: some cases fail on random weights, which is fine
        raise SystemExit(f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    session = re.search(r" in ([0-9.]+)s", result.stdout.splitlines()[-1] if result.stdout else "")
    if session:
        SESSION_SECONDS.append(float(session.group(1)))
    return elapsed
