"""`pytest --t2i-check` on GenEval's 553 prompts written as case files (run by hand, never in CI).

GenEval's six tasks, with its prompt counts: single object (80), two objects (99), counting (80), colours (94),
position (100) and colour attribution (100); every case has a `clip:` and a `resnet:` section. The pipeline's
tokenizer is a CLIP BPE tokenizer of SD 1.5's size (49,408 tokens, 48,894 merges, synthetic, so no download),
laid out as SD 1.5's `tokenizer/` folder is on the hub, so check mode reads and uses it for every prompt.

Each run is a fresh process (interpreter start-up and imports included); the figures are the median wall time
and the peak RSS (the child's ru_maxrss) of N runs.

    PYTHONPATH=$PWD python benchmarks/check_mode.py --repeats 7 [--against /path/to/another/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# COCO objects (GenEval's vocabulary) with an ImageNet class that ResNet-50 would see for each.
OBJECTS = {
    "dog": "golden retriever", "cat": "tabby", "bird": "goldfinch", "horse": "sorrel", "sheep": "ram",
    "cow": "ox", "elephant": "African elephant", "bear": "brown bear", "zebra": "zebra", "car": "sports car",
    "bus": "school bus", "train": "passenger car", "truck": "trailer truck", "boat": "speedboat",
    "airplane": "airliner", "bicycle": "mountain bike", "motorcycle": "moped", "bench": "park bench",
    "umbrella": "umbrella", "backpack": "backpack", "laptop": "laptop", "keyboard": "computer keyboard",
    "mouse": "mouse", "cell phone": "cellular telephone", "microwave": "microwave", "oven": "Dutch oven",
    "toaster": "toaster", "refrigerator": "refrigerator", "clock": "wall clock", "vase": "vase",
    "teddy bear": "teddy", "banana": "banana", "orange": "orange", "broccoli": "broccoli", "pizza": "pizza",
    "traffic light": "traffic light", "fire hydrant": "fire engine", "stop sign": "street sign",
    "tie": "Windsor tie", "wine glass": "red wine",
}  # fmt: skip
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
NUMBERS = ("two", "three", "four")
RELATIONS = ("left of", "right of", "above", "below")
TASKS = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100}
VOCAB_SIZE = 49_408  # SD 1.5's CLIP tokenizer


def plural(name: str) -> str:
    return name + ("es" if name.endswith(("s", "sh", "ch")) else "s")


def task_cases(task: str, count: int, rng: random.Random) -> list[dict[str, object]]:
    """GenEval-like prompts: the intended label, distractors it could be confused with, ResNet's class."""
    names = list(OBJECTS)
    cases = []
    for n in range(count):
        a, b = rng.sample(names, 2)
        c1, c2 = rng.sample(COLOURS, 2)
        if task == "single_object":
            prompt, distractors = f"a photo of a {a}", [f"a photo of a {b}"]
        elif task == "two_object":
            prompt, distractors = f"a photo of a {a} and a {b}", [f"a photo of a {a}", f"a photo of a {b}"]
        elif task == "counting":
            number = rng.choice(NUMBERS)
            others = [x for x in NUMBERS if x != number]
            prompt, distractors = f"a photo of {number} {plural(a)}", [f"a photo of {x} {plural(a)}" for x in others]
        elif task == "colors":
            prompt, distractors = f"a photo of a {c1} {a}", [f"a photo of a {c2} {a}"]
        elif task == "position":
            relation = rng.choice(RELATIONS)
            opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[relation]
            prompt, distractors = f"a photo of a {a} {relation} a {b}", [f"a photo of a {a} {opposite} a {b}"]
        else:  # color_attr
            prompt = f"a photo of a {c1} {a} and a {c2} {b}"
            distractors = [f"a photo of a {c2} {a} and a {c1} {b}"]
        cases.append(
            {
                "id": f"{task}-{n:03d}",
                "prompt": prompt,
                "clip": {"expect": prompt, "distractors": distractors},
                "resnet": {"expect": [OBJECTS[a]], "top_k": 5},
            }
        )
    return cases


def write_case_files(suite: Path) -> int:
    rng = random.Random(0)
    total = 0
    for task, count in TASKS.items():
        cases = task_cases(task, count, rng)
        total += len(cases)
        document = {"defaults": {"negative_prompt": "blurry, low quality", "seeds": [0, 1, 2, 3]}, "cases": cases}
        # Block style, as people write case files by hand.
        text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=200)
        (suite / f"{task}.yaml").write_text(text, encoding="utf-8")
    return total


def write_tokenizer(model_dir: Path) -> None:
    """A CLIP BPE tokenizer of SD 1.5's size, laid out as SD 1.5's tokenizer/ folder (vocab.json + merges.txt)."""
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(ord("!"), ord("~") + 1)] + [chr(256 + c) for c in range(256 - 94)]
    vocab: dict[str, int] = {}
    for symbol in alphabet + [s + "</w>" for s in alphabet]:
        vocab.setdefault(symbol, len(vocab))
    bare = [s for s in vocab if not s.endswith("</w>")]
    merges: list[str] = []
    while len(vocab) < VOCAB_SIZE - 2:
        left, right = rng.choice(bare), rng.choice(list(vocab) if rng.random() < 0.5 else bare)
        token = left + right
        if token not in vocab and len(token) < 20:
            vocab[token] = len(vocab)
            merges.append(f"{left} {right}")
            if not token.endswith("</w>"):
                bare.append(token)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder = model_dir / "tokenizer"
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "pad_token": "<|endoftext|>"}
    config |= {key: "<|startoftext|>" if key == "bos_token" else "<|endoftext|>" for key in ("bos_token", "eos_token")}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (model_dir / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))


def run(command: list[str], cwd: Path, pythonpath: str | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB, and stdout of one fresh process."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{command} exited {code}:\n{output[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024, output  # ru_maxrss is in KiB on Linux


def summary(name: str, runs: list[tuple[float, float, str]]) -> str:
    seconds, rss = [r[0] for r in runs], [r[1] for r in runs]
    footer = next((line for line in runs[-1][2].splitlines() if "t2i-check:" in line), "(no t2i-check footer)")
    return (
        f"{name}: wall median {statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}), "
        f"peak RSS median {statistics.median(rss):.0f} MiB\n  {footer.strip(' -')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--against", metavar="CHECKOUT", help="also time this checkout of the harness (first on PYTHONPATH), alternated"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="t2i-check-bench-"))
    suite = work / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    total = write_case_files(suite)
    write_tokenizer(work / "sd15-like")
    command = [
        sys.executable, "-m", "pytest", "--t2i-check", "-q", "-p", "no:cacheprovider",
        f"--t2i-model={work / 'sd15-like'}", *sorted(str(path.name) for path in suite.glob("*.yaml")),
    ]  # fmt: skip

    sides = {"this checkout": os.environ.get("PYTHONPATH")}
    if args.against:
        sides[args.against] = args.against
    runs: dict[str, list[tuple[float, float, str]]] = {name: [] for name in sides}
    for path in sides.values():
        run(command, suite, path)  # warm the OS file cache; not counted
    for _ in range(args.repeats):
        for name, path in sides.items():
            runs[name].append(run(command, suite, path))
    print(f"{total} cases in {len(TASKS)} files; Python {platform.python_version()}, {os.cpu_count()} cores")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    for name in sides:
        print(summary(name, runs[name]))


if __name__ == "__main__":
    main()
