"""Writes test/vectors/torch-draws.json: the torch.randn calls diffusers makes with the caller's
generator in one edit of each family, in order, and what each drew.

Run by hand (torch, transformers, diffusers installed from source in a venv):
    python scripts/parity/draw_sequences.py [out.json]

Each family's pipeline (tiny_pipelines.py) edits one 32x32 image with
generator=torch.Generator("cpu").manual_seed(SEED), guidance off, EULER_ANCESTRAL on UNet families
(one draw per step), output_type="latent". torch.randn is wrapped to record every call that passes
a generator. test/random.test.ts replays each sequence through TorchNoise and the pipelines' draw
order is documented in docs/multi-image.md#seeds.
"""

import json
import sys

import diffusers
import torch
from PIL import Image

from tiny_pipelines import FAMILIES, build, embeds
from torch_vectors import record

SEED = 1234
SIZE = 32
STEPS = 4
STRENGTH = 0.5


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "test/vectors/torch-draws.json"
    calls = []
    real_randn = torch.randn

    def recording_randn(*args, generator=None, **kw):
        values = real_randn(*args, generator=generator, **kw)
        if generator is not None:
            calls.append(values.detach().clone())
        return values

    torch.randn = recording_randn
    image = Image.new("RGB", (SIZE, SIZE), (200, 60, 30))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (0, 0, SIZE // 2, SIZE))
    families = []
    for family in FAMILIES:
        for strength in [STRENGTH, 1.0] if "inpaint" in family else [STRENGTH]:
            pipe = build(family)
            kwargs = dict(image=image, num_inference_steps=STEPS, output_type="latent", generator=torch.Generator("cpu").manual_seed(SEED), **embeds(family))
            if family == "instruct-pix2pix":
                kwargs.update(guidance_scale=1.0, image_guidance_scale=1.0)
            elif family == "flux-kontext":
                kwargs.update(guidance_scale=1.0, max_area=SIZE * SIZE, _auto_resize=False)
            else:
                kwargs.update(guidance_scale=1.0, strength=strength)
            if "inpaint" in family:
                kwargs.update(mask_image=mask)
            if family != "instruct-pix2pix":
                kwargs.update(height=SIZE, width=SIZE)
            calls.clear()
            pipe(**kwargs)
            families.append(
                {
                    "family": family,
                    "pipeline": type(pipe).__name__,
                    "scheduler": type(pipe.scheduler).__name__,
                    "strength": strength if family not in ("instruct-pix2pix", "flux-kontext") else None,
                    "draws": [{"shape": list(c.shape), **record(c)} for c in calls],
                }
            )
            print(family, strength, [list(c.shape) for c in calls])
    torch.randn = real_randn
    data = {"torch": torch.__version__, "diffusers": diffusers.__version__, "seed": SEED, "size": SIZE, "steps": STEPS, "families": families}
    with open(out, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
