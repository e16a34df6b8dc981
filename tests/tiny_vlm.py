"""Tiny random-weight vision-language models for the vqa judge's tests, written to disk so that tests load them
through the judge's real AutoProcessor / AutoModelForImageTextToText path, offline.

- ``build_tiny_vlm``: the default model's architecture. SmolVLM-256M-Instruct is an
  Idefics3ForConditionalGeneration (a SigLIP vision tower, a pixel-shuffle connector and a Llama text model) with
  an Idefics3Processor; this one has the same classes, chat template, special tokens and image tiling at toy sizes.
- ``build_tiny_qwen2_vl``: a second, unlike architecture (Qwen2-VL: flattened patches, multimodal rotary
  positions, a chat template whose answer starts after a newline), for the claim that any image-text-to-text
  model with a chat template works.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

from tiny_models import _bytes_to_unicode

# SmolVLM-256M-Instruct's chat template, as its chat_template.json has it: the generation prompt is
# "Assistant:" with no space after it, so the answer's first token is " Yes" or " No".
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL_TOKENS = (
    "<|im_start|>",  # bos
    "<|im_end|>",  # pad
    "<end_of_utterance>",  # eos
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
)
# Words that are single tokens, bare and after a space ("Ġ" in byte-level BPE), as in SmolLM2's tokenizer.
WORDS = ("yes", "Yes", "no", "No")
YES_TOKENS = ("yes", "Yes", "Ġyes", "ĠYes")
NO_TOKENS = ("no", "No", "Ġno", "ĠNo")

TILE = 32  # the vision tower's image size: max_image_size.longest_edge (512 in SmolVLM-256M)
LONGEST_EDGE = 2 * TILE  # images are resized to this, then cut into tiles (2048 in SmolVLM-256M)
PATCH = 8
SCALE_FACTOR = 2  # the connector's pixel shuffle
IMAGE_SEQ_LEN = (TILE // PATCH) ** 2 // SCALE_FACTOR**2  # <image> tokens per tile: 4 (64 in SmolVLM-256M)
HIDDEN = 32
# Larger than transformers' 0.02, so that random logits differ by image and question by more than rounding:
# at 0.02 every P(yes) is 0.48 +- 0.002, which any wrong computation would also give.
INIT_RANGE = 0.2


def _tokenizer(special_tokens: tuple[str, ...], **roles: str) -> PreTrainedTokenizerFast:
    """Byte-level BPE over every byte, with ``WORDS`` merged (bare and after a space) and ``special_tokens``."""
    alphabet = _bytes_to_unicode()
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    merges = []
    for word in WORDS:
        for end in range(2, len(word) + 1):
            merges.append((word[: end - 1], word[end - 1]))
            vocab.setdefault(word[:end], len(vocab))
        merges.append(("Ġ", word))
        vocab.setdefault("Ġ" + word, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **roles)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in special_tokens if t not in roles.values()]})
    return tokenizer


def _text_sizes(tokenizer: PreTrainedTokenizerFast) -> dict[str, object]:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": HIDDEN,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "initializer_range": INIT_RANGE,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def build_tiny_vlm(out_dir: Path) -> Path:
    """Write the tiny model and its processor to ``out_dir`` (deterministic: same weights every call)."""
    tokenizer = _tokenizer(
        SPECIAL_TOKENS, bos_token=SPECIAL_TOKENS[0], pad_token=SPECIAL_TOKENS[1], eos_token=SPECIAL_TOKENS[2]
    )
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": LONGEST_EDGE},
        max_image_size={"longest_edge": TILE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=IMAGE_SEQ_LEN, chat_template=CHAT_TEMPLATE
    )
    text_config = LlamaConfig(**_text_sizes(tokenizer), bos_token_id=tokenizer.bos_token_id)
    vision_config = Idefics3VisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=TILE,
        patch_size=PATCH,
        initializer_range=INIT_RANGE,
    )
    config = Idefics3Config(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    Idefics3ForConditionalGeneration(config).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return Path(out_dir)


# Qwen2-VL's chat template for one user turn of images and text (Qwen/Qwen2-VL-2B-Instruct's, less its system
# prompt and video branch).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>",  # pad
    "<|im_start|>",
    "<|im_end|>",  # eos
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN2_VL_PATCH = 8
QWEN2_VL_MERGE = 2


def build_tiny_qwen2_vl(out_dir: Path) -> Path:
    """A tiny Qwen2VLForConditionalGeneration with its processor in ``out_dir`` (deterministic)."""
    tokenizer = _tokenizer(QWEN2_VL_SPECIAL_TOKENS, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    # Images of up to 64 x 64 pixels keep their size (rounded to whole 16-pixel merged patches).
    sizes = {"patch_size": QWEN2_VL_PATCH, "merge_size": QWEN2_VL_MERGE, "temporal_patch_size": 2}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=16 * 16, max_pixels=64 * 64, **sizes),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**sizes),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    rope = {"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 10000.0}  # head dim 8: 2 * (2 + 1 + 1)
    config = Qwen2VLConfig(
        text_config={**_text_sizes(tokenizer), "rope_parameters": rope, "bos_token_id": None},
        vision_config={
            "depth": 2,
            "embed_dim": HIDDEN,
            "hidden_size": HIDDEN,
            "num_heads": 4,
            "patch_size": QWEN2_VL_PATCH,
            "spatial_merge_size": QWEN2_VL_MERGE,
            "temporal_patch_size": 2,
            "initializer_range": INIT_RANGE,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return Path(out_dir)
