"""--t2i-ray: the tiny models on Ray actors (a local Ray instance on the CPU, started once per test session).

The runs connect with `--t2i-ray auto`, which takes this process's own Ray connection, so no run pays Ray's
start-up. Killing an actor mid-run uses the actor's hidden test hook (harness.pytest_plugin.ray_actor's
TEST_EXIT_ENV): an actor that starts a batch of a named case exits at once, as a lost node would.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_interrupted_run import run_interrupted_after_first_item
from test_report import report_data

from conftest import Labels, case_yaml
from harness.pytest_plugin.ray_cluster import split_address

pytest.importorskip("ray", reason='Ray is not installed (pip install "t2i-harness[ray]")')


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    """One local Ray instance for the whole session, bounded to the CI machine's 2 cores."""
    import logging
    import warnings

    import ray
    import ray.exceptions  # imported here, once: pytester forgets modules first imported during a run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Ray's own deprecation notices, not the harness's to fix
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_addresses_are_read_with_rays_default_ports() -> None:
    assert split_address("10.0.0.5:6380") == ("10.0.0.5", 6380)
    assert split_address("head") == ("head", 6379)
    assert split_address("ray://head") == ("head", 10001)
    assert split_address("ray://head:10002/") == ("head", 10002)
    assert split_address("head:port")[1] is None


def test_cache_entries_travel_verified_both_ways(tmp_path: Path) -> None:
    """What the driver sends an actor (entry_bytes) and stores from one (put_entry) is checked as any read is."""
    from PIL import Image

    from harness.generation.image_cache import ImageCache

    here, there = ImageCache(tmp_path / "driver"), ImageCache(tmp_path / "actor")
    key, other = "a" * 64, "b" * 64
    here.put(key, Image.new("RGB", (8, 8), (10, 200, 30)), {"case": "owl"})
    entry = here.entry_bytes(key)
    assert entry is not None and entry == here.path_for(key).read_bytes()
    assert there.put_entry(key, entry) and there.get(key) is not None
    assert not there.put_entry(other, entry)  # another key's entry is never stored under this one
    assert not there.put_entry(key, entry[:-20])  # nor a truncated one
    assert there.entry_bytes(other) is None
    here.path_for(key).write_bytes(entry[:-20])
    assert here.entry_bytes(key) is None and not here.path_for(key).exists()  # damaged: deleted, never sent


def comparable(report_dir: Path) -> list[dict[str, Any]]:
    """results.json's records without what may differ between two equal runs: times, the cache's hit flag."""
    records = json.loads((report_dir / "results.json").read_text())["results"]
    return [{k: v for k, v in r.items() if k not in ("timings", "cached")} for r in records]


def report_rows(report_dir: Path) -> list[list[str]]:
    """report.html's rows (verdict tables, scores, images, thumbnails), without the durations."""
    rows = [row for tests in report_data((report_dir / "report.html").read_text())["tests"].values() for row in tests]
    return [
        [re.sub(r"(_s )[\d.]+", r"\1", cell) for cell in row["resultsTableRow"] if "col-duration" not in cell]
        for row in rows
    ]


def suite(labels: Labels, *case_ids: str, extra: str = "") -> str:
    """Cases of two seeds each; those named wrong-* fail (the intended label is the one CLIP ranks lower)."""
    body = "".join(
        f'- id: {case_id}\n  prompt: "{labels.prompt} {n}"\n'
        f"  clip: {labels.failing if case_id.startswith('wrong') else labels.passing}\n"
        for n, case_id in enumerate(case_ids)
    )
    return case_yaml(body + extra, seeds="[0, 1]")


def test_ray_run_equals_the_serial_run_and_survives_a_dead_actor(
    pytester: pytest.Pytester,
    model_args: list[str],
    clip_labels: Labels,
    resnet_top_class: str,
    local_ray: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from harness.generation.image_cache import ImageCache
    from harness.judging.score_cache import image_digest

    resnet = (
        f'- id: with-resnet\n  prompt: "{clip_labels.prompt}"\n  clip: {clip_labels.passing}\n'
        f'  resnet: {{expect: ["{resnet_top_class}"]}}\n'
    )
    pytester.makefile(".yaml", suite=suite(clip_labels, "owl", "wrong-owl", extra=resnet))
    common = ["suite.yaml", "--t2i-batch-size=2", *model_args]
    # Three batches of two images. The actors hold one CPU each, so torch runs one thread there: the serial run
    # here does too, for the same floating-point sums (pixels and scores are then bit-identical).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = pytester.runpytest(
            *common, "--t2i-cache-dir=serial-cache", "--t2i-report-dir=serial", "--html=serial/report.html"
        )
    finally:
        torch.set_num_threads(threads)
    serial.assert_outcomes(passed=4, failed=2)

    # The default cache dir (this machine's .pytest_cache) is not on shared storage: the driver keeps the cache.
    on_ray = pytester.runpytest(*common, "--t2i-ray=auto", "--t2i-report-dir=ray", "--html=ray/report.html")
    on_ray.assert_outcomes(passed=4, failed=2)
    assert comparable(pytester.path / "ray") == comparable(pytester.path / "serial")
    rows = report_rows(pytester.path / "ray")
    assert rows and rows == report_rows(pytester.path / "serial")
    environment = json.loads((pytester.path / "ray/results.json").read_text())["environment"]
    assert environment["t2i ray"] == "this process's Ray connection, 2 actor(s), one per CPU slot"
    assert environment["t2i pipeline"].endswith("sd-pipeline @ local dir") and environment["t2i device"] == "cpu"
    # The images came back to the driver, which stored them as verified entries under the actors' keys.
    cache = ImageCache(pytester.path / ".pytest_cache/d/t2i-images")
    for record in json.loads((pytester.path / "ray/results.json").read_text())["results"]:
        image = cache.get(record["cache_key"])
        assert image is not None and image_digest(image) == record["image_sha256"]

    # An actor dies on the first try of `flaky`'s batch (retried, passes) and on every try of `doomed`'s (only its
    # items fail); with a --t2i-cache-dir the actors write the cache themselves.
    pytester.makefile(".yaml", faults=suite(clip_labels, "flaky", "doomed", "fine"))
    deaths = pytester.mkdir("deaths")
    monkeypatch.setenv("T2I_RAY_TEST_EXIT", f"{deaths};flaky=1,doomed=3")
    faults = pytester.runpytest(
        "faults.yaml", "--t2i-batch-size=2", *model_args, "--t2i-ray=auto", "--t2i-cache-dir=shared", "-rf"
    )
    faults.assert_outcomes(passed=4, failed=2)
    assert sorted(p.name for p in deaths.iterdir()) == ["doomed-0", "doomed-1", "doomed-2", "flaky-0"]
    output = faults.stdout.str()
    assert (
        "t2i ray: 4 actor(s) died during the run, 3 batch(es) retried on other actors; last: ActorDiedError" in output
    )
    records = {
        (r["case"], r["seed"]): r for r in json.loads((pytester.path / "reports/results.json").read_text())["results"]
    }
    for seed in (0, 1):
        assert records[("flaky", seed)]["outcome"] == records[("fine", seed)]["outcome"] == "passed"
        doomed = records[("doomed", seed)]
        assert doomed["outcome"] == "failed" and doomed["image"] is None
        assert doomed["fault"].startswith("the Ray actor running this batch died 3 times (the batch was tried on 3")
    assert "image not scored: the Ray actor running this batch died 3 times" in output and "Traceback" not in output
    shared = ImageCache(pytester.path / "shared")
    assert shared.get(records[("flaky", 0)]["cache_key"]) is not None
    assert all_cpus_free(local_ray)  # the run stopped its actors, the replacements included


def test_unreachable_cluster_and_ray_with_xdist_are_usage_errors(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels, "owl"))
    started = time.perf_counter()
    result = pytester.runpytest("suite.yaml", *model_args, "--t2i-ray=127.0.0.1:1")
    assert time.perf_counter() - started < 10
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines == [
        "ERROR: --t2i-ray='127.0.0.1:1': the Ray cluster at 127.0.0.1:1 cannot be reached (connection to port 1 "
        "refused). Check that it is running (`ray status` on its head node) and the address: HOST:PORT of its GCS "
        "(port 6379 unless `ray start --head --port` said otherwise), or ray://HOST:10001 for Ray Client. Or leave "
        "the option out to run on this machine without Ray.",
        "",
    ]
    assert not (pytester.path / "reports/results.json").exists()

    xdist = pytester.runpytest("suite.yaml", *model_args, "--t2i-ray=local", "-n", "2")
    assert xdist.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: --t2i-ray and pytest-xdist's -n cannot be combined" in xdist.stderr.str()


CONFTEST_OTHER_SCHEDULER = """
import pytest
from diffusers import EulerDiscreteScheduler


@pytest.fixture(scope="session")
def t2i_pipeline(t2i_pipeline):
    t2i_pipeline.scheduler = EulerDiscreteScheduler.from_config(t2i_pipeline.scheduler.config)
    return t2i_pipeline
"""

CONFTEST_AUTOUSE_CLIP = """
import pytest


@pytest.fixture(autouse=True)
def softer_clip(clip_scorer):
    yield
"""


def test_conftest_overrides_refuse_ray_naming_the_fixture(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    for folder, conftest in (("euler", CONFTEST_OTHER_SCHEDULER), ("clip", CONFTEST_AUTOUSE_CLIP)):
        (pytester.mkdir(folder) / "conftest.py").write_text(conftest)
        (pytester.path / folder / "suite.yaml").write_text(suite(clip_labels, "owl"))
    (pytester.mkdir("plain") / "suite.yaml").write_text(suite(clip_labels, "owl"))
    # Refused before Ray is reached (this address would be a usage error of its own).
    result = pytester.runpytest(*model_args, "--t2i-ray=127.0.0.1:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line, _) = result.stderr.lines
    assert line.startswith(
        "ERROR: --t2i-ray: these cases cannot run on Ray: clip/conftest.py:5: fixture 'softer_clip' takes "
        "'clip_scorer' (and may change it) (e.g. clip/suite.yaml::owl[seed=0]); euler/conftest.py:6 overrides "
        "fixture 't2i_pipeline' (e.g. euler/suite.yaml::owl[seed=0]). The Ray actors load the plugin's own models"
    ), line
    assert "Run them without --t2i-ray" in line and "plain/" not in line
    # The other folder alone runs on Ray (it is refused here only for the address).
    plain = pytester.runpytest("plain", *model_args, "--t2i-ray=127.0.0.1:1")
    assert "cannot be reached" in plain.stderr.str()


def all_cpus_free(ray: Any, timeout: float = 10) -> bool:
    """The run's actors are gone (each held a CPU): the pool is whole again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU"):
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_on_ray_leaves_valid_reports_and_stops_the_actors(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, local_ray: Any
) -> None:
    body = "".join(
        f'- id: case-{n}\n  prompt: "{clip_labels.prompt}"\n  clip: {clip_labels.passing}\n' for n in range(24)
    )
    pytester.makefile(".yaml", suite=case_yaml(body, steps=4))
    results = pytester.path / "reports/results.json"
    result = run_interrupted_after_first_item(
        pytester,
        results,
        "suite.yaml",
        "--t2i-batch-size=2",
        "--t2i-ray=auto",
        "--html=reports/report.html",
        *model_args,
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    finished = json.loads(results.read_text())["results"]
    assert 1 <= len(finished) < 24 and {r["outcome"] for r in finished} == {"passed"}
    assert all((pytester.path / "reports" / r["image"]).is_file() for r in finished)
    html = (pytester.path / "reports/report.html").read_text()
    assert html.rstrip().endswith("</html>")
    assert f'data-passed="{len(finished)}" data-run="{len(finished)}"' in html
    assert not [p for p in (pytester.path / "reports").rglob("*.tmp")]
    assert all_cpus_free(local_ray)


def test_a_ctrl_c_inside_ray_is_raised_again_from_python_frames() -> None:
    """Ray's calls are compiled: a KeyboardInterrupt raised inside one has traceback entries without a line number,
    on which pytest's report of the interrupt crashed (INTERNAL_ERROR, seen once in CI). The runner's entry points
    raise it again from their own frame, the compiled frames' traceback dropped."""
    import traceback

    from harness.pytest_plugin.ray_images import _interrupt_from_python

    def deep_inside_ray() -> None:
        raise KeyboardInterrupt

    @_interrupt_from_python
    def scored() -> None:
        deep_inside_ray()

    with pytest.raises(KeyboardInterrupt) as caught:
        scored()
    names = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "deep_inside_ray" not in names and caught.value.__suppress_context__
