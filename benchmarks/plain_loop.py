"""The baseline the harness is measured against: a plain hand-written diffusers + CLIP + ResNet loop.

It does the same work as `pytest <cases>` with the harness: load the three models once, then per case generate
all seeds in one pipeline call (one CPU generator per seed), score every image with CLIP exactly as the study
notes do and with ResNet-50, and save the PNGs. Nothing else: no report, no pytest.

    python benchmarks/plain_loop.py --models DIR --cases FILE.yaml --out DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from diffusers import AutoPipelineForText2Image
from safetensors.torch import load_file
from torchvision.models import ResNet50_Weights, resnet50
from transformers import CLIPModel, CLIPProcessor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="dir with sd-pipeline/, clip/, resnet50.safetensors")
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()

    pipe = AutoPipelineForText2Image.from_pretrained(args.models / "sd-pipeline", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    clip = CLIPModel.from_pretrained(args.models / "clip", use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(args.models / "clip")
    weights = ResNet50_Weights.IMAGENET1K_V2
    resnet = resnet50()
    resnet.load_state_dict(load_file(str(args.models / "resnet50.safetensors")))
    resnet.eval()
    preprocess = weights.transforms()

    document = yaml.safe_load(args.cases.read_text())
    defaults = document.get("defaults", {})
    args.out.mkdir(parents=True, exist_ok=True)
    passed = 0
    for raw in document["cases"]:
        case = {**defaults, **raw}
        seeds = case.get("seeds", [0])
        images = pipe(
            prompt=[case["prompt"]] * len(seeds),
            negative_prompt=[case["negative_prompt"]] * len(seeds) if case.get("negative_prompt") else None,
            guidance_scale=case.get("guidance_scale", 7.5),
            num_inference_steps=case.get("steps", 50),
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        ).images
        labels = [case["clip"]["expect"], *case["clip"]["distractors"]]
        inputs = processor(text=labels, images=images, return_tensors="pt", padding=True)
        with torch.no_grad():
            probs = clip(**inputs).logits_per_image.softmax(dim=1)
            resnet_probs = resnet(torch.stack([preprocess(image) for image in images])).softmax(dim=1)
        for seed, image, row, classes in zip(seeds, images, probs, resnet_probs, strict=True):
            image.save(args.out / f"{case['id']}-seed{seed}.png")
            top = [weights.meta["categories"][int(i)] for i in classes.topk(case["resnet"]["top_k"]).indices]
            passed += int(row.argmax() == 0 and any(name in top for name in case["resnet"]["expect"]))
    print(f"plain loop: {passed} passed, {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    main()
