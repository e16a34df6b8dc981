"""Command line: ``python -m harness compare``, ``review``, ``merge``, ``cache`` and ``import geneval``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.cache_maintenance import DEFAULT_CACHE_DIR
from harness.reports.baseline import DEFAULT_TOLERANCE

if TYPE_CHECKING:
    from harness.commands.cache_maintenance import Tally


def _number(low: float, high: float, expected: str) -> Callable[[str], float]:
    """An argparse type: a float from low to high, else an error saying what was ``expected``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}")
        return value

    return parse


_fraction = _number(0, 1, f"a number in [0, 1], such as {DEFAULT_TOLERANCE}")
_days = _number(0, 36500, "a number of days, 0 or more, such as 30")


def _pixels(text: str) -> int:
    if not text.isdigit() or not 32 <= int(text) <= 2048:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels from 32 to 2048; got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    from harness.commands.compare import DEFAULT_IMAGE_PX
    from harness.commands.compare_views import DEFAULT_FULL_SIZE, FULL_SIZE_MODES

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
    compare.add_argument(
        "--full-size",
        choices=FULL_SIZE_MODES,
        default=DEFAULT_FULL_SIZE,
        help="how each item's full-size view embeds its images: jpeg (full resolution, quality 92), png (the "
        "runs' own PNG files, exact, several times heavier) or none (no full-size view: the lightest page). "
        "Default: %(default)s",
    )
    review = commands.add_parser(
        "review",
        help="review a run's changes in the browser: accept them into the baseline, reject them, or mark a judge wrong",
        description="Serve a review page on 127.0.0.1 for RUN_DIR against a baseline. Accept writes the item's "
        "scores to baselines/NAME/ exactly as --t2i-save-baseline would; every decision is kept as a human verdict "
        "in baselines/reviewed-labels.json. Stop with Ctrl-C.",
    )
    review.add_argument(
        "run_dir",
        type=Path,
        nargs="?",
        default=Path("reports"),
        metavar="RUN_DIR",
        help="the run's report dir (holding results.json and images/). Default: %(default)s",
    )
    review.add_argument(
        "--baseline",
        metavar="NAME",
        help="the baseline to review against and write to; default: the one the run was compared with "
        "(--t2i-baseline), or the only one saved",
    )
    review.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="the project folder holding baselines/ (where pytest.ini is). Default: the current folder",
    )
    review.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the image cache, where the baseline's images are looked up by their cache key. Default: "
        f"ROOT/{DEFAULT_CACHE_DIR}",
    )
    review.add_argument(
        "--images-from",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="another run's report dir (the one the baseline was saved from, say) where baseline images are looked up "
        "by cache key before the image cache",
    )
    review.add_argument(
        "--tolerance",
        type=_fraction,
        default=None,
        help="for items the run did not compare with a baseline: how far a gated score may drop before it counts as "
        f"regressed. Default: the run's own tolerance, else {DEFAULT_TOLERANCE}",
    )
    review.add_argument("--port", type=_port, default=0, help="the port to listen on. Default: a free one")
    review.add_argument("--no-browser", action="store_true", help="print the page's URL without opening a browser")
    merge = commands.add_parser(
        "merge",
        help="merge several runs (e.g. CI shards of one suite) into one report dir",
        description="Merge report dirs (each holding results.json and images/) into OUTPUT: one results.json, "
        "the images, and a self-contained report.html with the summary and every item.",
    )
    merge.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="report dirs (or their results.json)")
    merge.add_argument("-o", "--output", type=Path, required=True, help="the report dir to write")
    cache = commands.add_parser(
        "cache",
        help="show what the image and score caches hold, or prune entries unused for a while",
        description="Count the cached images and scores in DIR, or delete those neither written nor read for "
        "more than DAYS days. Only the caches' own files are counted or deleted.",
    )
    cache.add_argument(
        "directory",
        type=Path,
        nargs="?",
        default=DEFAULT_CACHE_DIR,
        metavar="DIR",
        help="the image cache: your --t2i-cache-dir, or the default under the pytest rootdir. Default: %(default)s",
    )
    cache.add_argument(
        "--prune-unused-days",
        type=_days,
        metavar="DAYS",
        help="delete entries neither written nor read for more than DAYS days (0 deletes every entry)",
    )
    importer = commands.add_parser(
        "import",
        help="turn another benchmark's prompts into case files (geneval)",
        description="Write case files from another benchmark's prompt metadata.",
    )
    sources = importer.add_subparsers(dest="source", required=True, metavar="SOURCE")
    geneval = sources.add_parser(
        "geneval",
        help="GenEval's evaluation_metadata.jsonl: one case file of `objects:` checks per GenEval tag",
        description="Write DIR/<tag>.yaml for each GenEval tag (single_object, two_object, counting, colors, "
        "position, color_attr), each prompt a case of `objects:` checks; run them with `pytest DIR`.",
    )
    geneval.add_argument("metadata", type=Path, metavar="METADATA.jsonl", help="GenEval's evaluation_metadata.jsonl")
    geneval.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DIR", help="where to write the case files"
    )
    geneval.add_argument(
        "--seeds",
        type=_seed_count,
        default=4,
        help="images per prompt, seeds 0 to N-1 (GenEval generates 4). Default: %(default)s",
    )
    geneval.add_argument(
        "--min-pass-rate",
        type=_number(1e-9, 1, "a number in (0, 1], such as 0.75"),
        default=None,
        help="judge each prompt by the share of its seeds that pass (see the README's pass rates); "
        "default: every seed is its own item, as GenEval counts images",
    )
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 (a free one) to 65535; got {text!r}")
    return int(text)


def _review(args: argparse.Namespace) -> int:
    from harness.reports.reviewed_labels import reviewer
    from harness.review.review_state import ReviewError, ReviewState
    from harness.review.server import serve

    root = args.root
    cache_dir = args.cache_dir if args.cache_dir is not None else root / DEFAULT_CACHE_DIR
    try:
        state = ReviewState.load(
            args.run_dir, root, args.baseline, args.tolerance, reviewer(root), cache_dir, args.images_from
        )
    except ReviewError as exc:
        print(f"python -m harness review: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(state, args.port, open_browser=not args.no_browser)
    except OSError as exc:
        print(
            f"python -m harness review: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}; "
            "pass another --port, or 0 for a free one",
            file=sys.stderr,
        )
        return 2


def _seed_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a whole number of seeds from 1 to 10000; got {text!r}")
    return int(text)


def _import(args: argparse.Namespace) -> int:
    from harness.commands.import_geneval import GenevalImportError, import_geneval

    try:
        summary = import_geneval(args.metadata, args.output, args.seeds, args.min_pass_rate)
    except GenevalImportError as exc:
        print(f"python -m harness import geneval: {exc}", file=sys.stderr)
        return 2
    for tag, count in summary.files.items():
        print(f"{args.output / (tag + '.yaml')}: {count} cases")
    return _refused("import geneval", summary.refusals, "listed above")


def _cache(args: argparse.Namespace) -> int:
    from harness.commands.cache_maintenance import CacheDirError, prune, scan

    try:
        if args.prune_unused_days is not None:
            deleted = prune(args.directory, args.prune_unused_days)
            print(
                f"{args.directory}: deleted {_tally(deleted.images, 'image')} and {_tally(deleted.scores, 'score')} "
                f"unused for more than {args.prune_unused_days:g} days"
                + (f", and {deleted.temp_files.files} stale temp file(s)" if deleted.temp_files.files else "")
            )
        kept = scan(args.directory)
    except CacheDirError as exc:
        print(f"python -m harness cache: {exc}", file=sys.stderr)
        return 2
    import datetime

    oldest = (
        f"; least recently used: {datetime.datetime.fromtimestamp(kept.oldest_use):%Y-%m-%d %H:%M}"
        if kept.oldest_use is not None
        else ""
    )
    print(f"{args.directory}: {_tally(kept.images, 'image')}, {_tally(kept.scores, 'score')}{oldest}")
    return 0


def _tally(tally: Tally, noun: str) -> str:
    return f"{tally.files} {noun}{'' if tally.files == 1 else 's'} ({tally.bytes / 2**20:.1f} MiB)"


def _merge(args: argparse.Namespace) -> int:
    from harness.commands.merge import MergeError, merge_runs

    try:
        summary = merge_runs(args.runs, args.output)
    except MergeError as exc:
        print(f"python -m harness merge: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {summary.items} items from {summary.runs} runs; open {args.output / 'report.html'}")
    for item_id in summary.replaced:
        print(f"  note: {item_id} was in more than one run; the last run's result is kept")
    return _refused("merge", summary.refusals)


def _refused(command: str, refusals: Sequence[object], listed: str = "listed above and at the top of the page") -> int:
    """Exit status 1 when part of an input was refused (the output is written, and lists each refusal)."""
    for refusal in refusals:
        print(f"python -m harness {command}: refused: {refusal}", file=sys.stderr)
    if refusals:
        print(
            f"python -m harness {command}: {len(refusals)} part(s) of the input refused ({listed}); the rest was "
            "written",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "merge":
        return _merge(args)
    if args.command == "review":
        return _review(args)
    if args.command == "cache":
        return _cache(args)
    if args.command == "import":
        return _import(args)
    from harness.commands.compare import CompareError, write_comparison

    try:
        comparison = write_comparison(
            args.run_a, args.run_b, args.output, args.tolerance, args.image_px, args.full_size
        )
    except CompareError as exc:
        print(f"python -m harness compare: {exc}", file=sys.stderr)
        return 2
    from harness.reports.baseline import status_counts

    shown = ("regressed", "improved", "unchanged", "not comparable", "only in A", "only in B", "nondeterministic")
    counts = status_counts({status: comparison.count(status) for status in shown})
    case_statuses = [row.status for row in comparison.cases]
    case_counts = status_counts({status: case_statuses.count(status) for status in shown})
    print(f"{args.output}: {len(comparison.rows)} items: {counts}; {len(comparison.cases)} cases: {case_counts}")
    return _refused("compare", comparison.refusals)


if __name__ == "__main__":
    sys.exit(main())
