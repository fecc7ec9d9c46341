"""An SD 1.5-size img2img model folder with random weights, for real-size benchmarks (issue 29).

Builds Stable Diffusion 1.5's exact architecture (UNet2DConditionModel 859.5M parameters,
AutoencoderKL 83.7M, CLIP ViT-L/14 text encoder 123.1M) with seeded random weights, saves it as a
diffusers pipeline and exports it with optimum-onnx (fp32, about 4 GB), in optimum's layout (the
folder this server reads). No weights are downloaded: the tokenizer is the repository's tiny CLIP
BPE tokenizer (models/tiny-edit/tokenizer, 578 ids), whose ids all fall in CLIP-L's 49,408-row
embedding. Outputs are noise; timings and memory are those of the real architecture.

Run by hand (not in the test suite) in a venv with torch, transformers, diffusers and optimum-onnx
installed from their public sources (none of their code is in this repository), from the
repository root, with about 10 GB of free memory:

    nice -n 15 /path/to/venv/bin/python scripts/export/sd15_real_size.py --out /work/realsize

It writes <out>/diffusers (the PyTorch pipeline, removed unless --keep-diffusers) and
<out>/models/sd15-real-size (the ONNX folder: MODELS_DIR=<out>/models).
"""

import argparse
import os
import shutil
import sys
import time

EXPECTED_PARAMS = {"unet": 859.5, "vae": 83.7, "text_encoder": 123.1}  # millions, SD 1.5's published sizes


def build(root: str):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    # runwayml/stable-diffusion-v1-5 unet/config.json
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
        flip_sin_to_cos=True,
        freq_shift=0,
    )
    # vae/config.json
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )
    # text_encoder/config.json (CLIP ViT-L/14's text tower)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(root, "models/tiny-edit/tokenizer"))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # scheduler/scheduler_config.json
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    for name, model in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name}: {millions:.1f}M parameters (SD 1.5: {EXPECTED_PARAMS[name]}M)", flush=True)
        if abs(millions - EXPECTED_PARAMS[name]) > 0.1:
            sys.exit(f"{name} is not SD 1.5's size")
    return StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/work/realsize", help="work folder (outside the repository: the export is ~4 GB)")
    parser.add_argument("--name", default="sd15-real-size", help="the model folder's name (its model id)")
    parser.add_argument("--keep-diffusers", action="store_true", help="keep the saved PyTorch pipeline")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="let optimum compare the exports with PyTorch (minutes per component at this size; off by default)",
    )
    a = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(root, "scripts", "parity"))
    from tiny_pipelines import patch_optimum_for_transformers_5

    import torch
    from optimum.exporters.onnx import main_export

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    patch_optimum_for_transformers_5()
    source = os.path.join(a.out, "diffusers")
    target = os.path.join(a.out, "models", a.name)
    started = time.time()
    pipe = build(root)
    pipe.save_pretrained(source)
    del pipe
    print(f"saved the PyTorch pipeline in {time.time() - started:.0f} s", flush=True)
    if os.path.exists(target):
        shutil.rmtree(target)
    main_export(model_name_or_path=source, output=target, task="image-to-image", device="cpu", do_validation=a.validate)
    print(f"exported {target} in {time.time() - started:.0f} s", flush=True)
    if not a.keep_diffusers:
        shutil.rmtree(source)
    for dirpath, _, files in sorted(os.walk(target)):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            print(f"  {os.path.relpath(path, target)}  {os.path.getsize(path) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
