"""load_local_tokenizer: a model's tokenizer from disk, counting tokens exactly as transformers does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.common.local_tokenizer import LocalTokenizer, TokenizerNotFound, load_local_tokenizer
from harness.generation.prompt_length import token_count
from hub_cache import put_in_hub_cache
from tiny_models import TinyModels

PROMPTS = (
    "A watercolor painting of an owl, sitting on a tree-branch!!",
    "  Ünïcode   café\tNAÏVE 123 4567 it's they'll we'd",
    "a photo of a red bench and a blue cow <|endoftext|> after the end token",
    "",
    "the owl " * 60,  # far beyond 77 tokens
)
# How Stable Diffusion 1.5's tokenizer/ folder is laid out on the hub: vocab.json and merges.txt, no
# tokenizer.json, and a tokenizer_config.json written by an old transformers (AddedToken mappings).
SD15_TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>", "lstrip": False, "normalized": True,
                  "rstrip": False, "single_word": False},
    "do_lower_case": True,
    "eos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": True,
                  "rstrip": False, "single_word": False},
    "errors": "replace",
    "model_max_length": 77,
    "pad_token": "<|endoftext|>",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": True,
                  "rstrip": False, "single_word": False},
}  # fmt: skip


@pytest.fixture(scope="module")
def sd15_layout(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline dir whose tokenizer/ holds vocab.json + merges.txt, as SD 1.5's does on the hub."""
    model = tmp_path_factory.mktemp("sd15-layout")
    folder = model / "tokenizer"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tiny_models.pipeline_dir.parent / "tokenizer_src" / name, folder / name)
    (folder / "tokenizer_config.json").write_text(json.dumps(SD15_TOKENIZER_CONFIG))
    (model / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return model


def transformers_ids(model: Path, subfolder: str | None, text: str) -> list[int]:
    from transformers import AutoTokenizer

    extra = {"subfolder": subfolder} if subfolder else {}
    tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True, **extra)
    return tokenizer(text, truncation=False)["input_ids"]


@pytest.mark.parametrize("layout", ["pipeline (tokenizer.json)", "pipeline (vocab.json, merges.txt)", "CLIP model"])
def test_token_counts_equal_transformers(
    layout: str, tiny_models: TinyModels, sd15_layout: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, subfolder = {
        "pipeline (tokenizer.json)": (tiny_models.pipeline_dir, "tokenizer"),
        "pipeline (vocab.json, merges.txt)": (sd15_layout, "tokenizer"),
        "CLIP model": (tiny_models.clip_dir, None),
    }[layout]
    tokenizer = load_local_tokenizer(str(model), subfolder)
    assert isinstance(tokenizer, LocalTokenizer), tokenizer
    assert tokenizer.model_max_length == 77
    assert tokenizer.source == (model / subfolder if subfolder else model)
    for text in PROMPTS:
        expected = transformers_ids(model, subfolder, text)
        assert token_count(tokenizer, text) == len(expected), text
        assert tokenizer.backend.encode(text).ids == expected, text  # the same tokens, not just as many


def test_reads_a_hub_models_tokenizer_from_the_cache(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert load_local_tokenizer("some-org/some-model", "tokenizer") == TokenizerNotFound(
        f"the tokenizer of some-org/some-model is not cached locally (looked in the Hugging Face cache, {tmp_path})"
    )
    snapshot = put_in_hub_cache(tmp_path, "some-org/some-model", tiny_models.pipeline_dir)
    tokenizer = load_local_tokenizer("some-org/some-model", "tokenizer")
    assert isinstance(tokenizer, LocalTokenizer) and tokenizer.source == snapshot / "tokenizer"
    expected = transformers_ids(tiny_models.pipeline_dir, "tokenizer", PROMPTS[0])
    assert token_count(tokenizer, PROMPTS[0]) == len(expected)


def test_a_local_dir_without_a_tokenizer_says_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text("{}")
    assert load_local_tokenizer(str(tmp_path), "tokenizer") == TokenizerNotFound(
        f"the local model directory {tmp_path} has no tokenizer in {tmp_path / 'tokenizer'} "
        "(tokenizer.json, or vocab.json and merges.txt)"
    )


def test_a_damaged_tokenizer_file_is_a_reason_not_a_crash(tiny_models: TinyModels, tmp_path: Path) -> None:
    shutil.copytree(tiny_models.pipeline_dir / "tokenizer", tmp_path / "tokenizer")
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{ not json")
    found = load_local_tokenizer(str(tmp_path), "tokenizer")
    assert isinstance(found, TokenizerNotFound)
    assert found.reason.startswith(f"the tokenizer in {tmp_path / 'tokenizer'} cannot be read (JSONDecodeError: ")
