"""Collect YAML case files into pytest items: one item per case and seed."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.cases.case_file import MAX_CASE_FILE_BYTES, CaseFileError, load_case_file
from harness.cases.item_id import item_name, seed_keyword, seed_param
from harness.cases.yaml_source import has_top_level_key
from harness.common.errors import innermost_frame
from harness.generation.prompt_length import PromptTruncatedWarning
from harness.judging.score_cache import judge_digest
from harness.pytest_plugin import check_mode
from harness.pytest_plugin.fixtures import is_own_fixture
from harness.pytest_plugin.item_verdict import CaseCheckFailed, record_scored
from harness.pytest_plugin.judges import JudgeSetupError
from harness.pytest_plugin.scored_images import CacheWriteWarning, JudgeUse
from harness.pytest_plugin.session_state import get_state
from harness.reports.results import ItemRecord

if TYPE_CHECKING:
    from harness.cases.case_file import Case
    from harness.generation.pipeline_handle import PipelineHandle
    from harness.judging.judge import Judge

CASE_FILE_SUFFIXES = (".yaml", ".yml")
# When parsing cannot answer (a syntax error before the top-level key): a case file with a typo must
# still be collected, so that its error is shown rather than its cases silently lost.
_LOOKS_LIKE_CASES = re.compile(r"^\ufeff?(\{\s*)?[\"']?cases[\"']?\s*:", re.MULTILINE)


def is_case_file(file_path: Path, config: pytest.Config) -> bool:
    """A file named on the command line always is; one found by recursion only if its top level has `cases:`.

    Recursing a repository finds CI workflows and compose files too. The top level is read by parsing
    (a BOM, a quoted key or flow style are still a case file), never by matching text alone.
    """
    if file_path.suffix not in CASE_FILE_SUFFIXES:
        return False
    if file_path.resolve() in named_on_command_line(config):
        return True
    try:
        with open(file_path, "rb") as handle:
            head = handle.read(MAX_CASE_FILE_BYTES + 1)  # a bigger file is refused when collected
    except OSError:
        return True  # collected, so that "cannot read the file" is said rather than its cases lost
    text = head.decode("utf-8", errors="replace")
    found = has_top_level_key(text, "cases")
    return bool(_LOOKS_LIKE_CASES.search(text)) if found is None else found


def named_on_command_line(config: pytest.Config) -> set[Path]:
    named = set()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0])
        if path.suffix in CASE_FILE_SUFFIXES:
            named.add(path.resolve())
    return named


class CaseFile(pytest.File):
    """A YAML case file; a broken one is a collection error listing every problem."""

    def collect(self) -> Iterator[CaseItem]:
        judges = get_state(self.config).judges.for_node(self)  # JudgeSetupError: shown as this file's error
        cases = load_case_file(self.path, judges.values())
        checker = self.config.pluginmanager.get_plugin(check_mode.PLUGIN_NAME)
        if checker is not None:
            # In a run, each loaded judge checks its cases before generating (harness.pytest_plugin.scored_images).
            problems = [problem for case in cases for problem in checker.case_problems(case, judges)]
            if problems:
                raise CaseFileError(self.path, problems)
        for case in cases:
            if checker is not None:
                checker.check_prompts(case)
            for tag in case.tags:
                # Tags are markers: register them so --strict-markers accepts them.
                self.config.addinivalue_line("markers", f"{tag}: t2i case tag")
            case_judges = {section: judges[section] for section in case.checks}
            function = _test_function(tuple(judge.fixture for judge in case_judges.values()))
            for seed in case.seeds:
                yield CaseItem.from_parent(
                    self, name=item_name(case.id, seed), callobj=function, case=case, seed=seed, judges=case_judges
                )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, PromptTruncatedWarning):  # raised as an error under `-W error`
            return f"{self.nodeid}:{excinfo.value.line}: {excinfo.value}"
        if isinstance(excinfo.value, JudgeSetupError):
            return f"{self.nodeid}: {excinfo.value}"
        if isinstance(excinfo.value, CaseFileError):
            return excinfo.value.render(
                self.path.relative_to(self.config.rootpath)
                if self.path.is_relative_to(self.config.rootpath)
                else self.path
            )
        return super().repr_failure(excinfo)


@cache
def _test_function(model_fixtures: tuple[str, ...]) -> Any:
    """The function a case item calls: its signature names the fixtures it needs, and so decides which models
    load (a suite with no `resnet:` never loads ResNet-50)."""

    def run_case(**fixtures: Any) -> None:
        __tracebackhide__ = True
        request = fixtures["request"]
        models = {name: fixtures[name] for name in model_fixtures}
        request.node.run_case(fixtures["_t2i_pipeline_handle"], models, request)

    names = ("_t2i_pipeline_handle", *model_fixtures, "request")
    run_case.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in names]
    )
    return run_case


class CaseItem(pytest.Function):
    """One case at one seed. A pytest.Function, so it gets fixtures like any test."""

    def __init__(self, *, case: Case, seed: int, judges: dict[str, Judge[Any, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.seed = seed
        self.judges = judges  # the case's, by section
        self._structure_node_id()
        self.extra_keyword_matches.add(seed_keyword(seed))
        for tag in case.tags:
            self.add_marker(tag)
        if case.skip is not None:
            self.add_marker(pytest.mark.skip(reason=case.skip))
        if case.xfail is not None:
            self.add_marker(pytest.mark.xfail(reason=case.xfail))
        if self.config.pluginmanager.hasplugin("xdist"):
            # For an explicit `--dist loadgroup` (on pytest versions where xdist can honour it).
            self.add_marker(pytest.mark.xdist_group(name=f"{self.path.name}:{case.id}"))

    def _structure_node_id(self) -> None:
        # pytest >= 9.2 keeps node ids structured (path, names, params) and parses ids read back
        # from its cache (--lf, --ff) the same way; an item named "owl[seed=0]" without a callspec
        # would never match its own cached id. Give the id the shape a parametrized test has.
        node_id = getattr(self, "_id", None)
        if node_id is None or not hasattr(node_id, "with_params") or self.parent is None:
            return
        self._id = self.parent.id.child(self.case.id).with_params(seed_param(self.seed))

    @property
    def case_key(self) -> tuple[str, str]:
        return (self.parent.nodeid if self.parent is not None else "", self.case.id)

    def new_record(self) -> ItemRecord:
        file = self.parent.nodeid if self.parent is not None else str(self.path)
        sections = get_state(self.config).judges.by_section
        return ItemRecord.for_case(self.nodeid, self.case, self.seed, file, sections)

    def run_case(self, handle: PipelineHandle, models: dict[str, Any], request: pytest.FixtureRequest) -> None:
        """Generate (or reuse) the image, judge it, compare with the baseline: one verdict, raised once."""
        __tracebackhide__ = True
        state = get_state(self.config)
        record = state.records.setdefault(self.nodeid, self.new_record())
        uses = {section: self._use(judge, models[judge.fixture], request) for section, judge in self.judges.items()}
        scored = state.images.scored(self.case_key, self.case, self.seed, handle, uses)
        failure = record_scored(record, scored, state.report_dir, self.case, self.judges)
        baseline = self.config.pluginmanager.get_plugin("t2i-baseline")
        drift = baseline.compare(self, record) if baseline is not None else None
        if baseline is not None and drift is not None and (failure is not None or drift.status == "regressed"):
            # A failing item also says how it compares with the baseline; a passing one fails on a regression.
            failure = "\n".join(part for part in (failure, drift.explain(baseline.settings.compare)) if part)
        if failure is not None:
            raise CaseCheckFailed(failure)

    def _use(self, judge: Judge[Any, Any], model: Any, request: pytest.FixtureRequest) -> JudgeUse:
        # Scores are reused only from a judge's own fixture: an override in conftest.py may wrap the model
        # in another while the object still carries the original's identity.
        identity = None
        if is_own_fixture(request, judge.fixture, type(judge).__module__):
            identity = judge.cache_identity(model)
        return JudgeUse(judge, model, judge_digest(identity) if identity is not None else None)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, item_name(self.case.id, self.seed)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        file = self.parent.nodeid if self.parent is not None else self.path.name
        where = f"{file}:{self.case.line}: case {self.case.id!r}, seed {self.seed}"
        if isinstance(excinfo.value, (CaseCheckFailed, PromptTruncatedWarning, CacheWriteWarning)):
            return f"{where}\n{excinfo.value}"
        if isinstance(excinfo.value, pytest.fail.Exception):
            # E.g. pytest-timeout's "Timeout (>10.0s)": raised wherever the item was, deep in a pipeline
            # call, where a traceback would print every frame's tensors.
            interrupted = innermost_frame(excinfo.value)
            return f"{where}\n{excinfo.value}" + (f" (interrupted {interrupted})" if interrupted else "")
        return super().repr_failure(excinfo)
