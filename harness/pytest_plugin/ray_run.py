"""A run with --t2i-ray: refused or connected before any item runs, the actors stopped after the last one.

Refused when an item would see a model the actors cannot build from the options: a conftest.py that overrides
the pipeline or a judge's fixture, a fixture that takes one and changes it (another scheduler), or a judge
whose model lives in a fixture of its own. The actors load the plugin's own models; running those items on
Ray would silently judge the plain pipeline's images.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.pytest_plugin import ray_cluster
from harness.pytest_plugin.ray_actor import ACTOR_FIXTURES, TEST_EXIT_ENV, ActorOptions

if TYPE_CHECKING:
    from harness.pytest_plugin.collect import CaseItem
    from harness.pytest_plugin.ray_images import RayScoredImages
    from harness.pytest_plugin.session_state import HarnessState

PLUGIN_NAME = "t2i-ray"
_PIPELINE_MODULE = "harness.pytest_plugin.fixtures"
_PIPELINE_FIXTURES = ("t2i_settings", "t2i_pipeline")


def check_combination(config: pytest.Config, where: str) -> None:
    """Ray spreads the batches itself: with pytest-xdist on top, every worker would start its own actors."""
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError(
            f"{where} and pytest-xdist's -n cannot be combined: with --t2i-ray, pytest runs the items in one "
            "process and the Ray actors (one per GPU or CPU slot of the cluster) share the work; drop -n, or "
            "drop --t2i-ray to run on this machine's GPUs with xdist."
        )


class RayRun:
    def __init__(self, config: pytest.Config, value: str, where: str) -> None:
        self.config = config
        self.value = value
        self.where = where

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        from harness.pytest_plugin.collect import CaseItem
        from harness.pytest_plugin.session_state import get_state

        option = session.config.option
        if option.collectonly or (session.testsfailed and not option.continue_on_collection_errors):
            return  # nothing will run
        items = [item for item in session.items if isinstance(item, CaseItem) and item.case.skip is None]
        if not items:
            return
        problem = refusal(items, self.where)
        if problem is not None:
            raise pytest.UsageError(problem)
        cluster = ray_cluster.connect(self.value, self.where)  # a UsageError naming the address if unreachable
        state = get_state(self.config)
        runner = self.runner(state)
        try:
            actors = runner.start(cluster, actor_options(self.config, state), state.judges.by_section)
        except BaseException:
            runner.close()
            raise
        state.environment["t2i ray"] = cluster.describe(actors)

    @staticmethod
    def runner(state: HarnessState) -> RayScoredImages:
        from harness.pytest_plugin.ray_images import RayScoredImages

        images = state.images
        assert isinstance(images, RayScoredImages)
        return images

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from harness.pytest_plugin.session_state import get_state

        state = get_state(self.config)
        if state.resolved:
            runner = self.runner(state)
            state.environment.update(runner.environment)  # for the report (written earlier in sessionfinish too)
            runner.close()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from harness.pytest_plugin.session_state import get_state

        # The models the actors loaded, device and dtype: in results.json from the first item on.
        state = get_state(self.config)
        if state.resolved:
            state.environment.update(self.runner(state).environment)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from harness.pytest_plugin.session_state import get_state

        state = get_state(self.config)
        if not state.resolved:
            return
        runner = self.runner(state)
        if runner.deaths:
            terminalreporter.write_line(
                f"t2i ray: {len(runner.deaths)} actor(s) died during the run, {runner.retried} batch(es) retried "
                f"on other actors; last: {runner.deaths[-1]}"
            )


def actor_options(config: pytest.Config, state: HarnessState) -> ActorOptions:
    settings = state.settings
    return ActorOptions(
        settings=settings,
        device=state.checked.device,
        dtype_name=state.checked.dtype_name,
        shared_cache=settings.cache_dir is not None and shared_cache(config, state),
        model_refs=_judge_model_refs(config),
        test_exit=os.environ.get(TEST_EXIT_ENV) or None,
    )


def _judge_model_refs(config: pytest.Config) -> dict[str, tuple[str, str]]:
    """The vqa and objects judges' models, resolved here (their options are the driver's)."""
    from harness.pytest_plugin.options import given

    refs = {}
    try:
        from harness.judging.vqa import OPTION, vqa_model_ref

        refs["vqa_model"] = (vqa_model_ref(config), given(config, OPTION.ini, OPTION.flag)[1])
    except (ValueError, KeyError):  # the plugin is disabled (-p no:t2i_vqa): its option does not exist
        pass
    try:
        from harness.judging.objects import DETECTOR_OPTION, detector_ref

        refs["object_detector"] = (detector_ref(config), given(config, DETECTOR_OPTION.ini, DETECTOR_OPTION.flag)[1])
    except (ValueError, KeyError):
        pass
    return refs


# -- what the actors cannot run ----------------------------------------------------------------------------


def refusal(items: list[CaseItem], where: str) -> str | None:
    """One paragraph naming every fixture that keeps these items off Ray, or None when all of them can run there."""
    found: dict[str, str] = {}  # what is wrong -> an item it concerns
    for item in items:
        for problem in _problems(item):
            found.setdefault(problem, item.nodeid)
    if not found:
        return None
    lines = [f"{problem} (e.g. {nodeid})" for problem, nodeid in found.items()]
    return (
        f"{where}: these cases cannot run on Ray: {'; '.join(lines)}. The Ray actors load the plugin's own models "
        "from the --t2i-* options and cannot run a fixture of your conftest.py, so these cases would be judged on "
        "the plain pipeline's images. Run them without --t2i-ray (and the others with it, selecting them with "
        "--ignore, -k or -m), or make the change in the model itself (a local model dir saved with "
        "save_pretrained(), passed to --t2i-model)."
    )


def _problems(item: CaseItem) -> list[str]:
    try:
        manager = item.session._fixturemanager  # private: see harness.pytest_plugin.fixtures.fixture_context
        own = {name: _PIPELINE_MODULE for name in _PIPELINE_FIXTURES}
        problems = []
        for section, judge in item.judges.items():
            own[judge.fixture] = type(judge).__module__
            if judge.fixture not in ACTOR_FIXTURES:
                problems.append(
                    f"judge {section!r} ({type(judge).__qualname__}) keeps its model in fixture {judge.fixture!r}, "
                    "which the actors cannot build"
                )
        models = set(own) - {"t2i_settings"}
        for name, module in own.items():
            definitions = manager.getfixturedefs(name, item) or ()
            if definitions and getattr(definitions[-1].func, "__module__", None) != module:
                problems.append(f"{_location(definitions[-1].func, item)} overrides fixture {name!r}")
        for name in getattr(item, "fixturenames", ()):
            for definition in manager.getfixturedefs(name, item) or ():
                module = getattr(definition.func, "__module__", "") or ""
                if module.startswith("harness.") or not models & set(definition.argnames):
                    continue
                taken = sorted(models & set(definition.argnames))
                problems.append(
                    f"{_location(definition.func, item)}: fixture {name!r} takes {', '.join(map(repr, taken))} "
                    "(and may change it)"
                )
        return problems
    except Exception as exc:  # pytest's private fixture lookup changed: overrides cannot be ruled out
        return [f"the fixtures these cases see cannot be checked for conftest.py overrides ({type(exc).__name__})"]


def _location(function: Any, item: pytest.Item) -> str:
    function = inspect.unwrap(function)
    try:
        path = Path(inspect.getsourcefile(function) or "?")
        line = inspect.getsourcelines(function)[1]
    except (OSError, TypeError):
        return f"fixture {getattr(function, '__qualname__', function)!r}"
    shown = path.relative_to(item.config.rootpath) if path.is_relative_to(item.config.rootpath) else path
    return f"{shown.as_posix()}:{line}"


def shared_cache(config: pytest.Config, state: HarnessState) -> bool:
    """Whether the actors use the image and score caches themselves: a --t2i-cache-dir given (a volume every node
    mounts at that path), or any cache dir when Ray runs on this machine (local). Otherwise the driver keeps it."""
    return state.checked.cache_dir is not None or (ray_cluster.requested(config) or ("",))[0] == "local"
