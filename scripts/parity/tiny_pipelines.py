"""Tiny random diffusers pipelines, one per family this server runs, for the parity scripts.

Run by hand in a venv with torch, transformers and diffusers (installed from their sources; none
of their code is in this repository). Components are built from seeded random weights; text
encoders are left out: callers pass prompt embeddings of the right shapes (`embeds`).
"""

import torch
from diffusers import (
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxImg2ImgPipeline,
    FluxKontextPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Img2ImgPipeline,
    StableDiffusion3InpaintPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    UNet2DConditionModel,
)

TEXT = 8  # CLIP width (SDXL: two encoders, 8 + 8)
POOLED = 8
SEQ = 4


def vae(latent_channels: int, **kw) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=latent_channels,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
        **kw,
    )


def unet(in_channels: int, sdxl: bool = False) -> UNet2DConditionModel:
    torch.manual_seed(0)
    extra = (
        dict(addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 * 4 + POOLED)
        if sdxl
        else {}
    )
    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * TEXT if sdxl else TEXT,
        norm_num_groups=4,
        attention_head_dim=2,
        **extra,
    )


def sd3_transformer(in_channels: int) -> SD3Transformer2DModel:
    torch.manual_seed(0)
    return SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=in_channels,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=TEXT,
        caption_projection_dim=16,
        pooled_projection_dim=POOLED,
        pos_embed_max_size=16,
    )


def flux_transformer() -> FluxTransformer2DModel:
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT,
        pooled_projection_dim=POOLED,
        axes_dims_rope=[4, 4, 8],
    )


def euler_a() -> EulerAncestralDiscreteScheduler:
    return EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def build(family: str):
    """The family's pipeline (names as `Model.kind`)."""
    sd = dict(text_encoder=None, tokenizer=None, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    xl = dict(text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None)
    flow = dict(text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None)
    sd3 = dict(flow, text_encoder_3=None, tokenizer_3=None)
    if family == "img2img":
        return StableDiffusionImg2ImgPipeline(vae=vae(4), unet=unet(4), scheduler=euler_a(), **sd)
    if family == "instruct-pix2pix":
        return StableDiffusionInstructPix2PixPipeline(vae=vae(4), unet=unet(8), scheduler=euler_a(), **sd)
    if family == "inpaint":
        return StableDiffusionInpaintPipeline(vae=vae(4), unet=unet(9), scheduler=euler_a(), **sd)
    if family == "sdxl-img2img":
        return StableDiffusionXLImg2ImgPipeline(vae=vae(4), unet=unet(4, sdxl=True), scheduler=euler_a(), requires_aesthetics_score=False, **xl)
    if family == "sdxl-inpaint":
        return StableDiffusionXLInpaintPipeline(vae=vae(4), unet=unet(9, sdxl=True), scheduler=euler_a(), requires_aesthetics_score=False, **xl)
    if family == "sd3-img2img":
        return StableDiffusion3Img2ImgPipeline(vae=vae(16, shift_factor=0.06, scaling_factor=1.5), transformer=sd3_transformer(16), scheduler=FlowMatchEulerDiscreteScheduler(), **sd3)
    if family == "sd3-inpaint":
        return StableDiffusion3InpaintPipeline(vae=vae(16, shift_factor=0.06, scaling_factor=1.5), transformer=sd3_transformer(33), scheduler=FlowMatchEulerDiscreteScheduler(), **sd3)
    if family == "flux-img2img":
        return FluxImg2ImgPipeline(vae=vae(4, shift_factor=0.06, scaling_factor=1.5), transformer=flux_transformer(), scheduler=FlowMatchEulerDiscreteScheduler(), **flow)
    if family == "flux-kontext":
        return FluxKontextPipeline(vae=vae(4, shift_factor=0.06, scaling_factor=1.5), transformer=flux_transformer(), scheduler=FlowMatchEulerDiscreteScheduler(), **flow)
    raise ValueError(family)


FAMILIES = ["img2img", "instruct-pix2pix", "inpaint", "sdxl-img2img", "sdxl-inpaint", "sd3-img2img", "sd3-inpaint", "flux-img2img", "flux-kontext"]


def embeds(family: str) -> dict:
    """Prompt embeddings in place of text encoders (guidance off, so no negative ones)."""
    g = torch.Generator("cpu").manual_seed(1)
    if family.startswith("sdxl"):
        return dict(prompt_embeds=torch.randn(1, SEQ, 2 * TEXT, generator=g), pooled_prompt_embeds=torch.randn(1, POOLED, generator=g))
    if family.startswith(("sd3", "flux")):
        return dict(prompt_embeds=torch.randn(1, SEQ, TEXT, generator=g), pooled_prompt_embeds=torch.randn(1, POOLED, generator=g))
    return dict(prompt_embeds=torch.randn(1, SEQ, TEXT, generator=g))
