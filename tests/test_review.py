"""python -m harness review: decisions made in a real browser land in the baseline and the labels file exactly
as a run would write them, and the server refuses what a page of another site (or a malformed post) could send."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_browser import chromium  # noqa: F401 - the fixture

from conftest import Labels, case_yaml
from harness.reports.reviewed_labels import LABELS_FILE, read_labels
from harness.review.review_state import ReviewState, parse_decisions
from harness.review.server import ReviewServer

BASELINE = "baselines/main/suite.yaml.json"


def _suite(labels: Labels, *, changed: bool) -> str:
    """owl: a new prompt and a threshold it cannot meet (a new image, regressed); fox: the same image, a threshold
    it cannot meet (regressed by the judge); steady: unchanged."""
    passing = labels.passing[:-1] + (", min_prob: 0.99}" if changed else "}")
    owl_prompt = f"{labels.prompt} at night" if changed else labels.prompt
    return case_yaml(
        f"""
        - id: owl
          prompt: "{owl_prompt}"
          clip: {passing}
        - id: fox
          prompt: "{labels.prompt}"
          negative_prompt: "blurry"
          clip: {passing}
        - id: steady
          prompt: "{labels.prompt}"
          clip: {labels.passing}
        """
    )


@dataclass(frozen=True)
class Reviewed:
    root: Path  # the project: suite.yaml, baselines/, reports/
    cache: Path
    saved_first: str  # the baseline file as the first run saved it


@pytest.fixture
def reviewed(pytester: pytest.Pytester, run_args: list[str], clip_labels: Labels, shared_cache: Path) -> Reviewed:
    """A run with a baseline: saved, the case file changed, run again against it."""
    suite = pytester.path / "suite.yaml"
    suite.write_text(_suite(clip_labels, changed=False))
    pytester.runpytest("suite.yaml", "--t2i-save-baseline=main", *run_args).assert_outcomes(passed=3)
    saved_first = (pytester.path / BASELINE).read_text()
    shutil.copytree(pytester.path / "reports", pytester.path / "reports-first")  # the run the baseline came from
    suite.write_text(_suite(clip_labels, changed=True))
    pytester.runpytest("suite.yaml", "--t2i-baseline=main", *run_args).assert_outcomes(passed=1, failed=2)
    records = {r["case"]: r for r in json.loads((pytester.path / "reports/results.json").read_text())["results"]}
    assert records["owl"]["baseline"]["status"] == "regressed" and records["fox"]["baseline"]["status"] == "regressed"
    assert records["steady"]["baseline"]["status"] == "unchanged"
    return Reviewed(pytester.path, shared_cache, saved_first)


@pytest.fixture
def server(reviewed: Reviewed) -> Iterator[ReviewServer]:
    state = ReviewState.load(
        reviewed.root / "reports", reviewed.root, None, None, "Test Reviewer <t@example.org>", reviewed.cache
    )
    server = ReviewServer(state, log=lambda line: None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "baselines").rglob("*")) if p.is_file()}


@pytest.mark.browser
def test_keyboard_accept_and_reject_write_the_baseline_entry_and_the_labels(
    chromium: Any,  # noqa: F811 - the fixture imported above
    server: ReviewServer,
    reviewed: Reviewed,
    pytester: pytest.Pytester,
    run_args: list[str],
) -> None:
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(server.url)
    # The "changed" filter shows the two regressed units, hiding the unchanged one.
    assert page.eval_on_selector_all("section.unit:not([hidden])", "s => s.map(u => u.dataset.uid)") == [
        "suite.yaml::owl[seed=0]",
        "suite.yaml::fox[seed=0]",
    ]
    # owl has a new image: its baseline image comes from the cache, with the three diff views and a full-size link.
    owl = page.locator('section[data-uid="suite.yaml::owl[seed=0]"]')
    owl.locator("button[data-mode=overlay]").click()
    assert owl.locator(".overlay").is_visible() and not owl.locator("figure.heat").is_visible()
    owl.locator("input[type=range]").fill("20")
    assert "80%" in owl.locator(".overlay img.top").evaluate("img => img.style.clipPath")
    owl.locator("button[data-mode=heat]").click()
    heat = owl.locator("figure.heat img")
    heat.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=heat.element_handle())
    stats = owl.locator("figure.heat .stats")
    page.wait_for_function("el => el.textContent.length > 0", arg=stats.element_handle())
    assert "max difference" in stats.inner_text() and "of pixels changed" in stats.inner_text()
    full = owl.locator("figure.now a.full").get_attribute("href")
    assert full is not None
    with page.context.expect_page() as opened:
        owl.locator("figure.now a.full").click()
    full_page = opened.value
    full_page.wait_for_load_state()
    assert full_page.evaluate("() => document.images[0].naturalWidth") == 64  # the generated image's own size
    full_page.close()

    # Clicking in a unit made it the current one; the keys move from there.
    page.keyboard.press("k")
    assert page.eval_on_selector_all("section.unit.current", "s => s.map(u => u.dataset.uid)") == [
        "suite.yaml::owl[seed=0]"
    ]
    page.keyboard.press("a")
    page.wait_for_function("() => document.getElementById('message').textContent.endsWith('done')")
    assert page.get_attribute('section[data-uid="suite.yaml::owl[seed=0]"]', "data-decision") == "accept"
    assert page.inner_text('section[data-uid="suite.yaml::owl[seed=0]"] .badge').lower() == "unchanged"
    page.keyboard.press("j")
    page.keyboard.press("r")
    page.wait_for_function(
        "() => document.querySelector('section[data-uid=\"suite.yaml::fox[seed=0]\"]').dataset.decision === 'reject'"
    )
    # Bulk: the "unchanged" filter shows steady and the accepted owl; "Accept all shown" asks, then accepts both.
    page.check("input[name=filter][value=unchanged]")
    page.keyboard.press("j")  # the keys still work with the focus on the filter
    assert page.eval_on_selector_all("section.unit.current", "s => s.length") == 1
    shown = page.eval_on_selector_all("section.unit:not([hidden])", "s => s.map(u => u.dataset.uid)")
    assert shown == ["suite.yaml::owl[seed=0]", "suite.yaml::steady[seed=0]"]
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#accept-shown")
    page.wait_for_function(
        "() => document.querySelector('section[data-uid=\"suite.yaml::steady[seed=0]\"]').dataset.decision === 'accept'"
    )
    assert problems == []

    # The labels: the acceptance and the rejection, one entry per case, seed, judge and image cache key.
    labels = read_labels(reviewed.root / "baselines" / LABELS_FILE)
    records = {r["case"]: r for r in json.loads((reviewed.root / "reports/results.json").read_text())["results"]}
    by_case = {label.case: label for label in labels.values()}
    assert sorted(by_case) == ["fox", "owl", "steady"] and len(labels) == 3
    assert by_case["steady"].decision == "accept"
    assert by_case["fox"].decision == "reject" and by_case["fox"].judge == "clip"
    assert by_case["fox"].cache_key == records["fox"]["cache_key"] and by_case["fox"].verdict == "fail"
    assert by_case["owl"].decision == "accept" and by_case["owl"].by == "Test Reviewer <t@example.org>"
    reviewed_file = (reviewed.root / BASELINE).read_text()
    assert sorted(p.name for p in (reviewed.root / "baselines").iterdir()) == ["main", LABELS_FILE]

    # The same images run again (cached), saving another baseline: what --t2i-save-baseline writes for them.
    pytester.runpytest(
        "suite.yaml", "--t2i-save-baseline=by-run", "--t2i-baseline=main", *run_args, "--html=reports/report.html"
    ).assert_outcomes(passed=1, failed=2)  # accepting a failing verdict into the baseline does not pass it
    saved_by_run = json.loads((reviewed.root / "baselines/by-run/suite.yaml.json").read_text())
    # Accept wrote owl's entry exactly as that (same rounding, same fields); nothing else in the file changed.
    first = json.loads(reviewed.saved_first)
    expected = {**first, "items": {**first["items"], "owl[seed=0]": saved_by_run["items"]["owl[seed=0]"]}}
    assert expected["environment"] == saved_by_run["environment"]
    assert reviewed_file == json.dumps(expected, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert first["items"]["owl[seed=0]"] != expected["items"]["owl[seed=0]"]

    # That second run shows the human verdicts next to the judges' and how often each judge agreed with people.
    again = {r["case"]: r for r in json.loads((reviewed.root / "reports/results.json").read_text())["results"]}
    assert again["owl"]["baseline"]["status"] == "unchanged"  # accepted
    assert again["fox"]["human"]["clip"]["decision"] == "reject" and again["fox"]["human"]["clip"]["agrees"]
    assert again["owl"]["human"]["clip"]["decision"] == "accept" and again["steady"]["human"]["clip"]["agrees"]
    report = chromium.new_page()
    report.goto((reviewed.root / "reports/report.html").as_uri())
    agreement = report.eval_on_selector_all(
        "#t2i-human-agreement tbody tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))"
    )
    assert agreement == [["CLIP", "3", "3", "100%", agreement[0][4], "0"]]
    assert "human: fail (rejected as a regression)" in report.inner_text("body")


def _request(
    server: ReviewServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def test_requests_without_the_token_outside_the_run_or_malformed_are_refused_and_change_nothing(
    server: ReviewServer, reviewed: Reviewed
) -> None:
    root = reviewed.root
    (root / "secret.png").write_bytes((root / "reports/images").rglob("*.png").__next__().read_bytes())
    (root / "reports/images/link.png").symlink_to(root / "secret.png")
    before = _snapshot(root)
    token = server.token
    post = {"Content-Type": "application/json", "X-T2I-Token": token}
    accept = json.dumps({"decisions": [{"action": "accept", "unit": "suite.yaml::owl[seed=0]"}]}).encode()
    refused = [
        ("GET", "/", None, {}, 403),  # no token
        ("GET", "/?token=wrong", None, {}, 403),
        ("GET", f"/?token={token}", None, {"Host": "evil.example:80"}, 403),  # DNS rebinding
        ("GET", f"/run/../secret.png?token={token}", None, {}, 404),
        ("GET", f"/run/%2e%2e/secret.png?token={token}", None, {}, 404),
        ("GET", f"/run/images/link.png?token={token}", None, {}, 404),  # a link out of the run dir
        ("GET", f"/run/results.json?token={token}", None, {}, 404),  # not an image
        ("GET", f"/run/{root / 'secret.png'}?token={token}", None, {}, 404),  # absolute
        ("GET", f"/cached/{'0' * 64}.png?token={token}", None, {}, 404),  # not a key the page shows
        ("GET", f"/static/../server.py?token={token}", None, {}, 404),
        ("POST", "/api/decisions", accept, {"Content-Type": "application/json"}, 403),  # no token
        ("POST", "/api/decisions", accept, {**post, "X-T2I-Token": "wrong"}, 403),
        ("POST", "/api/decisions", accept, {**post, "Origin": "https://evil.example"}, 403),
        ("POST", "/api/decisions", accept, {**post, "Content-Type": "text/plain"}, 415),  # a cross-site form's
        ("POST", "/api/decisions", b"{not json", post, 400),
        ("POST", "/api/decisions", b'{"decisions": []}', post, 400),
        ("POST", "/api/decisions", b'{"decisions": [{"action": "delete", "unit": "x"}]}', post, 400),
        ("POST", "/api/decisions", b'{"decisions": [{"action": "accept", "unit": "nope"}]}', post, 400),
        ("POST", "/api/decisions", b'{"decisions": [{"action": "accept", "unit": 3}]}', post, 400),
        (
            "POST",
            "/api/decisions",
            b'{"decisions": [{"action": "accept", "unit": "suite.yaml::owl[seed=0]", "path": "/etc"}]}',
            post,
            400,
        ),
        (  # one bad decision refuses the whole post: the good one before it is not applied either
            "POST",
            "/api/decisions",
            json.dumps(
                {
                    "decisions": [
                        {"action": "accept", "unit": "suite.yaml::owl[seed=0]"},
                        {"action": "judge_wrong", "item": "suite.yaml::fox[seed=0]", "judge": "resnet"},
                    ]
                }
            ).encode(),
            post,
            400,
        ),
    ]
    for method, path, body, headers, status in refused:
        got, text = _request(server, method, path, body, headers)
        assert got == status, (method, path, headers, got, text)
        assert "refused" in text or got == 404
        assert _snapshot(root) == before, (method, path)
    # The same accept, with the token, is applied.
    status, text = _request(server, "POST", "/api/decisions", accept, post)
    assert status == 200, text
    assert _snapshot(root) != before
    # A labels file that cannot be written (here: a folder in its place) is said, in one paragraph, and the server
    # goes on; nothing else is written.
    labels = root / "baselines" / LABELS_FILE
    labels.unlink()
    labels.mkdir()
    before = _snapshot(root)
    reject = json.dumps({"decisions": [{"action": "reject", "unit": "suite.yaml::fox[seed=0]"}]}).encode()
    status, text = _request(server, "POST", "/api/decisions", reject, post)
    assert status == 500 and text.startswith("could not write the decision: ") and "Traceback" not in text
    assert str(labels) in text and _snapshot(root) == before
    assert _request(server, "GET", f"/?token={token}")[0] == 200


def test_ctrl_c_stops_the_server_with_nothing_half_written(reviewed: Reviewed) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "review", "--no-browser", "--cache-dir", str(reviewed.cache)],
        cwd=reviewed.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        url = lines[1].split("open ", 1)[1].split()[0]
        port, token = int(url.split(":")[2].split("/")[0]), url.split("token=")[1]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"decisions": [{"action": "reject", "unit": "suite.yaml::fox[seed=0]"}]})
        connection.request(
            "POST", "/api/decisions", body=body, headers={"Content-Type": "application/json", "X-T2I-Token": token}
        )
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "stopping" in err
    assert [p.name for p in (reviewed.root / "baselines").rglob(".*")] == []  # no temp file left
    assert len(read_labels(reviewed.root / "baselines" / LABELS_FILE)) == 1


def test_baseline_images_come_from_the_run_it_was_saved_from_or_the_cache(reviewed: Reviewed) -> None:
    from PIL import Image

    first = {r["case"]: r for r in json.loads((reviewed.root / "reports-first/results.json").read_text())["results"]}
    for cache, images_from, source in [
        (None, reviewed.root / "reports-first", "from " + str(reviewed.root / "reports-first")),
        (reviewed.cache, None, "from the image cache"),
    ]:
        state = ReviewState.load(reviewed.root / "reports", reviewed.root, "main", None, "me", cache, images_from)
        items = {item.record.case: item for item in state.items_by_index.values()}
        key = items["owl"].before_image
        assert key == first["owl"]["cache_key"] and state.baseline_image_source(key) == source
        entry = reviewed.cache / key[:2] / f"{key}.png"
        used = entry.stat().st_mtime_ns
        shown = state.baseline_image(key)
        assert entry.stat().st_mtime_ns == used  # shown, not counted as a use: nothing on disk changes
        with Image.open(reviewed.root / "reports-first" / first["owl"]["image"]) as expected:
            assert shown is not None and shown.tobytes() == expected.convert("RGB").tobytes()
        # fox kept its image (same cache key): nothing to show but this run's; and no key off the page is served.
        assert items["fox"].before_image is None and state.baseline_image(first["fox"]["cache_key"]) is None
    nowhere = ReviewState.load(reviewed.root / "reports", reviewed.root, "main", None, "me", None, None)
    assert all(item.before_image is None for item in nowhere.items_by_index.values())

    # A "judge is wrong" outlives a later Accept of the same image; taken back, the Accept's verdict takes its place.
    fox = "suite.yaml::fox[seed=0]"
    labels_file = reviewed.root / "baselines" / LABELS_FILE
    nowhere.apply(parse_decisions({"decisions": [{"action": "judge_wrong", "item": fox, "judge": "clip"}]}))
    nowhere.apply(parse_decisions({"decisions": [{"action": "accept", "unit": fox}]}))
    (label,) = read_labels(labels_file).values()
    assert (label.decision, label.verdict, label.judge_verdict) == ("judge_wrong", "pass", "fail")
    assert nowhere.unit(fox).items[0].labels["clip"].decision == "judge_wrong"
    undo = {"action": "judge_wrong", "item": fox, "judge": "clip", "wrong": False}
    nowhere.apply(parse_decisions({"decisions": [undo, {"action": "accept", "unit": fox}]}))
    (label,) = read_labels(labels_file).values()
    assert (label.decision, label.verdict) == ("accept", "fail")


def test_the_reviewer_is_named_from_git_config_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.reports.reviewed_labels import reviewer

    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("USER", "ann")
    assert reviewer(tmp_path) == "ann"  # no git identity at all: the login name
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.name", "Ann Lee"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.email", "ann@example.org"], check=True)
    assert reviewer(tmp_path) == "Ann Lee <ann@example.org>"
    monkeypatch.setenv("GIT_AUTHOR_NAME", "CI bot")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ci@example.org")
    assert reviewer(tmp_path) == "CI bot <ci@example.org>"


def test_a_review_without_a_run_or_a_baseline_to_write_is_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.__main__ import main

    assert main(["review", str(tmp_path / "nowhere"), "--no-browser"]) == 2
    assert "nowhere: no results.json here" in capsys.readouterr().err
    (tmp_path / "results.json").write_text('{"version": 1, "environment": {}, "results": []}')
    assert main(["review", str(tmp_path), "--root", str(tmp_path), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert "which baseline should this review write to?" in err and "Pass --baseline NAME" in err
    assert main(["review", str(tmp_path), "--baseline", "../x", "--no-browser"]) == 2
    assert "not a baseline name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["review", "--port", "70000"])
    assert "must be a port number" in capsys.readouterr().err
