"""Tiny random-weight Stable Diffusion, CLIP and ResNet-50 checkpoints for the test suite.

They are written to disk so tests exercise the harness's real ``from_pretrained`` loading paths offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
)

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MAX_LENGTH = 77
HIDDEN = 32
CLIP_IMAGE_SIZE = 32

# A few merges so that tokenization exercises real BPE, not just single characters.
_MERGES = ("t h", "th e</w>", "i n", "a n", "e r", "o n", "r e", "a t", "o r", "e n")


@dataclass(frozen=True)
class TinyModels:
    pipeline_dir: Path
    clip_dir: Path
    resnet_path: Path


def _bytes_to_unicode() -> list[str]:
    """CLIP's reversible byte -> printable unicode alphabet (the 256 symbols of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _write_tokenizer_files(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    alphabet = _bytes_to_unicode()
    # Every byte symbol both bare and word-final, so any UTF-8 text tokenizes without hitting unk.
    tokens = alphabet + [c + "</w>" for c in alphabet]
    tokens += ["".join(m.split()) for m in _MERGES]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")


def _build_tokenizer(scratch: Path) -> CLIPTokenizer:
    _write_tokenizer_files(scratch)
    return CLIPTokenizer.from_pretrained(scratch, model_max_length=MAX_LENGTH, pad_token=EOS_TOKEN)


def _text_config(tokenizer: CLIPTokenizer, num_layers: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        # The pooled output locates the EOS position via eos_token_id, so it must match the tokenizer.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=HIDDEN,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=num_layers,
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_LENGTH,
        projection_dim=HIDDEN,
    )


def _scheduler() -> DDIMScheduler:
    # DDIM with eta=0 injects no noise during sampling, so results depend only on the initial latents.
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        # Real SD checkpoints use 1; 0 triggers a FutureWarning in the pipeline constructor.
        steps_offset=1,
    )


def _vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )


def _build_pipeline(tokenizer: CLIPTokenizer, out_dir: Path) -> None:
    # Mirrors diffusers' own get_dummy_components(); reseeding per component keeps each one
    # independent of the others' construction order.
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        # With vae_scale_factor 2 this makes the pipeline's default output 64x64.
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=HIDDEN,
        norm_num_groups=32,
    )
    scheduler = _scheduler()
    vae = _vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(tokenizer, num_layers=2))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)


def _build_clip(tokenizer: CLIPTokenizer, out_dir: Path) -> None:
    torch.manual_seed(0)
    vision_config = {
        "hidden_size": HIDDEN,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "image_size": CLIP_IMAGE_SIZE,
        "patch_size": 4,
        "projection_dim": HIDDEN,
    }
    config = CLIPConfig(
        text_config=_text_config(tokenizer, num_layers=2).to_dict(),
        vision_config=vision_config,
        projection_dim=HIDDEN,
    )
    CLIPModel(config).save_pretrained(out_dir, safe_serialization=True)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": CLIP_IMAGE_SIZE},
        crop_size={"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE},
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)


def _build_resnet(path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    # save_file rejects non-contiguous or shared-storage tensors.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def build_tiny_sdxl(root: Path) -> Path:
    """A tiny StableDiffusionXLPipeline (two text encoders, micro-conditioning), after diffusers' own tests."""
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModelWithProjection

    root = Path(root)
    tokenizer = _build_tokenizer(root / "tokenizer_src")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,  # 64x64 images by default
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + HIDDEN,  # six time ids + the pooled text embedding
        cross_attention_dim=2 * HIDDEN,  # both text encoders' hidden states, concatenated
        norm_num_groups=32,
    )
    # DDIM rather than SDXL's usual Euler: Euler's set_timesteps trips a numpy DeprecationWarning.
    scheduler = _scheduler()
    vae = _vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(tokenizer, num_layers=2))
    torch.manual_seed(0)
    text_config_2 = _text_config(tokenizer, num_layers=2)
    text_config_2.projection_dim = HIDDEN
    text_encoder_2 = CLIPTextModelWithProjection(text_config_2)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    out_dir = root / "sdxl-pipeline"
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def build_tiny_models(root: Path) -> TinyModels:
    """Build all tiny checkpoints under ``root`` (deterministic: same bytes every call)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(root / "tokenizer_src")
    models = TinyModels(
        pipeline_dir=root / "sd-pipeline",
        clip_dir=root / "clip",
        resnet_path=root / "resnet50.safetensors",
    )
    _build_pipeline(tokenizer, models.pipeline_dir)
    _build_clip(tokenizer, models.clip_dir)
    _build_resnet(models.resnet_path)
    return models


if __name__ == "__main__":
    import tempfile
    import time
    import warnings

    from diffusers import AutoPipelineForText2Image
    from safetensors.torch import load_file

    warnings.simplefilter("error")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        models = build_tiny_models(Path(tmp) / "models")
        t_build = time.perf_counter() - t0

        t0 = time.perf_counter()
        pipe = AutoPipelineForText2Image.from_pretrained(models.pipeline_dir, use_safetensors=True)
        pipe.set_progress_bar_config(disable=True)
        clip = CLIPModel.from_pretrained(models.clip_dir, use_safetensors=True).eval()
        processor = CLIPProcessor.from_pretrained(models.clip_dir)
        resnet = torchvision.models.resnet50(weights=None)
        resnet.load_state_dict(load_file(str(models.resnet_path)))
        resnet.eval()
        t_load = time.perf_counter() - t0

        t0 = time.perf_counter()
        image = pipe(
            "a photo of an astronaut, riding a horse! (on Mars?)",
            num_inference_steps=4,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="pil",
        ).images[0]
        t_gen = time.perf_counter() - t0
        assert image.size == (64, 64), image.size

        t0 = time.perf_counter()
        with torch.no_grad():
            inputs = processor(text=["a cat", "a dog, running."], images=image, return_tensors="pt", padding=True)
            probs = clip(**inputs).logits_per_image.softmax(dim=1)
            transform = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.transforms()
            logits = resnet(transform(image).unsqueeze(0))
        t_score = time.perf_counter() - t0
        assert probs.shape == (1, 2) and torch.allclose(probs.sum(), torch.tensor(1.0))
        assert logits.shape == (1, 1000)

        print(f"build {t_build:.2f}s  load {t_load:.2f}s  generate {t_gen:.2f}s  score {t_score:.2f}s")
        print(f"clip probs {probs.tolist()}  resnet top1 {int(logits.argmax())}")
