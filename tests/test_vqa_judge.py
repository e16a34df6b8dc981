"""The vqa judge (harness.judging.vqa): P(yes) as the model computes it, the `vqa:` section's validation in both
modes, its verdict through every output of a run, and --t2i-vqa-model, on a tiny random-weight Idefics3 model of
SmolVLM-256M-Instruct's architecture (and, for P(yes), a tiny Qwen2-VL) from tests/tiny_vlm.py, loaded through
the judge's own loading code."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import Labels, case_yaml
from harness.cases.case_file import CaseFileError, load_case_file
from harness.common.model_loading import MissingModelError
from harness.judging.vqa import Question, VqaCheck, VqaJudge, vqa_verdict
from harness.judging.vqa_model import VqaModel, answer_tokens, load_vqa_model
from tiny_models import TinyModels
from tiny_vlm import LONGEST_EDGE, NO_TOKENS, TILE, YES_TOKENS, build_tiny_qwen2_vl, build_tiny_vlm

OPTION = "--t2i-vqa-model"
QUESTIONS = ("Is there an owl in the image?", "Is the owl white?")  # of different lengths: the batch is padded
# The instruction the README documents, appended to every question.
INSTRUCTION = "Answer yes or no."
# Batch against single: the padded batch multiplies matrices of other shapes, which sums in another order
# (float32 rounding, ~1e-7 on these sizes); a wrong token, position or padding side moves P(yes) by 1e-2 or more.
TOLERANCE = 1e-5


def _built(tmp_path_factory: pytest.TempPathFactory, build: Callable[[Path], Path]) -> Path:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # save_pretrained's, between pytest's lines
    return build(tmp_path_factory.mktemp(build.__name__))


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _built(tmp_path_factory, build_tiny_vlm)


@pytest.fixture(scope="session")
def vlm(tiny_vlm: Path) -> VqaModel:
    """The tiny model through the judge's loading code (loading it here also imports, once, the modules a run
    imports: pytester's in-process runs would otherwise import them anew each time)."""
    import torch

    return load_vqa_model(str(tiny_vlm), OPTION, "cpu", torch.float32)


@pytest.fixture(scope="session")
def qwen2_vl(tmp_path_factory: pytest.TempPathFactory) -> VqaModel:
    import torch

    return load_vqa_model(str(_built(tmp_path_factory, build_tiny_qwen2_vl)), OPTION, "cpu", torch.float32)


# What each model reads for a question: its own chat template, the question, the instruction, the generation prompt.
PROMPTS = {
    "idefics3": f"<|im_start|>User:<image>{QUESTIONS[0]} {INSTRUCTION}<end_of_utterance>\nAssistant:",
    "qwen2_vl": "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
    f"{QUESTIONS[0]} {INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n",
}


def _images() -> list[Image.Image]:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # Longest edge 64, the processor's own size: the harness leaves them as the processor sizes them.
    return [Image.fromarray(noise), Image.new("RGB", (48, 64), (240, 240, 230))]


def _direct_p_yes(vlm: VqaModel, image: Image.Image, question: str, **processor_options: Any) -> float:
    """processor -> model -> last-position logits -> softmax -> P(yes tokens) / P(yes or no tokens), one image."""
    import torch

    processor, model, tokenizer = vlm.processor, vlm.model, vlm.processor.tokenizer
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"{question} {INSTRUCTION}"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[image], return_tensors="pt", **processor_options)
    with torch.no_grad():
        probs = model(**inputs).logits[0, -1].softmax(dim=-1)
    p_yes = probs[tokenizer.convert_tokens_to_ids(list(YES_TOKENS))].sum()
    p_no = probs[tokenizer.convert_tokens_to_ids(list(NO_TOKENS))].sum()
    return float(p_yes / (p_yes + p_no))


@pytest.mark.parametrize("architecture", ["idefics3", "qwen2_vl"])
def test_p_yes_equals_a_direct_computation_in_one_padded_batch(
    request: pytest.FixtureRequest, architecture: str
) -> None:
    vlm: VqaModel = request.getfixturevalue({"idefics3": "vlm", "qwen2_vl": "qwen2_vl"}[architecture])
    images = _images()
    batch = vlm.probabilities_yes(images, QUESTIONS)
    assert batch.shape == (2, 2)
    for i, image in enumerate(images):
        for j, question in enumerate(QUESTIONS):
            assert float(batch[i, j]) == pytest.approx(_direct_p_yes(vlm, image, question), abs=TOLERANCE), (i, j)
    # Teeth: the four answers differ by far more than the tolerance, by image and by question.
    assert float(batch.max() - batch.min()) > 1000 * TOLERANCE
    # SmolVLM's answer is the token after "Assistant:" (" Yes"), Qwen2-VL's the one after a newline ("Yes").
    assert vlm.prompt(QUESTIONS[0]) == PROMPTS[architecture]


def test_a_small_image_is_not_upscaled_before_tiling(vlm: VqaModel) -> None:
    # The processor resizes every image's longest edge to 64 (2 x 2 tiles and the whole); one of 30 x 20 is asked
    # at its own size rounded up to one tile, so its answer is the direct computation's at longest edge 32.
    small = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    asked = float(vlm.probabilities_yes([small], QUESTIONS[:1])[0, 0])
    one_tile = _direct_p_yes(vlm, small, QUESTIONS[0], images_kwargs={"size": {"longest_edge": TILE}})
    assert asked == pytest.approx(one_tile, abs=TOLERANCE)
    upscaled = _direct_p_yes(vlm, small, QUESTIONS[0], images_kwargs={"size": {"longest_edge": LONGEST_EDGE}})
    assert abs(asked - upscaled) > 1000 * TOLERANCE


def test_answer_tokens_are_first_tokens_that_tell_yes_from_no() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tiny_models import _bytes_to_unicode

    # "yes" and "no" are single tokens, but " yes" and " no" start with the same lone space token: it says
    # nothing about the answer, so it counts for neither.
    vocab = {symbol: index for index, symbol in enumerate(_bytes_to_unicode())}
    merges = [("y", "e"), ("ye", "s"), ("n", "o"), ("Y", "e"), ("Ye", "s"), ("N", "o")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokens = answer_tokens(PreTrainedTokenizerFast(tokenizer_object=backend))
    assert tokens is not None
    assert tokens.yes == tuple(sorted((vocab["yes"], vocab["Yes"])))
    assert tokens.no == tuple(sorted((vocab["no"], vocab["No"])))


def test_answers_that_are_not_numbers_are_an_error_not_a_verdict(tiny_vlm: Path) -> None:
    import torch

    broken = load_vqa_model(str(tiny_vlm), OPTION, "cpu", torch.float32)
    with torch.no_grad():
        broken.model.lm_head.weight.fill_(float("nan"))  # what a float16 overflow leaves behind
    with pytest.raises(ValueError, match=r"not numbers \(NaN\).*try --t2i-dtype=bfloat16 or float32"):
        broken.probabilities_yes(_images()[:1], QUESTIONS[:1])
    # And a NaN that reaches a verdict fails it.
    check = VqaCheck((Question("Is there an owl?", "yes", 0.5),))
    assert vqa_verdict(check, [float("nan")], [1.0]).passed is False


# -- the section ---------------------------------------------------------------------------------------------


def _parse(tmp_path: Path, vqa: str) -> Any:
    path = tmp_path / "suite.yaml"
    body = f'- id: owl\n  prompt: "an owl"\n  vqa:\n{textwrap.indent(textwrap.dedent(vqa), "    ")}'
    path.write_text(case_yaml(body))
    return load_case_file(path, [VqaJudge()])[0].checks["vqa"]


def test_a_section_reads_yes_and_no_however_yaml_reads_them(tmp_path: Path) -> None:
    check = _parse(
        tmp_path,
        """
        questions:
          - {ask: "Is there an owl in the image?", expect: yes}
          - {ask: "Is the owl white?", expect: No, min_prob: 0.6}
          - {ask: "Is there any text in the image?", expect: "YES"}
        min_prob: 0.7
        """,
    )
    assert [(q.ask, q.expect, q.min_prob) for q in check.questions] == [
        ("Is there an owl in the image?", "yes", 0.7),
        ("Is the owl white?", "no", 0.6),
        ("Is there any text in the image?", "yes", 0.7),
    ]
    # The short form: a list is the questions; min_prob defaults to 0.5.
    (short,) = _parse(tmp_path, '- {ask: "Is there an owl?", expect: yes}\n').questions
    assert (short.expect, short.min_prob) == ("yes", 0.5)


BAD_SECTIONS = """\
defaults:
  steps: 2
cases:
  - id: empty
    prompt: "an owl"
    vqa: {min_prob: 0.5}
  - id: many
    prompt: "an owl"
    vqa:
      questons: []
      min_prob: high
      questions:
        - "Is there an owl?"
        - {asks: "Is the owl white?", expect: yes}
        - {ask: 42, expect: maybe}
        - {ask: "Is it night?", expect: true, min_prob: 1.5}
        - {ask: "Is there an owl?", expect: no}
        - {ask: "is there  an OWL?", expect: no}
        - {ask: "", expect: yes}
"""


def test_check_mode_reports_each_problem_of_a_section_at_its_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", suite=BAD_SECTIONS)
    # No model is loaded in check mode: one that does not exist is never looked for.
    result = pytester.runpytest("--t2i-check", f"{OPTION}=./no-such-model")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "suite.yaml: 12 problems in this case file:",
            "  suite.yaml:6: case 'empty': missing 'vqa.questions': the yes/no questions to ask about the image, "
            'e.g. questions: [[]{ask: "Is there an owl in the image?", expect: yes}[]]',
            "  suite.yaml:10: case 'many': unknown key 'questons' in 'vqa' (did you mean 'questions'?); "
            "allowed keys: questions, min_prob",
            "  suite.yaml:11: case 'many': 'vqa.min_prob' must be a probability in [[]0, 1[]], such as 0.5; "
            "got the text 'high'",
            "  suite.yaml:13: case 'many': 'vqa.questions' item 1 is the text 'Is there an owl?', not a question; "
            'write it as a mapping: {ask: "Is there an owl?", expect: yes}',
            "  suite.yaml:14: case 'many': unknown key 'asks' in 'vqa.questions' item 2 (did you mean 'ask'?); "
            "allowed keys: ask, expect, min_prob",
            "  suite.yaml:14: case 'many': 'vqa.questions' item 2 has no 'ask': the question to put to the model, "
            'e.g. ask: "Is the owl white?"',
            "  suite.yaml:15: case 'many': 'vqa.questions' item 3: 'ask' must be text, got the number 42; "
            'put it in quotes: ask: "42"',
            "  suite.yaml:15: case 'many': 'vqa.questions' item 3: 'expect' must be yes or no, got the text 'maybe'; "
            "write expect: yes (the answer a good image gets) or expect: no (for something that must be absent)",
            "  suite.yaml:16: case 'many': 'vqa.questions' item 4: 'expect' must be yes or no, got true (which YAML "
            "reads as the boolean true); write expect: yes *",
            "  suite.yaml:16: case 'many': 'vqa.questions' item 4: 'min_prob' must be a probability in [[]0, 1[]], "
            "such as 0.6; got the number 1.5",
            "  suite.yaml:18: case 'many': 'vqa.questions' item 6 asks the same as item 5 (line 17); remove one",
            "  suite.yaml:19: case 'many': 'vqa.questions' item 7: 'ask' is empty; write the question, *",
        ]
    )
    result.stdout.fnmatch_lines(["*t2i-check: 0 cases validated*no model loaded*"])
    assert "Traceback" not in result.stdout.str()


# -- a run -----------------------------------------------------------------------------------------------------


def _suite(prompt: str, strict_min: float = 1.0, second: str = "Is the owl white?") -> str:
    return case_yaml(
        f"""
        - id: owl
          prompt: "{prompt}"
          vqa:
            questions:
              - {{ask: "Is there an owl in the image?", expect: yes}}
              - {{ask: "Is there any text in the image?", expect: no}}
            min_prob: 0
        - id: strict
          prompt: "{prompt}"
          vqa:
            - {{ask: "Is there an owl in the image?", expect: yes, min_prob: {strict_min}}}
            - {{ask: "{second}", expect: no, min_prob: 0}}
        """
    )


def _scores(section: dict[str, Any]) -> dict[str, float]:
    return {score["name"]: score["value"] for score in section["scores"]}


def _score_entries(cache: Path) -> int:
    return len(list((cache / "scores").rglob("*.f32")))


def test_a_vqa_only_case_is_judged_end_to_end(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, tiny_vlm: Path, vlm: VqaModel
) -> None:
    pytester.makefile(".yaml", suite=_suite(clip_labels.prompt))
    # The model from the ini file, by a path relative to it.
    pytester.makeini(f"[pytest]\nt2i_vqa_model = {os.path.relpath(tiny_vlm, pytester.path)}\n")
    run = pytester.runpytest("suite.yaml", "--t2i-cache-dir=cache", "--html=reports/report.html", *model_args)
    run.assert_outcomes(passed=1, failed=1)
    run.stdout.fnmatch_lines(
        [
            "suite.yaml:*: case 'strict', seed 0",
            "VQA: 1 of 2 questions below min_prob: q1 'Is there an owl in the image?' P(yes) 0.* < 1:",
            "    P(expected)  expect  min     question",
            "  x      0.*  yes     1       Is there an owl in the image?",
            "         0.*  no      0       Is the owl white?",
        ]
    )
    assert "Traceback" not in run.stdout.str()

    document = json.loads((pytester.path / "reports/results.json").read_text())
    records = {r["case"]: r for r in document["results"]}
    assert document["environment"]["t2i vqa"] == f"{tiny_vlm} @ local dir"
    owl, strict = records["owl"], records["strict"]
    assert owl["clip"] is None and owl["outcome"] == "passed" and strict["outcome"] == "failed"
    section = owl["vqa"]
    assert section["title"] == "VQA" and section["passed"] is True
    scores = _scores(section)
    assert list(scores) == ["prob", "q1", "q2"] and scores["prob"] == min(scores["q1"], scores["q2"])
    assert section["scores"][0]["gated"] is True
    text, owl_question = section["details"]["questions"][1], section["details"]["questions"][0]
    assert text["expect"] == "no" and scores["q2"] == pytest.approx(1 - text["p_yes"])
    assert [row["cells"][1:] for row in section["table"]["rows"]] == [
        ["yes", "Is there an owl in the image?"],
        ["no", "Is there any text in the image?"],
    ]
    assert strict["vqa"]["table"]["rows"][0]["marks"] == ["failed"]
    html = (pytester.path / "reports/report.html").read_text()
    assert "<th>VQA</th>" in html or "&lt;th&gt;VQA&lt;/th&gt;" in html  # its column
    assert "Is there any text in the image?" in html and f"{scores['q2']:.4f}" in html  # its cell
    # The harness's answer is the model's on the image it saved.
    image = Image.open(pytester.path / "reports" / owl["image"]).convert("RGB")
    direct = vlm.probabilities_yes([image], ["Is there an owl in the image?"])
    assert owl_question["p_yes"] == pytest.approx(float(direct[0, 0]), abs=TOLERANCE)
    assert _score_entries(pytester.path / "cache") == 2

    # Thresholds edited: nothing asked again; a question reworded: only that case's image is asked again.
    pytester.makefile(".yaml", suite=_suite(clip_labels.prompt, strict_min=0, second="Is the owl grey?"))
    again = pytester.runpytest("suite.yaml", "--t2i-cache-dir=cache", *model_args)
    again.assert_outcomes(passed=2)
    records = {r["case"]: r for r in json.loads((pytester.path / "reports/results.json").read_text())["results"]}
    assert _scores(records["owl"]["vqa"]) == scores
    assert _score_entries(pytester.path / "cache") == 3


# -- the option ----------------------------------------------------------------------------------------------


def test_a_directory_that_is_no_model_is_one_paragraph_naming_the_option(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    (pytester.path / "empty-model").mkdir()
    pytester.makefile(".yaml", suite=_suite(clip_labels.prompt))
    result = pytester.runpytest("suite.yaml", f"{OPTION}=empty-model", *model_args)
    result.assert_outcomes(errors=2)
    output = result.stdout.str()
    errors = output.split("short test summary info")[0]
    assert errors.count("The vision-language model") == 1  # once, then one line per item
    result.stdout.fnmatch_lines(
        [
            f"*The vision-language model '{pytester.path / 'empty-model'}' ({OPTION}) is a directory without "
            f"config.json, so not a model directory. Point {OPTION} at a directory written by save_pretrained()*",
        ]
    )
    assert "Traceback" not in output


def test_a_missing_or_unsuitable_model_says_how_to_fix_it(tiny_models: TinyModels, tmp_path: Path) -> None:
    import torch

    with pytest.raises(MissingModelError) as missing:
        load_vqa_model("./models/no-such-vlm", OPTION, "cpu", torch.float32)
    assert f"'./models/no-such-vlm' ({OPTION}) looks like a local directory, but it does not exist" in str(
        missing.value
    )
    # A CLIP model is no image-text-to-text model.
    with pytest.raises(MissingModelError) as unsuitable:
        load_vqa_model(str(tiny_models.clip_dir), OPTION, "cpu", torch.float32)
    assert str(unsuitable.value) == (
        f"The vision-language model '{tiny_models.clip_dir}' ({OPTION}) cannot answer the vqa: questions: it is not "
        "an image-text-to-text model (transformers' AutoModelForImageTextToText does not know its configuration). "
        f"Point {OPTION} at an instruction-tuned image-text-to-text model with a chat template, such as "
        "HuggingFaceTB/SmolVLM-256M-Instruct."
    )


def test_an_empty_option_is_a_usage_error_naming_it(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(f"{OPTION}=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {OPTION} is empty; give a value or leave the option out."])


def test_help_lists_the_option_with_ini_and_default(pytester: pytest.Pytester) -> None:
    text = " ".join(pytester.runpytest("--help").stdout.str().split())
    section = text[text.index(f"{OPTION}=ID_OR_DIR") :]
    assert "Ini: t2i_vqa_model. Default: 'HuggingFaceTB/SmolVLM-256M-Instruct'" in section[:400]


def test_a_broken_file_stops_a_run_too(pytester: pytest.Pytester, model_args: list[str]) -> None:
    pytester.makefile(".yaml", suite=BAD_SECTIONS)
    with pytest.raises(CaseFileError):
        load_case_file(pytester.path / "suite.yaml", [VqaJudge()])
    result = pytester.runpytest("suite.yaml", *model_args)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*suite.yaml:16: case 'many': 'vqa.questions' item 4: 'expect' must be yes or no*"])
