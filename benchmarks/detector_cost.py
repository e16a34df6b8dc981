"""CPU cost of one forward of each candidate default detector, on one 512x512 image (SD 1.5's size).

The architectures are built from their config classes with random weights (nothing is downloaded): a forward
costs the same whatever the weights. OWLv2 base/16 as google/owlv2-base-patch16-ensemble configures it (960x960
input), Grounding DINO tiny as IDEA-Research/grounding-dino-tiny (Swin-T + BERT-base, 800-pixel shortest side).

    python benchmarks/detector_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time


def _image():  # type: ignore[no-untyped-def]
    import numpy as np
    from PIL import Image

    return Image.fromarray((np.random.RandomState(0).rand(512, 512, 3) * 255).astype("uint8"))


def owlv2() -> tuple[object, dict[str, object]]:
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor

    model = Owlv2ForObjectDetection(Owlv2Config(vision_config={"image_size": 960, "patch_size": 16})).eval()
    pixels = Owlv2ImageProcessor()(images=[_image()], return_tensors="pt")["pixel_values"]
    ids = torch.randint(1, 1000, (2, 16))  # two class names, 16 tokens each (OWLv2 pads to 16)
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}


def grounding_dino() -> tuple[object, dict[str, object]]:
    import torch
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor

    model = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
    encoded = GroundingDinoImageProcessor()(images=[_image()], return_tensors="pt")
    ids = torch.tensor([[101, 3899, 1012, 11389, 4562, 1012, 102]])  # [CLS] dog . teddy bear . [SEP]
    return model, {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "pixel_values": encoded["pixel_values"],
        "pixel_mask": encoded["pixel_mask"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    for name, build in (("OWLv2 base/16 (960x960)", owlv2), ("Grounding DINO tiny (800x800)", grounding_dino)):
        model, inputs = build()
        params = sum(p.numel() for p in model.parameters()) / 1e6  # type: ignore[attr-defined]
        with torch.no_grad():
            model(**inputs)  # type: ignore[operator]  # warm-up
            wall, cpu = [], []
            for _ in range(args.repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                model(**inputs)  # type: ignore[operator]
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
        print(f"{name}: {params:.1f}M parameters, forward {min(wall):.1f} s wall (best of {args.repeats}), "
              f"{min(cpu):.1f} s CPU")  # fmt: skip


if __name__ == "__main__":
    main()
