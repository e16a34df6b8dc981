"""The internals of pytest, pytest-html, pytest-xdist and pytest-metadata the harness relies on, one test each.

None of them is a documented API, so a release may change any of them without notice. Each test fails with a
message naming the internal and the harness module that depends on it, and checks that the harness behaviour
built on it takes effect on the installed versions, not only that the harness's fallback runs (several
fallbacks are silent). PRIVATE_APIS.md lists them with what a change would do.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import traceback
from pathlib import Path
from typing import Any

import pytest
from test_report import report_data

from harness.reports.report_rows import columns

# The report's columns with the built-in judges (every run registers them).
COLUMNS = columns(["CLIP", "ResNet top 5"])

# Seeds 0-2 of one case: three items.
ONE_CASE = """\
defaults:
  seeds: [0, 1, 2]
cases:
  - id: owl
    prompt: "an owl"
    clip: {expect: "an owl", distractors: ["a hawk"]}
"""

# Decided at setup before any fixture (session-scoped model fixtures would be set up before an autouse one):
# nothing is loaded or generated. After the skipping plugin's tryfirst setup hook, so `xfail:` still counts.
SEED_1_FAILS = """
import pytest


def pytest_runtest_setup(item):
    if item.seed == 1:
        pytest.fail("seed 1 fails")
    pytest.skip("not run")
"""
ALL_FAIL = "import pytest\n\n\ndef pytest_runtest_setup(item):\n    pytest.fail('x')\n"
ALL_SKIP = "import pytest\n\n\ndef pytest_runtest_setup(item):\n    pytest.skip('x')\n"


def broken(api: str, user: str, what: str) -> str:
    """A failure message: which internal changed, which harness module depends on it, and what it does now."""
    return f"{api} (relied on by {user}) changed on pytest {pytest.__version__}:\n{what}"


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def items_run(result: pytest.RunResult) -> list[str]:
    """The node ids a `-v` run reported, in the order they ran."""
    return [
        line.split()[0]
        for line in result.stdout.lines
        if re.match(r"\S+\.yaml::\S+ (PASSED|FAILED|ERROR|SKIPPED)", line)
    ]


# -- pytest: node ids (collect.py, CaseItem._structure_node_id) --------------------------------------------


def test_node_id_storage_is_what_collect_restructures(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", suite=ONE_CASE)
    items, _ = pytester.inline_genitems("suite.yaml")
    # Node declares both in __slots__ (pytest 8 `_nodeid`, 9.2 `_id`): read them, vars() does not hold them.
    stored = {name: getattr(items[0], name) for name in ("_nodeid", "_id") if hasattr(items[0], name)}
    api = "Node._id / _pytest.nodeid.NodeId.child().with_params()"
    if importlib.util.find_spec("_pytest.nodeid") is None:
        # pytest < 9.2 keeps the id as a plain string, and --lf compares strings: nothing to restructure.
        assert isinstance(stored.get("_nodeid"), str) and "_id" not in stored, broken(
            api,
            "collect.py CaseItem._structure_node_id",
            "pytest has no _pytest.nodeid module, yet a node does not keep its id as the string `_nodeid` either; "
            f"it has {stored!r}. Find how this pytest stores and "
            "reads back node ids (--lf, --ff) and restructure the case item's id the same way.",
        )
        return
    from _pytest.nodeid import NodeId

    node_id = stored.get("_id")
    assert isinstance(node_id, NodeId), broken(
        api,
        "collect.py CaseItem._structure_node_id",
        f"pytest has _pytest.nodeid, but the item's `_id` is {node_id!r}, not a NodeId: the hasattr guard in "
        "_structure_node_id now skips the restructuring, and --lf/--ff no longer find case items.",
    )
    expected = NodeId.parse(items[0].nodeid)
    assert node_id == expected, broken(
        api,
        "collect.py CaseItem._structure_node_id",
        f"the case item's id is {node_id!r},\nbut pytest reads {items[0].nodeid!r} back from its cache as "
        f"{expected!r}:\nthey differ, so --lf, --ff, --nf and --sw never match a case item.",
    )


def test_last_failed_and_failed_first_reselect_a_case_item(pytester: pytest.Pytester, model_args: list[str]) -> None:
    # The behaviour CaseItem._structure_node_id exists for, on whatever pytest is installed.
    pytester.makeconftest(SEED_1_FAILS)
    pytester.makefile(".yaml", suite=ONE_CASE)
    pytester.runpytest("suite.yaml", *model_args).assert_outcomes(skipped=2, errors=1)
    what = "collect.py CaseItem._structure_node_id (pytest's node id structure)"
    last_failed = items_run(pytester.runpytest("suite.yaml", "--lf", "-v", *model_args))
    assert last_failed == ["suite.yaml::owl[seed=1]"], broken(
        "--lf re-selection of a case item",
        what,
        f"after seed 1 failed, `--lf` ran {last_failed} instead of only suite.yaml::owl[seed=1]: the case item's id "
        "does not equal the id pytest reads back from .pytest_cache.",
    )
    failed_first = items_run(pytester.runpytest("suite.yaml", "--ff", "-v", *model_args))
    assert failed_first[0] == "suite.yaml::owl[seed=1]", broken(
        "--ff ordering of a case item", what, f"`--ff` ran {failed_first}: the failed seed 1 should come first."
    )


# -- pytest: the fixture lookup (fixtures.py) ------------------------------------------------------------


def test_fixture_lookup_has_the_shape_harness_fixtures_calls(request: pytest.FixtureRequest) -> None:
    users = "fixtures.py fixture_context, is_own_fixture, loads_own_fixture"
    manager = getattr(request.session, "_fixturemanager", None)
    assert manager is not None, broken("Session._fixturemanager", users, "the session has no _fixturemanager.")
    assert getattr(request, "_fixturemanager", None) is manager, broken(
        "FixtureRequest._fixturemanager",
        "fixtures.py is_own_fixture",
        "the request has no _fixturemanager.",
    )
    assert parameters(manager.getfixturedefs) == ["argname", "node"], broken(
        "FixtureManager.getfixturedefs(argname, node)",
        users,
        f"its parameters are {parameters(manager.getfixturedefs)}.",
    )
    definitions = manager.getfixturedefs("clip_scorer", request.node)
    assert definitions and isinstance(definitions[-1], pytest.FixtureDef), broken(
        "FixtureManager.getfixturedefs", users, f"it returned {definitions!r} for the plugin's clip_scorer."
    )
    own = definitions[-1]
    assert getattr(own.func, "__module__", None) == "harness.judging.clip", broken(
        "FixtureDef.func", users, f"the plugin's clip_scorer definition has func={own.func!r}."
    )
    assert tuple(own.argnames) == ("pytestconfig", "t2i_settings"), broken(
        "FixtureDef.argnames",
        "fixtures.py loads_own_fixture",
        f"clip_scorer's argnames are {own.argnames!r}.",
    )


PROBE_TEST = """
import json

from harness.pytest_plugin.fixtures import fixture_context, is_own_fixture, loads_own_fixture


def test_probe(request):
    answer = {
        "is_own_fixture": is_own_fixture(request, "clip_scorer", "harness.judging.clip"),
        "loads_own_fixture": loads_own_fixture(request.node, "clip_scorer", "harness.judging.clip"),
        "fixture_context": repr(fixture_context(request.node, fallback="FALLBACK")),
    }
    (request.config.rootpath / (request.node.path.parent.name + ".json")).write_text(json.dumps(answer))
"""


def fixture_answers(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    """What the three lookups answer for a test in a folder with the plugin's clip_scorer, one with an override
    that wraps it, and one with an override that replaces it. No model is loaded."""
    overrides = {
        "plain": None,
        "wrapped": "@pytest.fixture(scope='session')\ndef clip_scorer(clip_scorer):\n    return clip_scorer\n",
        "replaced": "@pytest.fixture(scope='session')\ndef clip_scorer():\n    return object()\n",
    }
    for folder, conftest in overrides.items():
        pytester.mkdir(folder)
        (pytester.path / folder / f"test_{folder}.py").write_text(PROBE_TEST)
        if conftest is not None:
            (pytester.path / folder / "conftest.py").write_text("import pytest\n\n\n" + conftest)
    pytester.runpytest().assert_outcomes(passed=3)
    return {folder: json.loads((pytester.path / f"{folder}.json").read_text()) for folder in overrides}


def test_is_own_fixture_tells_the_plugins_fixture_from_an_override(pytester: pytest.Pytester) -> None:
    answers = {folder: answer["is_own_fixture"] for folder, answer in fixture_answers(pytester).items()}
    assert answers == {"plain": True, "wrapped": False, "replaced": False}, broken(
        "FixtureRequest._fixturemanager.getfixturedefs",
        "fixtures.py is_own_fixture",
        f"is_own_fixture(request, 'clip_scorer') answered {answers}. A False for 'plain' is its silent fallback: "
        "scores are then never reused from the score cache, and a fully cached run still loads the pipeline.",
    )


def test_loads_own_fixture_sees_through_an_override_that_wraps_it(pytester: pytest.Pytester) -> None:
    answers = {folder: answer["loads_own_fixture"] for folder, answer in fixture_answers(pytester).items()}
    assert answers == {"plain": True, "wrapped": True, "replaced": False}, broken(
        "Session._fixturemanager.getfixturedefs",
        "fixtures.py loads_own_fixture (availability.py item_needs)",
        f"loads_own_fixture(item, 'clip_scorer') answered {answers}. A False where the plugin's model loads is "
        "its silent fallback: that model is not looked for before the run, so a missing one is not named up front.",
    )


def test_fixture_context_tells_folders_with_other_fixtures_apart(pytester: pytest.Pytester) -> None:
    contexts = {folder: answer["fixture_context"] for folder, answer in fixture_answers(pytester).items()}
    fell_back = [folder for folder, context in contexts.items() if context == repr("FALLBACK")]
    assert not fell_back, broken(
        "Session._fixturemanager.getfixturedefs",
        "fixtures.py fixture_context",
        f"fixture_context returned its fallback for {fell_back}: batching silently stays within one case.",
    )
    assert len(set(contexts.values())) == 3, broken(
        "Session._fixturemanager.getfixturedefs",
        "fixtures.py fixture_context",
        f"three folders with three clip_scorer definitions got the contexts {contexts}; items that see another "
        "CLIP must never share a batch.",
    )


# -- pytest: FixtureDef.finish (hooks.py pytest_fixture_setup) ------------------------------------------

FIRST_CLIP_LOAD_INTERRUPTED = """
import pytest

import harness.common.model_loading

_load = harness.common.model_loading.load_clip
LOADS = []


def first_load_interrupted(*args, **kwargs):
    LOADS.append(1)
    if len(LOADS) == 1:
        pytest.fail("Timeout (>6.0s) from pytest-timeout.")  # what pytest-timeout raises mid-load
    return _load(*args, **kwargs)


harness.common.model_loading.load_clip = first_load_interrupted


def pytest_unconfigure(config):
    harness.common.model_loading.load_clip = _load
"""


def test_fixturedef_finish_forgets_an_interrupted_model_load(pytester: pytest.Pytester, model_args: list[str]) -> None:
    assert parameters(pytest.FixtureDef.finish) == ["self", "request"], broken(
        "FixtureDef.finish(request)",
        "hooks.py pytest_fixture_setup",
        f"its parameters are {parameters(pytest.FixtureDef.finish)}.",
    )
    pytester.makeconftest(FIRST_CLIP_LOAD_INTERRUPTED)
    pytester.makepyfile("def test_first(clip_scorer):\n    pass\n\n\ndef test_second(clip_scorer):\n    pass\n")
    result = pytester.runpytest(*model_args)
    outcomes = {key: value for key, value in result.parseoutcomes().items() if key in ("passed", "errors")}
    assert outcomes == {"passed": 1, "errors": 1}, broken(
        "FixtureDef.finish(request)",
        "hooks.py pytest_fixture_setup",
        f"after the first load of clip_scorer was interrupted, the outcomes are {outcomes} instead of 1 error and "
        "1 pass: pytest kept the interrupted load's exception for the second test.\n" + result.stdout.str()[-2000:],
    )


# -- pytest: frames told apart by package name (errors.py innermost_frame) -------------------------------


def test_runner_frames_are_told_apart_by_package_name() -> None:
    from harness.common.errors import _RUNNER_MODULES, innermost_frame

    def interrupted_here() -> None:
        pytest.fail("Timeout (>6.0s) from pytest-timeout.")

    with pytest.raises(pytest.fail.Exception) as excinfo:
        interrupted_here()
    where = innermost_frame(excinfo.value)
    assert where.endswith(" in interrupted_here"), broken(
        f"pytest's code living under a folder named one of {_RUNNER_MODULES}",
        "errors.py innermost_frame (an interrupted item's 'interrupted at ...' line)",
        f"the innermost frame outside the test runner is {where!r}, not the function that called pytest.fail "
        f"(pytest.fail raised it in {traceback.extract_tb(excinfo.value.__traceback__)[-1].filename}).",
    )
    timeout = pytest.importorskip("pytest_timeout")
    assert "/pytest_timeout" in Path(timeout.__file__).as_posix(), broken(
        "pytest-timeout's module name", "errors.py _RUNNER_MODULES", f"it lives in {timeout.__file__}."
    )


# -- pytest: attributes without an underscore that no documentation lists (availability.py, plugin.py) --


def test_session_and_option_attributes_the_harness_reads(request: pytest.FixtureRequest) -> None:
    assert isinstance(getattr(request.session, "testsfailed", None), int), broken(
        "Session.testsfailed",
        "availability.py ModelCheck.pytest_runtestloop, check_mode.py",
        "the session has no int testsfailed.",
    )
    option = request.config.option
    for dest in ("collectonly", "continue_on_collection_errors"):
        assert isinstance(getattr(option, dest, None), bool), broken(
            f"config.option.{dest}",
            "availability.py ModelCheck.pytest_runtestloop",
            "no such bool option.",
        )


XFAIL_CASE = """\
defaults:
  seeds: [0]
cases:
  - id: owl
    prompt: "an owl"
    clip: {expect: "an owl", distractors: ["a hawk"]}
    xfail: "known confusion"
"""


def test_an_xfail_case_that_fails_is_recorded_as_xfailed(pytester: pytest.Pytester, model_args: list[str]) -> None:
    # hooks.py _outcome tells xfailed from skipped by the skipping plugin's `report.wasxfail`.
    pytester.makeconftest(ALL_FAIL)
    pytester.makefile(".yaml", suite=XFAIL_CASE)
    pytester.runpytest("suite.yaml", *model_args).assert_outcomes(xfailed=1)
    (record,) = json.loads((pytester.path / "reports/results.json").read_text())["results"]
    assert record["outcome"] == "xfailed", broken(
        "TestReport.wasxfail (set by pytest's skipping plugin)",
        "hooks.py _outcome, pytest_runtest_makereport",
        f"results.json records an xfailed case item as {record['outcome']!r}.",
    )


# -- pytest-html (pytest_html_compat.py, html_report.py, hooks.py) ---------------------------


def test_pytest_html_report_has_what_pytest_html_compat_wraps() -> None:
    from pytest_html import __version__
    from pytest_html.basereport import BaseReport
    from pytest_html.report_data import ReportData

    expected = {
        BaseReport._write_report: ["self", "rendered_report"],
        BaseReport._generate_report: ["self", "self_contained"],
        BaseReport._generate_environment: ["self"],
        ReportData.set_data: ["self", "key", "value"],
    }
    for method, names in expected.items():
        assert parameters(method) == names, (
            f"pytest-html {__version__}: {method.__qualname__} takes {parameters(method)}, not {names}; "
            "pytest_html_compat.py _wrap calls it with those."
        )


def test_report_html_is_written_through_the_harness_atomic_wrapper(pytester: pytest.Pytester) -> None:
    from pytest_html import __version__
    from pytest_html.basereport import BaseReport

    report_plugins: list[Any] = []

    class KeepReportPlugins:
        @pytest.hookimpl(trylast=True)
        def pytest_sessionfinish(self, session: pytest.Session) -> None:
            plugins = session.config.pluginmanager.get_plugins()
            report_plugins.extend(plugin for plugin in plugins if isinstance(plugin, BaseReport))

    pytester.makepyfile("def test_nothing():\n    pass\n")
    report = pytester.mkdir("reports") / "report.html"
    report.write_text("the last run's report")
    os.link(report, pytester.path / "link.html")  # an in-place write would change what the link reads
    before = report.stat().st_ino
    html_args = ["--html=reports/report.html", "--self-contained-html", "--metadata", "evil", "<b>x</b>"]
    result = pytester.runpytest(*html_args, plugins=[KeepReportPlugins()])
    result.assert_outcomes(passed=1)
    where = f"pytest-html {__version__}, pytest_html_compat.py _wrap"
    (plugin,) = report_plugins
    assert getattr(plugin, "_t2i_wrapped", False), f"{where}: the report plugin was not wrapped."
    assert Path(plugin._report_path) == report, f"{where}: _report_path is {plugin._report_path!r}, not {report}."
    for name, purpose in (("_write_report", "the atomic write"), ("_generate_report", "the escaped environment")):
        assert name in vars(plugin), f"{where}: {name}, wrapped for {purpose}, is not the harness's wrapper."
    assert (pytester.path / "link.html").read_text() == "the last run's report" and report.stat().st_ino != before, (
        f"{where}: report.html was written in place: pytest-html no longer writes through self._write_report."
    )
    assert sorted(path.name for path in report.parent.iterdir()) == ["report.html"], f"{where}: a temp file is left."
    environment = report_data(report.read_text())["environment"]
    assert environment.get("evil") == "&lt;b&gt;x&lt;/b&gt;", (
        f"{where}: the environment value '<b>x</b>' is in the page as {environment.get('evil')!r}: pytest-html "
        "no longer generates the page through self._generate_report, or sets the environment after it."
    )


def test_the_test_cell_pytest_html_builds_is_rebuilt_escaped(pytester: pytest.Pytester) -> None:
    from pytest_html import __version__

    pytester.makepyfile(
        test_cell='import pytest\n\n\n@pytest.mark.parametrize("x", ["<b>bold</b>"])\ndef test_id(x):\n    pass\n'
    )
    result = pytester.runpytest("--html=report.html")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    (row,) = [
        row for rows in report_data((pytester.path / "report.html").read_text())["tests"].values() for row in rows
    ]
    cells = [cell for cell in row["resultsTableRow"] if "col-testId" in cell]
    assert cells == ['<td class="col-testId">test_cell.py::test_id[&lt;b&gt;bold&lt;/b&gt;]</td>'], (
        f"pytest-html {__version__}: pytest_html_compat.py escape_test_id expects the Test cell as "
        f"'<td class=\"col-testId\">...</td>'; the page's Test cells are {cells}."
    )
    # html_report.py inserts its columns at index 2 of the header and of every row: after Result and Test.
    columns = [re.sub(r'^<td class="([^"]+)".*', r"\1", cell, flags=re.DOTALL) for cell in row["resultsTableRow"]]
    expected = ["col-result", "col-testId", *["col-t2i"] * len(COLUMNS)]
    assert columns[: len(expected)] == expected, (
        f"pytest-html {__version__}: html_report.py puts its {len(COLUMNS)} columns at index 2, after Result and "
        f"Test; the row's columns are now {columns}."
    )


def test_the_names_the_harness_finds_pytest_html_and_xdist_by(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig("--html=somewhere/report.html", "-n", "2")
    assert getattr(config.option, "htmlpath", None) == "somewhere/report.html", (
        "pytest-html's --html is no longer stored as config.option.htmlpath: pytest_html_compat.py "
        "adapt_report_plugins would then silently leave report.html neither atomic nor escaped, and hooks.py "
        "pytest_cmdline_main would let --collect-only and --t2i-check replace the last report."
    )
    assert config.pluginmanager.hasplugin("html"), (
        "pytest-html is no longer registered as 'html': hooks.py would silently not register its report hooks."
    )
    assert config.pluginmanager.hasplugin("xdist"), (
        "pytest-xdist is no longer registered as 'xdist': collect.py adds no xdist_group marks."
    )
    assert getattr(config.option, "numprocesses", None) == 2 and getattr(config.option, "dist", None) == "no", (
        "pytest-xdist's -n and --dist are no longer config.option.numprocesses and config.option.dist: "
        "hooks.py would silently neither schedule by case nor resolve the options on the controller."
    )


def test_the_harness_environment_reaches_the_report_through_pytest_metadata(pytester: pytest.Pytester) -> None:
    from pytest_metadata.plugin import metadata_key

    assert isinstance(metadata_key, pytest.StashKey), f"pytest_metadata.plugin.metadata_key is {metadata_key!r}"
    pytester.makepyfile(
        "from harness.pytest_plugin.session_state import get_state\n\n\n"
        "def test_env(pytestconfig):\n    get_state(pytestconfig).environment['t2i probe'] = 'loaded'\n"
    )
    pytester.runpytest("--html=report.html").assert_outcomes(passed=1)
    environment = report_data((pytester.path / "report.html").read_text())["environment"]
    assert environment.get("t2i probe") == "loaded", (
        "html_report.py HtmlReportHooks.pytest_sessionfinish adds the models to config.stash[metadata_key], "
        f"but the report's environment lacks them: {sorted(environment)}."
    )


# -- pytest-xdist (xdist_scheduling.py, hooks.py) ------------------------------------------------


def test_xdist_hooks_and_scheduler_have_the_shape_xdist_scheduling_uses(request: pytest.FixtureRequest) -> None:
    import xdist
    from xdist.scheduler import LoadScopeScheduling

    hook = request.config.pluginmanager.hook
    for name, names in (
        ("pytest_xdist_make_scheduler", ["config", "log"]),
        ("pytest_xdist_auto_num_workers", ["config"]),
    ):
        caller = getattr(hook, name, None)
        # hooks.py implements both with optionalhook=True: without the spec pluggy never calls them.
        assert caller is not None and caller.spec is not None, (
            f"pytest-xdist {xdist.__version__} no longer declares {name}; hooks.py's implementation is "
            "silently never called."
        )
        assert list(caller.spec.argnames) == names, f"xdist's {name} takes {caller.spec.argnames}, not {names}."
    init = parameters(LoadScopeScheduling.__init__)
    assert init[:3] == ["self", "config", "log"], f"xdist's LoadScopeScheduling.__init__ takes {init}."
    split = getattr(LoadScopeScheduling, "_split_scope", None)
    assert split is not None and parameters(split) == ["self", "nodeid"], (
        f"pytest-xdist {xdist.__version__}: LoadScopeScheduling._split_scope(nodeid) is gone or changed: "
        "xdist_scheduling.py's override is silently never called, and all cases of a file go to one worker."
    )


TWO_CASES = """\
defaults:
  seeds: [0, 1]
cases:
  - id: owl
    prompt: "an owl"
    clip: {expect: "an owl", distractors: ["a hawk"]}
  - id: fox
    prompt: "a fox"
    clip: {expect: "a fox", distractors: ["a dog"]}
"""


def test_xdist_schedules_case_items_by_case(pytester: pytest.Pytester, model_args: list[str]) -> None:
    # One file: loadscope's own split (by module) would send both cases to one worker.
    pytester.makeconftest(ALL_SKIP)
    pytester.makefile(".yaml", suite=TWO_CASES)
    result = pytester.runpytest_inprocess("-n", "2", "-v", "suite.yaml", *model_args)
    result.assert_outcomes(skipped=4)
    output = result.stdout.str()
    assert "scheduling tests via CaseScopeScheduling" in output, (
        "hooks.py pytest_xdist_make_scheduler did not install xdist_scheduling.py's scheduler "
        "(it reads config.option.numprocesses and config.option.dist == 'load').\n" + output[-2000:]
    )
    workers: dict[str, set[str]] = {}
    for worker, case in re.findall(r"\[(gw\d)\] .*SKIPPED \S+::(\S+)\[seed=\d\]", output):
        workers.setdefault(case, set()).add(worker)
    assert sorted(workers) == ["fox", "owl"] and all(len(names) == 1 for names in workers.values()), workers
    assert workers["fox"] != workers["owl"], (
        "xdist_scheduling.py CaseScopeScheduling overrides xdist's LoadScopeScheduling._split_scope, but "
        f"the two cases of one file ran on one worker ({workers}), as --dist loadscope sends them: xdist no longer "
        "asks _split_scope for each node id's scope."
    )
    records = json.loads((pytester.path / "reports/results.json").read_text())["results"]
    assert len(records) == 4, (
        f"results.json has {len(records)} records instead of 4: hooks.py tells the xdist controller, which "
        "writes it, from a worker by config.workerinput."
    )
