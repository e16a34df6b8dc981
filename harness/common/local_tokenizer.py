"""A model's tokenizer read from disk (a local dir or the Hugging Face cache), without torch or transformers.

Check mode counts prompt tokens on machines that may have neither torch nor transformers installed (a pull
request's CI job), and importing transformers alone costs about half a second. CLIP tokenizers, the ones every
Stable Diffusion pipeline and every CLIP judge uses, are built here with the `tokenizers` library exactly as
transformers' CLIPTokenizer builds them; tests/test_local_tokenizer.py proves the counts equal transformers'.
Other tokenizer classes go through transformers when it is installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What transformers reports as model_max_length when a tokenizer has no limit of its own.
NO_LIMIT = int(1e30)
CLIP_TOKENIZER_CLASSES = frozenset({"CLIPTokenizer", "CLIPTokenizerFast"})
# Classes that are a plain tokenizer.json, with nothing transformers adds on top.
GENERIC_TOKENIZER_CLASSES = frozenset({None, "PreTrainedTokenizerFast", "TokenizersBackend"})
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json")
# CLIP's word splitting, as transformers' CLIPTokenizer defines it.
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_CLIP_DEFAULTS = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}


@dataclass(frozen=True)
class LocalTokenizer:
    """A tokenizer found on disk; harness.generation.prompt_length.token_count counts with it."""

    # A tokenizers.Tokenizer, or a transformers tokenizer for classes built by transformers only.
    backend: Any = field(repr=False)
    model_max_length: int
    source: Path  # the folder it was read from


@dataclass(frozen=True)
class TokenizerNotFound:
    """Why no tokenizer could be read: a sentence that finishes 'prompt lengths not checked: ...'."""

    reason: str


def load_local_tokenizer(model_ref: str, subfolder: str | None = "tokenizer") -> LocalTokenizer | TokenizerNotFound:
    """The tokenizer of ``model_ref`` (a local dir or a hub repo id) from disk; never downloads.

    ``subfolder`` is "tokenizer" for a diffusers pipeline, None for a model whose tokenizer sits at its
    top level (a CLIP model for --t2i-clip-model).
    """
    found = _tokenizer_files(model_ref, subfolder)
    if isinstance(found, TokenizerNotFound):
        return found
    folder, files = found
    try:
        config = _read_json(files["tokenizer_config.json"]) if "tokenizer_config.json" in files else {}
        tokenizer_class = config.get("tokenizer_class")
        limit = config.get("model_max_length")
        model_max_length = int(limit) if isinstance(limit, (int, float)) and limit > 0 else NO_LIMIT
        if tokenizer_class in CLIP_TOKENIZER_CLASSES:
            backend = _clip_tokenizer(files, _special_tokens(config, files))
        elif tokenizer_class in GENERIC_TOKENIZER_CLASSES and "tokenizer.json" in files:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_file(str(files["tokenizer.json"]))
        else:
            backend = _transformers_tokenizer(folder, tokenizer_class)
            if isinstance(backend, TokenizerNotFound):
                return backend
            model_max_length = int(getattr(backend, "model_max_length", model_max_length))
    except ImportError as exc:
        return TokenizerNotFound(f"reading the tokenizer in {folder} needs the `{exc.name}` package")
    except Exception as exc:  # a damaged file: json, OSError, or the tokenizers library's own exceptions
        return TokenizerNotFound(f"the tokenizer in {folder} cannot be read ({type(exc).__name__}: {exc})")
    if backend is None:
        return TokenizerNotFound(f"{folder} has neither tokenizer.json nor vocab.json and merges.txt")
    return LocalTokenizer(backend=backend, model_max_length=model_max_length, source=folder)


def _tokenizer_files(model_ref: str, subfolder: str | None) -> tuple[Path, dict[str, Path]] | TokenizerNotFound:
    """The folder holding the tokenizer and which of its files exist there."""
    local = Path(model_ref).expanduser()
    if local.is_dir():
        folder = local / subfolder if subfolder else local
        files = {name: folder / name for name in TOKENIZER_FILES if (folder / name).is_file()}
        if not files:
            return TokenizerNotFound(
                f"the local model directory {local} has no tokenizer in {folder} "
                "(tokenizer.json, or vocab.json and merges.txt)"
            )
        return folder, files
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return TokenizerNotFound(f"looking for {model_ref} in the Hugging Face cache needs huggingface_hub")
    files = {}
    for name in TOKENIZER_FILES:
        try:
            cached = try_to_load_from_cache(model_ref, f"{subfolder}/{name}" if subfolder else name)
        except ValueError:  # not a valid repo id (nor an existing directory)
            return TokenizerNotFound(f"{model_ref!r} is neither a local directory nor a Hugging Face repo id")
        if isinstance(cached, str):
            files[name] = Path(cached)
    if not files:
        return TokenizerNotFound(
            f"the tokenizer of {model_ref} is not cached locally (looked in the Hugging Face cache, "
            f"{constants.HF_HUB_CACHE})"
        )
    return next(iter(files.values())).parent, files


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: text, or an AddedToken mapping."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _special_tokens(config: dict[str, Any], files: dict[str, Path]) -> dict[str, str]:
    tokens = dict(_CLIP_DEFAULTS)
    sources = [config]
    if "special_tokens_map.json" in files:
        sources.insert(0, _read_json(files["special_tokens_map.json"]))  # tokenizer_config.json wins
    for source in sources:
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            text = _token_text(source.get(key))
            if text is not None:
                tokens[key] = text
    return tokens


def _clip_vocab_and_merges_from_json(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and merges of a tokenizer.json: all transformers keeps of a CLIP one (it rebuilds the rest)."""
    model = _read_json(path).get("model", {})
    vocab = model.get("vocab")
    if isinstance(vocab, list):
        vocab = {token[0] if isinstance(token, list) else token: i for i, token in enumerate(vocab)}
    if not isinstance(vocab, dict):
        raise ValueError(f"{path.name} has no BPE vocabulary")
    merges = []
    for merge in model.get("merges", []):  # "a b", or ["a", "b"] in newer files
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        merges.append((left, right))
    return vocab, merges


def _clip_tokenizer(files: dict[str, Path], special: dict[str, str]) -> Any:
    """transformers' CLIPTokenizer, rebuilt: the same BPE model, normalizer, word splitting and start/end tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    # The same BPE model transformers' CLIPTokenizer makes; read by the library itself where the files allow.
    settings: dict[str, Any] = {
        "dropout": None,
        "continuing_subword_prefix": "",
        "end_of_word_suffix": "</w>",
        "fuse_unk": False,
        "unk_token": special["unk_token"],
    }
    if "vocab.json" in files and "merges.txt" in files:
        model = BPE.from_file(str(files["vocab.json"]), str(files["merges.txt"]), **settings)
    elif "tokenizer.json" in files:
        vocab, merges = _clip_vocab_and_merges_from_json(files["tokenizer.json"])
        model = BPE(vocab=vocab, merges=merges, **settings)
    else:
        return None
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    # transformers registers the special tokens as added tokens (a prompt containing one gets one token).
    tokenizer.add_special_tokens([AddedToken(special[key], special=True) for key in ("bos_token", "eos_token")])
    bos, eos = special["bos_token"], special["eos_token"]
    bos_id, eos_id = tokenizer.token_to_id(bos), tokenizer.token_to_id(eos)
    assert bos_id is not None and eos_id is not None  # just added
    tokenizer.post_processor = processors.RobertaProcessing(
        (eos, eos_id), (bos, bos_id), trim_offsets=False, add_prefix_space=False
    )
    return tokenizer


def _transformers_tokenizer(folder: Path, tokenizer_class: str | None) -> Any:
    """Tokenizer classes that only transformers knows how to build (T5's, say)."""
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return TokenizerNotFound(f"the tokenizer in {folder} is a {tokenizer_class}, which needs transformers")
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    finally:
        transformers_logging.set_verbosity(verbosity)
