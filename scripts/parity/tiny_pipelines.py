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


# ---- full pipelines (text encoders and tokenizers included) for exporting with optimum-onnx ----

CLIP_TOKENIZER = "models/tiny-edit/tokenizer"  # a CLIP BPE tokenizer, 578 ids
T5_TOKENIZER = "models/tiny-flow-edit/tokenizer_2"  # a T5 Unigram tokenizer, 68 ids
T5_WIDTH = 32


def clip(width: int, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=578,
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=576,
        eos_token_id=577,
        pad_token_id=577,
        projection_dim=POOLED,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def t5():
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    return T5EncoderModel(T5Config(vocab_size=68, d_model=T5_WIDTH, d_ff=64, d_kv=16, num_layers=1, num_heads=2, pad_token_id=0, eos_token_id=1))


def build_full(family: str, root: str = "."):
    """The family's pipeline with text encoders and the repository's tiny tokenizers (root: the repository)."""
    from transformers import CLIPTokenizer, T5Tokenizer

    clip_tok = CLIPTokenizer.from_pretrained(f"{root}/{CLIP_TOKENIZER}")
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    sd = dict(text_encoder=clip(TEXT), tokenizer=clip_tok, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    xl = dict(text_encoder=clip(TEXT), text_encoder_2=clip(TEXT, projection=True), tokenizer=clip_tok, tokenizer_2=clip_tok)
    if family == "img2img":
        return StableDiffusionImg2ImgPipeline(vae=vae(4), unet=unet(4), scheduler=scheduler, **sd)
    if family == "instruct-pix2pix":
        return StableDiffusionInstructPix2PixPipeline(vae=vae(4), unet=unet(8), scheduler=scheduler, **sd)
    if family == "inpaint":
        return StableDiffusionInpaintPipeline(vae=vae(4), unet=unet(9), scheduler=scheduler, **sd)
    if family == "sdxl-img2img":
        return StableDiffusionXLImg2ImgPipeline(vae=vae(4), unet=unet(4, sdxl=True), scheduler=scheduler, requires_aesthetics_score=False, **xl)
    if family == "sdxl-inpaint":
        return StableDiffusionXLInpaintPipeline(vae=vae(4), unet=unet(9, sdxl=True), scheduler=scheduler, requires_aesthetics_score=False, **xl)
    t5_tok = T5Tokenizer.from_pretrained(f"{root}/{T5_TOKENIZER}")
    flow_vae = vae(16, shift_factor=0.06, scaling_factor=1.5)
    if family in ("sd3-img2img", "sd3-inpaint"):
        torch.manual_seed(0)
        transformer = SD3Transformer2DModel(
            sample_size=8, patch_size=1, in_channels=33 if family == "sd3-inpaint" else 16, out_channels=16, num_layers=1, attention_head_dim=8, num_attention_heads=2,
            joint_attention_dim=T5_WIDTH, caption_projection_dim=16, pooled_projection_dim=2 * POOLED, pos_embed_max_size=16,
        )
        cls = StableDiffusion3InpaintPipeline if family == "sd3-inpaint" else StableDiffusion3Img2ImgPipeline
        return cls(
            vae=flow_vae, transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            text_encoder=clip(TEXT, projection=True), text_encoder_2=clip(TEXT, projection=True), text_encoder_3=t5(),
            tokenizer=clip_tok, tokenizer_2=clip_tok, tokenizer_3=t5_tok,
        )
    if family in ("flux-img2img", "flux-kontext"):
        torch.manual_seed(0)
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
            joint_attention_dim=T5_WIDTH, pooled_projection_dim=TEXT, axes_dims_rope=[4, 4, 8],
        )
        cls = FluxKontextPipeline if family == "flux-kontext" else FluxImg2ImgPipeline
        return cls(
            vae=flow_vae, transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            text_encoder=clip(TEXT), text_encoder_2=t5(), tokenizer=clip_tok, tokenizer_2=t5_tok,
        )
    raise ValueError(family)


def patch_optimum_for_transformers_5() -> None:
    """optimum-onnx (for transformers < 4.58) against transformers 5: it swaps in an attention-mask
    function of transformers 4.53's signature while exporting (transformers 5's own sdpa_mask
    without vmap traces as it is)."""
    import functools

    import optimum.exporters.onnx.model_patcher as patcher
    from transformers import masking_utils

    patcher.sdpa_mask_without_vmap = functools.partial(masking_utils.sdpa_mask, use_vmap=False)
    # It also sets SDXL's and SD3's CLIP `text_model.config`, a submodule transformers 5 no longer has.
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    for cls in (CLIPTextModel, CLIPTextModelWithProjection):
        cls.text_model = property(lambda self: self._modules.get("text_model", self))
