"""Tiny random-weight OWLv2 and Grounding DINO checkpoints for the objects judge's tests.

Built from their config classes and saved with their processors, so the tests load them through the judge's
real loading code (AutoModelForZeroShotObjectDetection, AutoProcessor). 64x64 inputs: OWLv2 predicts one box per
16-pixel patch (16 boxes), Grounding DINO 8 queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertTokenizer,
    CLIPTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessor,
    Owlv2Processor,
    SwinConfig,
)

from tiny_models import _write_tokenizer_files

HIDDEN = 32
IMAGE_SIZE = 64
OWL_TEXT_LENGTH = 16  # OWLv2's text encoder reads 16 tokens, start and end included
# Grounding DINO's BERT tokenizer: the words the tests name, and single letters for anything else.
_WORDS = ("dog", "cat", "teddy", "bear", "text", "clock", "wine", "glass", "car", "bird", "a", "the")


@dataclass(frozen=True)
class TinyDetectors:
    owl_dir: Path
    grounding_dino_dir: Path


def _build_owl(root: Path) -> Path:
    _write_tokenizer_files(root / "owl-tokenizer")
    # OWLv2's own tokenizer pads with "!" (id 0): a query whose first token is 0 is padding to the model.
    tokenizer = CLIPTokenizer.from_pretrained(root / "owl-tokenizer", model_max_length=OWL_TEXT_LENGTH, pad_token="!")
    torch.manual_seed(0)
    config = Owlv2Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": HIDDEN,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": OWL_TEXT_LENGTH,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": 16,
        },
        projection_dim=HIDDEN,
    )
    out = root / "owlv2"
    Owlv2ForObjectDetection(config).save_pretrained(out, safe_serialization=True)
    image_processor = Owlv2ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def _build_grounding_dino(root: Path) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *_WORDS, *"bcdefghijklmnopqrsuvwxyz"]
    tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(dict.fromkeys(vocab))})
    torch.manual_seed(0)
    backbone = SwinConfig(
        image_size=IMAGE_SIZE,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=2,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone.to_dict(),
        text_config=text.to_dict(),
        num_queries=8,
        encoder_layers=1,
        decoder_layers=2,  # its box heads are tied from the second layer on
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        d_model=64,  # GroupNorm(32 groups) over its features needs 2 channels a group on a 1x1 level
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    out = root / "grounding-dino"
    GroundingDinoForObjectDetection(config).save_pretrained(out, safe_serialization=True)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": IMAGE_SIZE, "longest_edge": IMAGE_SIZE})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def build_tiny_detectors(root: Path) -> TinyDetectors:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return TinyDetectors(owl_dir=_build_owl(root), grounding_dino_dir=_build_grounding_dino(root))
