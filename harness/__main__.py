"""Command line: ``python -m harness compare RUN_A RUN_B -o reports/compare.html`` and ``python -m harness merge``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.baseline import DEFAULT_TOLERANCE


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], such as {DEFAULT_TOLERANCE}; got {text!r}")
    return value


def _pixels(text: str) -> int:
    if not text.isdigit() or not 32 <= int(text) <= 2048:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels from 32 to 2048; got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    from harness.compare import DEFAULT_IMAGE_PX

    parser = argparse.ArgumentParser(prog="python -m harness", description="t2i-harness tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compare = commands.add_parser(
        "compare",
        help="write one self-contained HTML page comparing two runs (or a run and a baseline)",
        description="Compare two runs side by side, worst regression first. A run is a report dir holding "
        "results.json and images/ (or that results.json); a baseline is a baselines/NAME dir or one of its files.",
    )
    compare.add_argument("run_a", type=Path, metavar="RUN_A", help="the reference: a report dir or a baseline")
    compare.add_argument("run_b", type=Path, metavar="RUN_B", help="the candidate: a report dir or a baseline")
    compare.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("reports/compare.html"),
        help="the page to write. Default: %(default)s",
    )
    compare.add_argument(
        "--tolerance",
        type=_fraction,
        default=DEFAULT_TOLERANCE,
        help="a change in the intended label's probability or margin larger than this counts as regressed or "
        "improved. Default: %(default)s",
    )
    compare.add_argument(
        "--image-px",
        type=_pixels,
        default=DEFAULT_IMAGE_PX,
        help="longest side of the embedded images. Default: %(default)s",
    )
    merge = commands.add_parser(
        "merge",
        help="merge several runs (e.g. CI shards of one suite) into one report dir",
        description="Merge report dirs (each holding results.json and images/) into OUTPUT: one results.json, "
        "the images, and a self-contained report.html with the summary and every item.",
    )
    merge.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="report dirs (or their results.json)")
    merge.add_argument("-o", "--output", type=Path, required=True, help="the report dir to write")
    return parser


def _merge(args: argparse.Namespace) -> int:
    from harness.merge import MergeError, merge_runs

    try:
        summary = merge_runs(args.runs, args.output)
    except MergeError as exc:
        print(f"python -m harness merge: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {summary.items} items from {summary.runs} runs; open {args.output / 'report.html'}")
    for item_id in summary.replaced:
        print(f"  note: {item_id} was in more than one run; the last run's result is kept")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "merge":
        return _merge(args)
    from harness.compare import CompareError, write_comparison

    try:
        comparison = write_comparison(args.run_a, args.run_b, args.output, args.tolerance, args.image_px)
    except CompareError as exc:
        print(f"python -m harness compare: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(
        f"{comparison.count(s)} {s}"
        for s in ("regressed", "improved", "unchanged", "not comparable", "only in A", "only in B")
    )
    print(f"{args.output}: {len(comparison.rows)} items: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
