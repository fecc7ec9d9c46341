"""diffusers' own Qwen-Image-Edit pipeline on a tiny folder, with the condition area as a parameter.

Run by hand in a venv with torch, transformers and diffusers (none of their code is in this repository), after
scripts/export/qwen_image_edit.py --tiny has written the diffusers folder and its ONNX export:

    python scripts/parity/qwen_reference.py --diffusers /work/qwen-tiny/diffusers-edit --area 4096 --out ref.json

diffusers resizes the condition to calculate_dimensions(1024*1024, aspect); --area replaces that 1024*1024 (the
modules' function is wrapped; Plus's 384*384 vision area and everything else stay) so that a CPU without memory-efficient attention can run the same case
through ONNX Runtime (this server's edit-server.json `qwen.conditionArea`). Inputs: prompt "dance monkey", negative
"bad quality", true_cfg_scale 4, 2 steps, 32x32, a 32x32 image of uniform 8x8 squares, generator seed 0 on the CPU.
Writes the image ([3, 32, 32] in [0, 1]) as JSON for scripts/parity/qwen_server.ts.

--reference WxH (Plus only): the image list [reference, input], a W x H reference of other 8x8 squares first (the
server's `referenceImages`), the input last.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit_module
import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as plus_module

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "export"))
from qwen_image_edit import load_pipeline  # noqa: E402  (the processor without torchvision)


def squares_image() -> Image.Image:
    a = np.zeros((32, 32, 3), np.uint8)
    for i in range(4):
        for j in range(4):
            k = 4 * i + j
            a[8 * i : 8 * i + 8, 8 * j : 8 * j + 8] = (16 * k, 255 - 16 * k, 48 * i + 16 * j + 32)
    return Image.fromarray(a)


def reference_image(width: int, height: int) -> Image.Image:
    """8x8 squares, square (i, j): (255 - 20i - 9j, 30 + 40j, 60 + 25i + 7j) mod 256 (qwen_server.ts draws the same)."""
    a = np.zeros((height, width, 3), np.uint8)
    for y in range(height):
        for x in range(width):
            i, j = y >> 3, x >> 3
            a[y, x] = ((255 - 20 * i - 9 * j) % 256, (30 + 40 * j) % 256, (60 + 25 * i + 7 * j) % 256)
    return Image.fromarray(a)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--diffusers", required=True)
    p.add_argument("--area", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--reference", help="WxH: condition on [a WxH reference, the input] (Plus pipelines)")
    a = p.parse_args()
    for module in (edit_module, plus_module):
        original = module.calculate_dimensions
        # Only the 1 MP area (the VAE condition; Edit's vision input too); Plus's 384² vision area stays.
        module.calculate_dimensions = lambda area, ratio, _o=original: _o(a.area if area == 1024 * 1024 else area, ratio)
    pipe = load_pipeline(a.diffusers)
    reference = tuple(int(v) for v in a.reference.split("x")) if a.reference else None
    inputs = dict(
        prompt="dance monkey",
        negative_prompt="bad quality",
        true_cfg_scale=4.0,
        num_inference_steps=2,
        height=32,
        width=32,
        image=[reference_image(*reference), squares_image()] if reference else squares_image(),
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="pt",
    )
    image = pipe(**inputs).images[0]
    json.dump(
        dict(
            inputs=dict(
                prompt=inputs["prompt"],
                negative_prompt=inputs["negative_prompt"],
                true_cfg_scale=4.0,
                num_inference_steps=2,
                height=32,
                width=32,
                condition_area=a.area,
                **({"reference": {"width": reference[0], "height": reference[1]}} if reference else {}),
            ),
            image=dict(shape=list(image.shape), values=[float(v) for v in image.flatten()]),
        ),
        open(a.out, "w"),
    )
    print(f"wrote {a.out}: image {list(image.shape)}, first {image.flatten()[:4].tolist()}")


if __name__ == "__main__":
    main()
