"""The `vqa:` judge: yes/no questions about the image, answered by a vision-language model.

CLIP's zero-shot choice is weak for counts, colours bound to objects, positions and things that must stay out of
the image; a vision-language model's probability of the expected answer (VQAScore, GenEval 2's Soft-TIFA) judges
them better. An item passes when every question's P(expected answer) reaches its ``min_prob``. This module is a
pytest plugin (entry point ``t2i_vqa``): the judge, its option ``--t2i-vqa-model`` and its model fixture
``vqa_model``; harness.judging.vqa_model asks the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from harness.cases.case_file import SectionReader, kind_of, label_key, suggest
from harness.cases.yaml_source import YamlList, YamlMap
from harness.judging.judge import Judge, Score, Table, TableRow, Verdict
from harness.pytest_plugin.options import OptionSpec, add_option, given, model_ref

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from harness.judging.vqa_model import VqaModel
    from harness.pytest_plugin.options import Settings

SECTION = "vqa"
TITLE = "VQA"
KEYS = ("questions", "min_prob")
QUESTION_KEYS = ("ask", "expect", "min_prob")
ANSWERS = ("yes", "no")
DEFAULT_MIN_PROB = 0.5
# Each question is one sequence of the model's forward for every image: a long list is a memory bill, and
# question sets in the literature (TIFA, DSG) hold about ten per prompt.
MAX_QUESTIONS = 32
MAX_QUESTION_CHARS = 500
# Below this, the model was about to answer something other than yes or no, and its P(yes) means little.
LOW_ANSWER_SHARE = 0.5
EXAMPLE = '{ask: "Is there an owl in the image?", expect: yes}'

DEFAULT_VQA_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
OPTION = OptionSpec(
    "--t2i-vqa-model",
    "t2i_vqa_model",
    DEFAULT_VQA_MODEL,
    "vision-language model answering the vqa: questions (an image-text-to-text model with a chat template): "
    "hub repo id or local dir",
    "ID_OR_DIR",
    True,
)


@dataclass(frozen=True)
class Question:
    ask: str
    expect: str  # "yes" or "no"
    min_prob: float
    line: int = field(default=0, compare=False)  # where it is written, for messages; not part of the check


@dataclass(frozen=True)
class VqaCheck:
    """Every question's P(``expect``) must reach its ``min_prob``."""

    questions: tuple[Question, ...]

    @property
    def comparable(self) -> str:
        """Scores compare with a baseline's only for the same questions expecting the same answers."""
        return "\0".join(f"{q.expect}\0{q.ask}" for q in self.questions)


# ---------------------------------------------------------------------------------------------
# The section.


def parse_vqa(section: SectionReader) -> VqaCheck | None:
    """The check of a case's `vqa:` section; None when it has problems (each reported with its line)."""
    default = section.number("min_prob", 0, 1, "such as 0.5", what="a probability")
    default_ok = default is not None or "min_prob" not in section
    questions = _questions(section, DEFAULT_MIN_PROB if default is None else default)
    if questions is None or not default_ok:
        return None
    return VqaCheck(questions)


def _questions(section: SectionReader, default_min_prob: float) -> tuple[Question, ...] | None:
    value = section.value("questions")
    raw = value.raw
    if raw is None:
        section.problem(
            value.line,
            f"missing 'vqa.questions': the yes/no questions to ask about the image, e.g. questions: [{EXAMPLE}]",
        )
        return None
    if not isinstance(raw, YamlList) or not raw:
        section.problem(
            value.line,
            f"'vqa.questions' must be a non-empty list of questions, each like {EXAMPLE}; got {kind_of(raw)}",
        )
        return None
    if len(raw) > MAX_QUESTIONS:
        section.problem(
            value.line,
            f"'vqa.questions' has {len(raw)} questions; a case asks at most {MAX_QUESTIONS} (each one is a "
            "sequence of the model's forward for every image): split the case, or keep the questions that matter",
        )
        return None
    questions: list[Question] = []
    seen: dict[str, tuple[int, int]] = {}  # folded question -> (item number, line)
    complete = True
    for number, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True), start=1):
        question = _question(section, item, line, number, default_min_prob)
        if question is None:
            complete = False
            continue
        key = label_key(question.ask)
        if key in seen:
            first, first_line = seen[key]
            section.problem(
                question.line,
                f"'vqa.questions' item {number} asks the same as item {first} (line {first_line}); remove one",
            )
            complete = False
            continue
        seen[key] = (number, question.line)
        questions.append(question)
    return tuple(questions) if complete else None


def _question(section: SectionReader, item: Any, line: int, number: int, default_min_prob: float) -> Question | None:
    where = f"'vqa.questions' item {number}"
    if not isinstance(item, YamlMap):
        hint = f'{{ask: "{item}", expect: yes}}' if isinstance(item, str) else EXAMPLE
        section.problem(line, f"{where} is {kind_of(item)}, not a question; write it as a mapping: {hint}")
        return None
    unknown = [key for key in item if key not in QUESTION_KEYS]
    for key in unknown:
        section.problem(
            item.key_lines[key],
            f"unknown key {key!r} in {where}{suggest(key, QUESTION_KEYS, n=1)}; allowed keys: "
            + ", ".join(QUESTION_KEYS),
        )
    ask = _ask(section, item, where)
    expect = _expect(section, item, where)
    min_prob = _min_prob(section, item, where, default_min_prob)
    if ask is None or expect is None or min_prob is None or unknown:
        return None
    return Question(ask, expect, min_prob, item.key_lines["ask"])


def _ask(section: SectionReader, item: YamlMap, where: str) -> str | None:
    ask = item.get("ask")
    line = item.key_lines.get("ask", item.line)
    if ask is None:
        section.problem(
            line, f"{where} has no 'ask': the question to put to the model, e.g. ask: \"Is the owl white?\""
        )
        return None
    if not isinstance(ask, str):
        text = item.texts.get("ask")
        hint = (
            f'put it in quotes: ask: "{text}"'
            if text is not None
            else 'write the question, e.g. ask: "Is the owl white?"'
        )
        section.problem(line, f"{where}: 'ask' must be text, got {kind_of(ask)}; {hint}")
        return None
    if not ask.strip():
        section.problem(line, f"{where}: 'ask' is empty; write the question, e.g. ask: \"Is the owl white?\"")
        return None
    if len(ask) > MAX_QUESTION_CHARS:
        section.problem(
            line,
            f"{where}: 'ask' is {len(ask)} characters long; a question is at most {MAX_QUESTION_CHARS}: shorten it",
        )
        return None
    return ask


def _expect(section: SectionReader, item: YamlMap, where: str) -> str | None:
    """'yes' or 'no'. YAML 1.1 reads a bare yes or no as a boolean: accepted, but only when written yes or no."""
    expect = item.get("expect")
    line = item.key_lines.get("expect", item.line)
    fix = "write expect: yes (the answer a good image gets) or expect: no (for something that must be absent)"
    if expect is None:
        section.problem(line, f"{where} has no 'expect'; {fix}")
        return None
    written = item.texts.get("expect")
    answer = written.casefold() if isinstance(expect, bool) and written is not None else expect
    if isinstance(answer, str) and answer.casefold() in ANSWERS:
        return answer.casefold()
    shown = f"{written} (which YAML reads as {kind_of(expect)})" if isinstance(expect, bool) else kind_of(expect)
    section.problem(line, f"{where}: 'expect' must be yes or no, got {shown}; {fix}")
    return None


def _min_prob(section: SectionReader, item: YamlMap, where: str, default: float) -> float | None:
    raw = item.get("min_prob")
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= 1:
        section.problem(
            item.key_lines["min_prob"],
            f"{where}: 'min_prob' must be a probability in [0, 1], such as 0.6; got {kind_of(raw)}",
        )
        return None
    return float(raw)


# ---------------------------------------------------------------------------------------------
# The verdict.


def vqa_verdict(check: VqaCheck, p_yes: Sequence[float], shares: Sequence[float]) -> Verdict:
    """The verdict for each question's P(yes) and the yes/no tokens' share of the next-token probability."""
    expected = [p if q.expect == "yes" else 1.0 - p for q, p in zip(check.questions, map(float, p_yes), strict=True)]
    # `not >=`: a NaN (a row from elsewhere than the model) fails rather than passes.
    failing = [i for i, (q, p) in enumerate(zip(check.questions, expected, strict=True)) if not p >= q.min_prob]
    lowest = min(range(len(expected)), key=expected.__getitem__)
    scores = (
        Score(
            "prob", expected[lowest], "VQA lowest probability", gated=True, what="lowest expected-answer probability"
        ),
        *(
            Score(f"q{i}", p, f"VQA q{i}", gated=True, what=f"question {i}'s expected-answer probability")
            for i, p in enumerate(expected, start=1)
        ),
    )
    rows = tuple(
        TableRow((f"{p:.4f}", q.expect, q.ask), ("failed",) if i in failing else ())
        for i, (q, p) in enumerate(zip(check.questions, expected, strict=True))
    )
    return Verdict(
        title=TITLE,
        passed=not failing,
        scores=scores,
        table=Table(rows, note=_note(check, shares)),
        explanation=_explain(check, expected, failing, shares),
        details={
            "questions": [
                {
                    "ask": q.ask,
                    "expect": q.expect,
                    "min_prob": q.min_prob,
                    "p_yes": float(py),
                    "p_expected": p,
                    "answer_share": float(share),
                    "passed": i not in failing,
                }
                for i, (q, py, p, share) in enumerate(zip(check.questions, p_yes, expected, shares, strict=True))
            ],
        },
        comparable=check.comparable,
        comparable_what="VQA questions",
    )


def _note(check: VqaCheck, shares: Sequence[float]) -> str:
    minimums = sorted({q.min_prob for q in check.questions})
    if len(minimums) == 1:
        need = f"min_prob {minimums[0]:g}"
    else:
        need = "min_prob " + ", ".join(f"q{i} {q.min_prob:g}" for i, q in enumerate(check.questions, start=1))
    return f"P(expected answer); {need}; yes/no share of the next token at least {min(map(float, shares)):.2f}"


def _explain(check: VqaCheck, expected: list[float], failing: list[int], shares: Sequence[float]) -> str:
    if failing:
        named = "; ".join(
            f"q{i + 1} {check.questions[i].ask!r} P({check.questions[i].expect}) {expected[i]:.4f} "
            f"< {check.questions[i].min_prob:g}"
            for i in failing
        )
        head = f"VQA: {len(failing)} of {len(expected)} questions below min_prob: {named}"
    else:
        head = f"VQA: every question reached its min_prob (lowest P(expected) {min(expected):.4f})"
    lines = [head + ":", "    P(expected)  expect  min     question"]
    for i, (q, p) in enumerate(zip(check.questions, expected, strict=True)):
        flag = "x" if i in failing else " "
        lines.append(f"  {flag} {p:11.4f}  {q.expect:6}  {q.min_prob:<6g}  {q.ask}")
    unsure = [i for i, share in enumerate(map(float, shares), start=1) if share < LOW_ANSWER_SHARE]
    if unsure:
        lines.append(
            f"  note: the model gave yes or no under {LOW_ANSWER_SHARE:.0%} of its next-token probability for "
            + ", ".join(f"q{i} ({float(shares[i - 1]):.0%})" for i in unsure)
            + ', so those answers are weak evidence (README: "Yes/no questions")'
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The judge.


class VqaJudge(Judge[VqaCheck, "VqaModel"]):
    section = SECTION
    title = TITLE
    fixture = "vqa_model"
    keys = KEYS
    list_key = "questions"  # `vqa: [{ask: ..., expect: yes}]` is `vqa: {questions: [...]}`
    missing_hint = f"add 'vqa:' with 'questions', e.g. questions: [{EXAMPLE}]"

    def parse(self, section: SectionReader) -> VqaCheck | None:
        return parse_vqa(section)

    def query(self, check: VqaCheck) -> list[str]:
        # The rows depend on the questions alone: editing expect or min_prob reruns no model.
        return [question.ask for question in check.questions]

    def cache_identity(self, model: VqaModel) -> dict[str, str] | None:
        return model.cache_identity

    def feature_length(self, model: VqaModel, query: list[str] | None = None) -> int | None:
        # P(yes) of each question, then the yes/no share of each.
        return None if query is None else 2 * len(query)

    def features(  # type: ignore[override]  # a judge with a query takes them (Judge.query)
        self, model: VqaModel, images: Sequence[Image.Image], queries: Sequence[list[str]]
    ) -> list[list[float]]:
        pairs = [(image, question) for image, questions in zip(images, queries, strict=True) for question in questions]
        p_yes, shares = model.answer(pairs)
        rows, start = [], 0
        for questions in queries:
            end = start + len(questions)
            rows.append([*p_yes[start:end].tolist(), *shares[start:end].tolist()])
            start = end
        return rows

    def verdict(self, model: VqaModel, check: VqaCheck, row: np.ndarray) -> Verdict:
        count = len(check.questions)
        return vqa_verdict(check, row[:count].tolist(), row[count : 2 * count].tolist())


@pytest.hookimpl
def pytest_t2i_judges(config: pytest.Config) -> list[Judge[Any, Any]]:
    return [VqaJudge()]


# ---------------------------------------------------------------------------------------------
# The option and the model fixture.


def pytest_addoption(parser: pytest.Parser) -> None:
    add_option(parser, OPTION)


def pytest_configure(config: pytest.Config) -> None:
    value, where, from_cli = given(config, OPTION.ini, OPTION.flag)
    # An empty ini value means the default, as for the harness's own options.
    if from_cli and not str(value).strip():
        raise pytest.UsageError(f"{where} is empty; give a value or leave the option out.")


def vqa_model_ref(config: pytest.Config) -> str:
    """--t2i-vqa-model as given: an existing directory (absolute; relative to the ini file for an ini value), or
    a hub repo id."""
    return model_ref(config, OPTION)


def vqa_identity(settings: Settings, model: VqaModel) -> dict[str, str] | None:
    """What the answers are a function of, besides the image and the question."""
    from harness.judging.score_cache import pretrained_identity
    from harness.judging.vqa_model import INSTRUCTION, PROMPT_FORMAT

    return pretrained_identity(
        "vqa yes/no probability",
        model.info.ref,
        model.info.revision,
        model.model.dtype,
        settings.device,
        prompt=f"{PROMPT_FORMAT}: {INSTRUCTION}",
    )


@pytest.fixture(scope="session")
def vqa_model(pytestconfig: pytest.Config, t2i_settings: Settings) -> VqaModel:
    """The vision-language model (--t2i-vqa-model): ``vqa_model.probabilities_yes(images, questions)`` ->
    [images, questions] tensor of P(yes)."""
    from harness.pytest_plugin.availability import offline_reason_for
    from harness.pytest_plugin.session_state import note_model

    ref = vqa_model_ref(pytestconfig)
    _, where, _ = given(pytestconfig, OPTION.ini, OPTION.flag)
    model = build_vqa_model(t2i_settings, ref, where, offline_reason_for(pytestconfig, ref))
    note_model(pytestconfig, model.info)
    return model


def build_vqa_model(settings: Settings, ref: str, where: str, offline_reason: str | None) -> VqaModel:
    """The VLM as the session fixture builds it (and a Ray actor, on its own node)."""
    from harness.judging.vqa_model import load_vqa_model

    model = load_vqa_model(ref, where, settings.device, settings.dtype, offline_reason)
    model.cache_identity = vqa_identity(settings, model)
    return model
