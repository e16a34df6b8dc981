"""GPU benchmark (run by hand on a CUDA machine, never in CI): cross-case batching vs batch 1.

Full-size Stable Diffusion 1.5 architecture (UNet, VAE, CLIP ViT-L/14 text encoder from the published configs),
CLIP ViT-B/32 and ResNet-50, all with random weights: the same FLOPs as the real models, no download. fp16,
512x512, 25 steps, 16 cases x 2 seeds. Reports images/s at --t2i-batch-size=1 and with batching across cases,
the GPU's measured fp16 matmul rate, and the fraction of it the UNet achieves.

    python benchmarks/gpu_throughput.py                  # on a CUDA machine
    python benchmarks/gpu_throughput.py --smoke          # tiny models on CPU: checks the script only
    python benchmarks/gpu_throughput.py --ray local      # also images/s with one Ray actor per GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def build_sd15_random(root: Path, dtype: torch.dtype) -> tuple[Path, Path, Path]:
    """SD 1.5-shaped pipeline, CLIP ViT-B/32 and ResNet-50 with random weights, saved like real checkpoints."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import save_file
    from torchvision.models import resnet50
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPTextModel

    from tiny_models import _build_tokenizer  # byte-level BPE; token ids fit any vocab size

    tokenizer = _build_tokenizer(root / "tokenizer_src")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    text_config = dict(
        vocab_size=49408,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            hidden_act="quick_gelu",
            **text_config,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )
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
    pipe.to(dtype).save_pretrained(root / "sd15", safe_serialization=True)

    clip = CLIPModel(
        CLIPConfig(
            text_config=dict(
                hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8, **text_config
            ),
            vision_config=dict(
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                image_size=224,
                patch_size=32,
            ),
            projection_dim=512,
        )
    )
    clip.save_pretrained(root / "clip")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(root / "clip")
    save_file({k: v.contiguous() for k, v in resnet50().state_dict().items()}, str(root / "resnet50.safetensors"))
    return root / "sd15", root / "clip", root / "resnet50.safetensors"


def write_suite(path: Path, steps: int, size: int | None) -> None:
    subjects = [
        "owl",
        "fox",
        "teapot",
        "violin",
        "lighthouse",
        "bicycle",
        "castle",
        "tiger",
        "sailboat",
        "cactus",
        "piano",
        "zebra",
        "volcano",
        "umbrella",
        "penguin",
        "tractor",
    ]
    sizes = f"  width: {size}\n  height: {size}\n" if size else ""
    cases = "".join(
        f'  - id: {s}\n    prompt: "a watercolor painting of a {s}, soft colors"\n'
        f'    clip: {{expect: "a watercolor painting of a {s}",\n'
        f'            distractors: ["a photo of a {s}", "an oil painting of a {s}"]}}\n'
        f'    resnet: {{expect: ["tabby"], top_k: 1000}}\n'
        for s in subjects
    )
    path.write_text(
        f'defaults:\n  steps: {steps}\n  seeds: [0, 1]\n  negative_prompt: "blurry"\n{sizes}cases:\n{cases}'
    )


def run_harness(
    suite: Path, models: tuple[Path, Path, Path], device: str, batch: str, report: Path, *extra: str
) -> tuple[float, int]:
    """Generation seconds summed over items (the pipeline calls' time, models loaded beforehand)."""
    import pytest

    args = [
        str(suite),
        "-q",
        "-p",
        "no:cacheprovider",
        "--t2i-no-cache",
        f"--t2i-batch-size={batch}",
        f"--t2i-model={models[0]}",
        f"--t2i-clip-model={models[1]}",
        f"--t2i-resnet-weights={models[2]}",
        f"--t2i-device={device}",
        f"--t2i-report-dir={report}",
        "-W",
        "ignore::UserWarning",
        *extra,
    ]
    pytest.main(args)
    records = json.loads((report / "results.json").read_text())["results"]
    return sum(r["timings"]["generate_s"] for r in records), len(records)


def matmul_tflops(device: str, dtype: torch.dtype, n: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


def unet_tflops(pipe_dir: Path, device: str, dtype: torch.dtype, images: int, repeats: int = 10) -> float:
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    unet = UNet2DConditionModel.from_pretrained(pipe_dir / "unet", torch_dtype=dtype).to(device)
    sample = torch.randn(2 * images, 4, 64, 64, device=device, dtype=dtype)  # x2: classifier-free guidance
    context = torch.randn(2 * images, 77, 768, device=device, dtype=dtype)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            unet(sample, 500, context)
        flops = counter.get_total_flops()
        for _ in range(3):
            unet(sample, 500, context)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            unet(sample, 500, context)
        torch.cuda.synchronize()
    return flops * repeats / (time.perf_counter() - started) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU, to check the script")
    parser.add_argument("--batch", default="auto", help="the batched run's --t2i-batch-size (default auto)")
    parser.add_argument("--ray", metavar="ADDRESS", help="also run on Ray actors (one per GPU): --t2i-ray ADDRESS")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="t2i-gpu-bench-"))
    if args.smoke:
        from tiny_models import build_tiny_models

        tiny = build_tiny_models(work / "models")
        models, device, steps, size = (tiny.pipeline_dir, tiny.clip_dir, tiny.resnet_path), "cpu", 2, None
    else:
        assert torch.cuda.is_available(), "needs a CUDA GPU (or --smoke)"
        models, device, steps, size = build_sd15_random(work / "models", torch.float16), "cuda", 25, 512
    suite = work / "suite.yaml"
    write_suite(suite, steps, size)
    single_s, count = run_harness(suite, models, device, "1", work / "report-b1")
    batched_s, _ = run_harness(suite, models, device, args.batch, work / "report-batched")
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; torch {torch.__version__}")
    print(f"{count} images, {steps} steps, {size or 'default'} px, fp16" if device == "cuda" else f"{count} images")
    print(f"batch 1:       {count / single_s:.2f} images/s ({single_s:.1f} s generating)")
    print(
        f"batch {args.batch}:   {count / batched_s:.2f} images/s ({batched_s:.1f} s)  "
        f"speed-up {single_s / batched_s:.2f}x"
    )
    if args.ray:
        # Actors generate in parallel, so the sum of per-image seconds is not a rate: the whole session's wall time
        # (Ray's start and each actor's model loading included) is, and the batched run's for comparison.
        started = time.perf_counter()
        run_harness(suite, models, device, args.batch, work / "report-batched-again")
        local_s = time.perf_counter() - started
        started = time.perf_counter()
        run_harness(suite, models, device, args.batch, work / "report-ray", f"--t2i-ray={args.ray}")
        ray_s = time.perf_counter() - started
        actors = json.loads((work / "report-ray/results.json").read_text())["environment"].get("t2i ray", "?")
        print(
            f"whole session, batch {args.batch}: here {count / local_s:.2f} images/s ({local_s:.1f} s); on Ray "
            f"({actors}) {count / ray_s:.2f} images/s ({ray_s:.1f} s)"
        )
    if device == "cuda":
        peak = matmul_tflops(device, torch.float16)
        for images in (1, 8):
            achieved = unet_tflops(models[0], device, torch.float16, images)
            print(
                f"UNet at {images} image(s)/call: {achieved:.0f} TFLOP/s = {achieved / peak:.0%} "
                f"of measured fp16 matmul {peak:.0f} TFLOP/s"
            )


if __name__ == "__main__":
    main()
