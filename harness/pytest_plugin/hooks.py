"""The pytest plugin: options, collection of case files, results.json, report integration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.common.atomic import remove_interrupted_writes
from harness.common.model_loading import MissingModelError
from harness.pytest_plugin import availability, check_mode, ray_cluster
from harness.pytest_plugin import baseline_plugin as baseline
from harness.pytest_plugin import human_verdicts as human
from harness.pytest_plugin.collect import CaseFile, CaseItem, is_case_file
from harness.pytest_plugin.fixtures import fixture_context, harness_fixtures
from harness.pytest_plugin.html_report import HtmlReportHooks
from harness.pytest_plugin.options import add_options, check_options, model_ref
from harness.pytest_plugin.session_state import STATE_KEY, HarnessState, get_state
from harness.reports.report_rows import CASE_DRIFT_PROPERTY, ENVIRONMENT_PROPERTY, RECORD_PROPERTY, records_of
from harness.reports.results import ResultsWriter


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness.pytest_plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
    baseline.add_options(parser)
    human.add_options(parser)
    check_mode.add_options(parser)
    ray_cluster.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    state = HarnessState(config=config, checked=check_options(config))
    config.stash[STATE_KEY] = state
    if config.getoption("t2i_check"):
        checker = check_mode.CheckMode(config, model_ref(config))
        config.pluginmanager.register(checker, check_mode.PLUGIN_NAME)
        return
    if _is_xdist_controller(config):
        # Workers collect, the controller does not: resolve here, where a bad option still stops the run
        # with one line (raised on a worker, it would crash xdist instead).
        state.settings  # noqa: B018
    ray = ray_cluster.requested(config)
    if ray is not None:
        from harness.pytest_plugin import ray_run

        ray_run.check_combination(config, ray[1])
        # The actors load the models on the cluster's nodes and explain a missing one as the check would.
        config.pluginmanager.register(ray_run.RayRun(config, *ray), ray_run.PLUGIN_NAME)
    else:
        config.pluginmanager.register(availability.ModelCheck(config), availability.PLUGIN_NAME)
    if not hasattr(config, "workerinput"):
        # Under xdist only the controller, which receives every item's report, writes results.json.
        config.pluginmanager.register(ResultsRecorder(config), "t2i-results")
    config.pluginmanager.register(
        baseline.BaselinePlugin(config, baseline.resolve_baseline_settings(config)), "t2i-baseline"
    )
    # Workers read the labels when they collect; the controller now, so that a bad file is one usage error.
    config.pluginmanager.register(human.HumanVerdicts(config, load_now=_is_xdist_controller(config)), human.PLUGIN_NAME)
    if config.pluginmanager.hasplugin("html"):
        config.pluginmanager.register(HtmlReportHooks(config), "t2i-html")


def pytest_unconfigure(config: pytest.Config) -> None:
    # After every sessionfinish (the report is written there): a Ctrl-C may have cut a write short.
    remove_interrupted_writes()


def _is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` starts one worker per CUDA GPU (each binds to its own); else xdist's default."""
    if (config.getoption("t2i_device") or config.getini("t2i_device")) == "cpu":
        return None
    import torch

    return torch.cuda.device_count() or None


_CASE_SCOPE_KEY = pytest.StashKey[bool]()


def pytest_cmdline_main(config: pytest.Config) -> None:
    runs_nothing = config.getoption("t2i_check") or config.getoption("collectonly", False)
    if runs_nothing and getattr(config.option, "htmlpath", None):
        # A check or --collect-only runs nothing: it must not replace the last real run's report
        # with an empty one.
        config.option.htmlpath = None
    # With -n and no explicit --dist, keep each case's seeds on one worker (one pipeline call).
    explicit = any(arg == "--dist" or arg.startswith(("--dist=", "-d")) for arg in config.invocation_params.args)
    if getattr(config.option, "numprocesses", None) and not explicit and config.option.dist == "load":
        config.stash[_CASE_SCOPE_KEY] = True


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.stash.get(_CASE_SCOPE_KEY, False):
        from harness.pytest_plugin.xdist_scheduling import make_case_scheduler

        return make_case_scheduler(config, log)
    return None


def pytest_report_header(config: pytest.Config) -> list[str]:
    # Resolved already only on an xdist controller; elsewhere the lines follow collection.
    state = get_state(config)
    return _settings_lines(state) if state.resolved else []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The first point where it is known that this run needs the models: resolve the rest of the
    # options (imports torch) before any item runs, so a bad value is still one usage error.
    if not config.getoption("t2i_check") and any(_uses_harness(item) for item in items):
        state = get_state(config)
        state.settings  # noqa: B018
        if not config.getoption("collectonly", False) and not hasattr(config, "workerinput"):
            # Found now, not after the whole run has been generated and scored.
            problem = state.output.check_writable()
            if problem is not None:
                raise pytest.UsageError(problem)


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    state = get_state(config)
    if not state.resolved or _is_xdist_controller(config) or config.get_verbosity() < 0:
        return []
    return _settings_lines(state)


def _uses_harness(item: pytest.Item) -> bool:
    return isinstance(item, CaseItem) or not harness_fixtures(item.config).isdisjoint(getattr(item, "fixturenames", ()))


def _settings_lines(state: HarnessState) -> list[str]:
    settings = state.settings
    cache = str(settings.cache_dir) if settings.cache_dir is not None else "off"
    batch = settings.batch_size or "auto"
    lines = [
        f"t2i: model {settings.model}, clip {settings.clip_model}, resnet {settings.resnet_weights}",
        f"t2i: device {settings.device}, dtype {settings.dtype_name}, batch size {batch}, "
        f"report dir {settings.report_dir}, image cache {cache}",
    ]
    ray = ray_cluster.requested(state.config)
    if ray is not None:
        lines[1] = lines[1].replace(f"device {settings.device}, dtype {settings.dtype_name}", f"on Ray ({ray[0]})", 1)
    return lines


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CaseFile | None:
    if is_case_file(file_path, parent.config):
        return CaseFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    # Only selected seeds are generated (-k, -m, --lf), each case's in one pipeline call.
    cases = [item for item in session.items if isinstance(item, CaseItem)]
    if cases and not session.config.getoption("t2i_check"):  # a check runs nothing
        runner = get_state(session.config).images
        for item in cases:
            context = fixture_context(item, fallback=item.case_key)
            for seed in item.seeds:
                runner.plan(item.case_key, item.case, seed, context)


def _outcome(report: pytest.TestReport) -> str | None:
    """The item's final outcome if this report decides it, else None."""
    if report.when == "setup" and report.passed:
        return None
    if report.when == "teardown":
        return None
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.when == "setup":
        return "skipped" if report.skipped else "error"
    return report.outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, MissingModelError):
        if hasattr(report, "wasxfail"):
            # pytest's skipping plugin makes any exception of an xfail item "xfailed"; a missing model
            # means the case never ran, so it is an error, whatever the case expects.
            del report.wasxfail
            report.outcome = "failed"
        report.longrepr = _missing_model_text(item.config, call.excinfo.value)
    if isinstance(item, CaseItem):
        outcome = _outcome(report)
        if outcome is not None:
            state = get_state(item.config)
            for record in item.final_records(outcome, report.duration):
                report.user_properties.append((RECORD_PROPERTY, record.to_json()))
            if item.case_drift is not None:
                drift = {**item.case_drift, "file": item.file_nodeid, "case": item.case.id}
                report.user_properties.append((CASE_DRIFT_PROPERTY, drift))
            if hasattr(item.config, "workerinput"):
                # Models load on xdist workers; the controller writes the environment section.
                report.user_properties.append((ENVIRONMENT_PROPERTY, dict(state.environment)))
    return report


# The models' fixtures (the pipeline's and each judge's): session-scoped, so pytest keeps a failed setup's
# exception and raises it again for every later item.
def _is_model_fixture(fixturedef: pytest.FixtureDef[Any], config: pytest.Config) -> bool:
    return fixturedef.scope == "session" and (
        fixturedef.argname == "t2i_pipeline" or fixturedef.argname in get_state(config).judges.fixtures(config)
    )


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: Any) -> Any:  # request: a SubRequest
    try:
        return (yield)
    except pytest.fail.Exception:
        # A load interrupted by an item's time limit (pytest-timeout fails the item there) says nothing
        # about the model: forget it, so the next item loads again instead of failing with this timeout.
        if _is_model_fixture(fixturedef, request.config):
            fixturedef.finish(request)  # drops pytest's cached exception, as after a scope ends
        raise


def _missing_model_text(config: pytest.Config, error: MissingModelError) -> str:
    # The full paragraph once; every later item that needed the same model gets one line.
    seen = get_state(config).errors_seen
    if error.key in seen:
        return error.summary
    seen.add(error.key)
    return str(error)


class ResultsRecorder:
    """Collects every item's record (on the xdist controller too) and keeps results.json current."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        state = get_state(config)
        # The writer keeps its records in state.finished, which the report's summary reads.
        self.writer = ResultsWriter(state.report_dir, state.finished, state.case_drifts)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        records = records_of(report)
        if not records or report.outcome == "rerun":  # pytest-rerunfailures: not the item's final result
            return
        state = get_state(self.config)
        for name, value in report.user_properties:
            if name == ENVIRONMENT_PROPERTY and isinstance(value, dict):
                state.environment.update(value)
            if name == CASE_DRIFT_PROPERTY and isinstance(value, dict):
                key = (str(value["file"]), str(value["case"]))
                self.writer.case_drifts[key] = {k: v for k, v in value.items() if k not in ("file", "case")}
        for record in records:
            self.writer.add(record)  # into state.finished
        # Rewritten after every item (atomically), so an interrupted run leaves a valid file.
        self._write(state)

    def _write(self, state: HarnessState) -> None:
        state.output.write(self.writer.path, self.writer.text(state.environment).encode("utf-8"))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        state = get_state(self.config)
        if state.finished:
            self._write(state)

    @pytest.hookimpl(wrapper=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_fails_on_lost_files(self, session: pytest.Session) -> Any:
        # After every other sessionfinish, pytest-html's write of report.html included (pytest reads only
        # names that start with "pytest_"; specname ties this one to pytest_sessionfinish).
        result = yield
        if get_state(self.config).output.problem is not None and session.exitstatus == pytest.ExitCode.OK:
            # The verdicts are fine, but the files people review are not: the run must not look green.
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return result

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        problem = get_state(self.config).output.problem
        if problem is not None:
            terminalreporter.write_sep("=", "t2i: report dir not written", red=True, bold=True)
            terminalreporter.write_line(problem)
