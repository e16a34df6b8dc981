"""Collect YAML case files into pytest items: one item per case and seed, or per case with ``min_pass_rate``."""

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
from harness.pytest_plugin.human_verdicts import PLUGIN_NAME as HUMAN_PLUGIN
from harness.pytest_plugin.item_verdict import CaseCheckFailed, rate_table, record_scored
from harness.pytest_plugin.judges import JudgeSetupError
from harness.pytest_plugin.scored_images import CacheWriteWarning, JudgeUse
from harness.pytest_plugin.session_state import get_state
from harness.reports.case_rates import SeedResult, case_rate
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
            # On Ray the actors load the models: the item asks for none of their fixtures here.
            on_ray = self.config.pluginmanager.has_plugin("t2i-ray")
            function = _test_function(() if on_ray else tuple(judge.fixture for judge in case_judges.values()), on_ray)
            if case.rate_gated:
                # Its verdict is a rate over all its seeds: one item, so that pytest's counts, exit code, -x
                # and --lf follow the case's verdict; each seed keeps its own record, image and scores.
                yield CaseItem.from_parent(
                    self, name=case.id, callobj=function, case=case, seeds=case.seeds, judges=case_judges
                )
                continue
            for seed in case.seeds:
                yield CaseItem.from_parent(
                    self, name=item_name(case.id, seed), callobj=function, case=case, seeds=(seed,), judges=case_judges
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
def _test_function(model_fixtures: tuple[str, ...], on_ray: bool = False) -> Any:
    """The function a case item calls: its signature names the fixtures it needs, and so decides which models
    load (a suite with no `resnet:` never loads ResNet-50; on Ray, none load in this process)."""

    def run_case(**fixtures: Any) -> None:
        __tracebackhide__ = True
        request = fixtures["request"]
        models = {name: fixtures[name] for name in model_fixtures}
        request.node.run_case(fixtures.get("_t2i_pipeline_handle"), models, request)

    names = ("request",) if on_ray else ("_t2i_pipeline_handle", *model_fixtures, "request")
    run_case.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in names]
    )
    return run_case


class CaseItem(pytest.Function):
    """One case at one seed; or, for a case with ``min_pass_rate``, the case at all its seeds.

    A pytest.Function, so it gets fixtures like any test.
    """

    def __init__(
        self, *, case: Case, seeds: tuple[int, ...], judges: dict[str, Judge[Any, Any]], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.seeds = seeds
        self.judges = judges  # the case's, by section
        self.case_drift: dict[str, Any] | None = None  # a rate-gated case's comparison with the baseline
        self._structure_node_id()
        if not case.rate_gated:
            # A rate-gated case is selected as a whole: a rate over one seed of it says nothing.
            self.extra_keyword_matches.add(seed_keyword(self.seed))
        for tag in case.tags:
            self.add_marker(tag)
        if case.skip is not None:
            self.add_marker(pytest.mark.skip(reason=case.skip))
        if case.xfail is not None:
            self.add_marker(pytest.mark.xfail(reason=case.xfail))
        if self.config.pluginmanager.hasplugin("xdist"):
            # For an explicit `--dist loadgroup` (on pytest versions where xdist can honour it).
            self.add_marker(pytest.mark.xdist_group(name=f"{self.path.name}:{case.id}"))

    @property
    def seed(self) -> int:
        """The item's seed (the first, for a rate-gated case)."""
        return self.seeds[0]

    def _structure_node_id(self) -> None:
        # pytest >= 9.2 keeps node ids structured (path, names, params) and parses ids read back
        # from its cache (--lf, --ff) the same way; an item named "owl[seed=0]" without a callspec
        # would never match its own cached id. Give the id the shape a parametrized test has.
        node_id = getattr(self, "_id", None)
        if node_id is None or not hasattr(node_id, "with_params") or self.parent is None:
            return
        child = self.parent.id.child(self.case.id)
        self._id = child if self.case.rate_gated else child.with_params(seed_param(self.seed))

    @property
    def case_key(self) -> tuple[str, str]:
        return (self.file_nodeid, self.case.id)

    @property
    def file_nodeid(self) -> str:
        return self.parent.nodeid if self.parent is not None else str(self.path)

    def record_id(self, seed: int) -> str:
        """The id of a seed's record: the node id its own item has, or would have without ``min_pass_rate``."""
        return f"{self.file_nodeid}::{item_name(self.case.id, seed)}"

    def new_record(self, seed: int) -> ItemRecord:
        sections = get_state(self.config).judges.by_section
        return ItemRecord.for_case(self.record_id(seed), self.case, seed, self.file_nodeid, sections)

    def run_case(self, handle: PipelineHandle | None, models: dict[str, Any], request: pytest.FixtureRequest) -> None:
        """Generate (or reuse) the images, judge them, compare with the baseline: one verdict, raised once."""
        __tracebackhide__ = True
        state = get_state(self.config)
        if handle is None:  # on Ray: the actors hold the models, and the handle
            uses = {section: JudgeUse(judge, None) for section, judge in self.judges.items()}
        else:
            uses = {section: self._use(judge, models[judge.fixture], request) for section, judge in self.judges.items()}
        baseline = self.config.pluginmanager.get_plugin("t2i-baseline")
        human = self.config.pluginmanager.get_plugin(HUMAN_PLUGIN)
        failures: dict[int, str | None] = {}
        for seed in self.seeds:
            record = state.records.setdefault(self.record_id(seed), self.new_record(seed))
            scored = state.images.scored(self.case_key, self.case, seed, handle, uses)  # type: ignore[arg-type]
            failure = record_scored(record, scored, state.report_dir, self.case, self.judges, human)
            drift = baseline.compare(self, record) if baseline is not None else None
            if self.case.rate_gated:
                # The seed's own checks: its case's rate counts them, its baseline drift is shown, not gated.
                record.outcome = "passed" if failure is None else "failed"
            elif baseline is not None and drift is not None and (failure is not None or drift.status == "regressed"):
                # A failing item also says how it compares with the baseline; a passing one fails on a regression.
                failure = "\n".join(part for part in (failure, drift.explain(baseline.settings.compare)) if part)
            failures[seed] = failure
        if self.case.rate_gated:
            failure = self._rate_verdict(failures, baseline)
        else:
            failure = failures[self.seed]
        if failure is not None:
            raise CaseCheckFailed(failure)

    def _rate_verdict(self, failures: dict[int, str | None], baseline: Any) -> str | None:
        """The case's failure over its seeds: its rate below the gate, or a rate or mean drop from the baseline."""
        state = get_state(self.config)
        seeds = [
            SeedResult(seed, failure is None, state.records[self.record_id(seed)].verdicts)
            for seed, failure in failures.items()
        ]
        rate = case_rate(self.file_nodeid, self.case.id, seeds, self.case.min_pass_rate)
        problems = []
        if not rate.gate_met:
            problems.append(
                f"pass rate below min_pass_rate {self.case.min_pass_rate:g}: {rate.describe()}\n" + rate_table(failures)
            )
        drift = baseline.compare_case(self, rate) if baseline is not None else None
        if drift is not None:
            self.case_drift = drift.to_json(str(baseline.settings.compare))
            if drift.status == "regressed" or problems:
                problems.append(drift.explain(str(baseline.settings.compare)))
        return "\n".join(problems) or None

    def final_records(self, outcome: str, duration: float) -> list[ItemRecord]:
        """The item's records, once its outcome is known: one per seed."""
        state = get_state(self.config)
        records = []
        for seed in self.seeds:
            record = state.records.pop(self.record_id(seed), None) or self.new_record(seed)
            if not self.case.rate_gated or record.outcome == "pending":  # a seed it never reached
                record.outcome = outcome
            if self.case.rate_gated:
                record.case_outcome = outcome
            # A rate-gated case's time is shared among its seeds, so the records' totals add up to the run's.
            record.timings["total_s"] = duration / len(self.seeds)
            records.append(record)
        return records

    def _use(self, judge: Judge[Any, Any], model: Any, request: pytest.FixtureRequest) -> JudgeUse:
        # Scores are reused only from a judge's own fixture: an override in conftest.py may wrap the model
        # in another while the object still carries the original's identity.
        identity = None
        if is_own_fixture(request, judge.fixture, type(judge).__module__):
            identity = judge.cache_identity(model)
        return JudgeUse(judge, model, judge_digest(identity) if identity is not None else None)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, self.name

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        file = self.parent.nodeid if self.parent is not None else self.path.name
        seeds = f"{len(self.seeds)} seeds" if self.case.rate_gated else f"seed {self.seed}"
        where = f"{file}:{self.case.line}: case {self.case.id!r}, {seeds}"
        if isinstance(excinfo.value, (CaseCheckFailed, PromptTruncatedWarning, CacheWriteWarning)):
            return f"{where}\n{excinfo.value}"
        if isinstance(excinfo.value, pytest.fail.Exception):
            # E.g. pytest-timeout's "Timeout (>10.0s)": raised wherever the item was, deep in a pipeline
            # call, where a traceback would print every frame's tensors.
            interrupted = innermost_frame(excinfo.value)
            return f"{where}\n{excinfo.value}" + (f" (interrupted {interrupted})" if interrupted else "")
        return super().repr_failure(excinfo)
