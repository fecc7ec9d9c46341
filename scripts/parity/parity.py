"""Same seed, same image as diffusers? Runs each family both ways and prints the pixel difference.

Run by hand from the repository root, in a venv with torch, transformers, diffusers, optimum and
optimum-onnx (installed from their sources; none of their code is in this repository):
    python scripts/parity/parity.py [--work DIR] [--families a,b] [--schedulers A,B]

For each family: a tiny random diffusers pipeline (tiny_pipelines.build_full) is saved, exported
with optimum-onnx's main_export, then the same edit runs in diffusers (PyTorch, fp32) and through
this server's CLI (`npm run edit`) on the export, with the same seed and explicit parameters, once
per scheduler. Prints max and mean |difference| per channel value in 0..255 (inpainting: inside the
mask only, as the server keeps the input's pixels outside it and diffusers does not). Flow
families' T5 runs from the export on both sides (OnnxT5) unless --torch-t5: the export of
transformers 5's T5 is not the PyTorch model (the gap is printed).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from tiny_pipelines import build_full, patch_optimum_for_transformers_5

SEED = 7
SIZE = 32
STEPS = 6
STRENGTH = 0.6
GUIDANCE = 2.0
PROMPT = "make it sepia"
MAX_SEQUENCE_LENGTH = 32

UNET_SCHEDULERS = {
    "EULER_ANCESTRAL": ("EulerAncestralDiscreteScheduler", {}),
    "EULER": ("EulerDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "PNDM": ("PNDMScheduler", {}),
    "DPMPP_2M": ("DPMSolverMultistepScheduler", {}),
    "DPMPP_2M_KARRAS": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "LCM": ("LCMScheduler", {}),
}
FLOW_SCHEDULERS = {"FLOW_MATCH_EULER": ("FlowMatchEulerDiscreteScheduler", {})}
FAMILIES = {
    "img2img": "image-to-image",
    "instruct-pix2pix": "image-to-image",
    "inpaint": "inpainting",
    "sdxl-img2img": "image-to-image",
    "sdxl-inpaint": "inpainting",
    "sd3-img2img": "image-to-image",
    "sd3-inpaint": "inpainting",
    "flux-img2img": "image-to-image",
    "flux-kontext": "image-to-image",
}


def input_image() -> Image.Image:
    """A smooth two-colour gradient, SIZE x SIZE."""
    x = np.linspace(0, 1, SIZE, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, SIZE, dtype=np.float32)[:, None, None]
    rgb = (1 - x) * np.array([200, 60, 30], np.float32) + x * np.array([20, 120, 220], np.float32) * (0.5 + 0.5 * y)
    return Image.fromarray(np.clip(rgb.round(), 0, 255).astype(np.uint8))


def mask_image() -> Image.Image:
    """White (edit) on the left half; the server keeps the rest as the input, diffusers does not."""
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (0, 0, SIZE // 2, SIZE))
    return mask


def diffusers_image(pipe, family: str, image: Image.Image) -> np.ndarray:
    kwargs = dict(prompt=PROMPT, image=image, num_inference_steps=STEPS, generator=torch.Generator("cpu").manual_seed(SEED), output_type="pil")
    if "inpaint" in family:
        kwargs.update(mask_image=mask_image(), height=SIZE, width=SIZE)
    if family == "instruct-pix2pix":
        kwargs.update(guidance_scale=GUIDANCE, image_guidance_scale=1.5)
    elif family == "flux-kontext":
        kwargs.update(guidance_scale=GUIDANCE, height=SIZE, width=SIZE, max_area=SIZE * SIZE, _auto_resize=False, max_sequence_length=MAX_SEQUENCE_LENGTH)
    elif family.startswith("flux"):
        kwargs.update(guidance_scale=GUIDANCE, strength=STRENGTH, height=SIZE, width=SIZE, max_sequence_length=MAX_SEQUENCE_LENGTH)
    elif family.startswith("sd3"):
        kwargs.update(guidance_scale=GUIDANCE, strength=STRENGTH, height=SIZE, width=SIZE, max_sequence_length=MAX_SEQUENCE_LENGTH)
    else:
        kwargs.update(guidance_scale=GUIDANCE, strength=STRENGTH)
    return np.asarray(pipe(**kwargs).images[0], dtype=np.int16)


def server_image(models: str, family: str, scheduler: str, image_path: str, out: str, mask_path: str) -> np.ndarray:
    args = ["npm", "run", "-s", "edit", "--", "--models-dir", models, "--model", family, "--image", image_path, "--prompt", PROMPT]
    args += ["--seed", str(SEED), "--steps", str(STEPS), "--guidance", str(GUIDANCE), "--size", f"{SIZE}x{SIZE}", "--scheduler", scheduler]
    args += ["--generator", "TORCH", "--out", out, "--overwrite"]
    if "inpaint" in family:
        args += ["--mask", mask_path]
    if family == "instruct-pix2pix":
        args += ["--image-guidance", "1.5"]
    elif family != "flux-kontext":
        args += ["--strength", str(STRENGTH)]
    if family.startswith(("flux", "sd3")):
        args += ["--max-sequence-length", str(MAX_SEQUENCE_LENGTH)]
    subprocess.run(args, check=True, capture_output=True, text=True)
    name = os.path.splitext(os.path.basename(image_path))[0]
    return np.asarray(Image.open(os.path.join(out, f"{name}-0.png")).convert("RGB"), dtype=np.int16)


class OnnxT5(torch.nn.Module):
    """The export's T5 encoder in diffusers' place (its call and `dtype`), so that both sides read
    the same T5 states: torch.onnx's trace of transformers 5's T5 differs from the PyTorch model
    (see --torch-t5)."""

    def __init__(self, path: str):
        super().__init__()
        import onnxruntime

        self.session = onnxruntime.InferenceSession(path)
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def forward(self, input_ids, output_hidden_states=False, **_):
        return (torch.from_numpy(self.session.run(None, {"input_ids": input_ids.numpy().astype(np.int64)})[0]),)


def t5_part(family: str) -> str | None:
    return "text_encoder_3" if family.startswith("sd3") else "text_encoder_2" if family.startswith("flux") else None


def main() -> None:
    import diffusers
    from optimum.exporters.onnx import main_export

    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="/tmp/parity")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--schedulers", default=None)
    parser.add_argument("--torch-t5", action="store_true", help="keep diffusers' PyTorch T5 instead of the export's")
    a = parser.parse_args()
    patch_optimum_for_transformers_5()
    models = os.path.join(a.work, "models")
    os.makedirs(models, exist_ok=True)
    image_path = os.path.join(a.work, "input.png")
    image = input_image()
    image.save(image_path)
    mask_path = os.path.join(a.work, "mask.png")
    mask_image().save(mask_path)
    edited = np.asarray(mask_image()) > 127
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}; {SIZE}x{SIZE}, {STEPS} steps, seed {SEED}")
    print(f"{'family':18} {'scheduler':16} {'max':>4} {'mean':>6}")
    for family in a.families.split(","):
        pipe = build_full(family)
        source = os.path.join(a.work, "diffusers", family)
        pipe.save_pretrained(source)
        main_export(model_name_or_path=source, output=os.path.join(models, family), task=FAMILIES[family])
        part = t5_part(family)
        if part:
            exported = OnnxT5(os.path.join(models, family, part, "model.onnx"))
            ids = torch.tensor([[29, 4, 24, 12, 21, 42, 63, 1] + [0] * 24])
            with torch.no_grad():
                gap = (exported(ids)[0] - getattr(pipe, part)(ids)[0]).abs().max().item()
            print(f"{family:18} {part} export vs PyTorch: max |difference| {gap:.3g}")
            if not a.torch_t5:
                setattr(pipe, part, exported)
        schedulers = FLOW_SCHEDULERS if family.startswith(("sd3", "flux")) else UNET_SCHEDULERS
        for name, (cls, extra) in schedulers.items():
            if a.schedulers and name not in a.schedulers.split(","):
                continue
            # The file the server reads: a live pipeline's config would hand keys left at their
            # defaults (`_use_default_values`, e.g. timestep_spacing) to the new class's defaults.
            with open(os.path.join(models, family, "scheduler", "scheduler_config.json")) as fh:
                pipe.scheduler = getattr(diffusers, cls).from_config(json.load(fh), **extra)
            want = diffusers_image(pipe, family, image)
            try:
                got = server_image(models, family, name, image_path, os.path.join(a.work, "out", family, name), mask_path)
            except subprocess.CalledProcessError as err:
                print(f"{family:18} {name:16} server failed: {err.stderr.strip().splitlines()[-1] if err.stderr.strip() else err}")
                continue
            diff = np.abs(got - want)[edited] if "inpaint" in family else np.abs(got - want)
            print(f"{family:18} {name:16} {diff.max():4d} {diff.mean():6.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
