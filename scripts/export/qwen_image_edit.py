"""Export Qwen-Image-Edit (QwenImageEditPipeline, QwenImageEditPlusPipeline) to the project's ONNX layout.

The layout is defined in docs/models.md, "Qwen-Image-Edit: the ONNX layout". Run by hand in a venv with
torch, transformers (5.x), diffusers, onnx and onnxruntime (installed from their sources; none of their code is
in this repository):

    python scripts/export/qwen_image_edit.py --model DIFFUSERS_FOLDER --out OUT [--dtype fp16]
    python scripts/export/qwen_image_edit.py --tiny [--edit-plus] [--zero-cond-t] --save-diffusers DIR --out OUT

`--tiny` builds diffusers' own tiny test components (tests/pipelines/qwenimage/test_qwenimage_edit{,_plus}.py,
seeded random weights) with the real Qwen-Image-Edit processor files from test/fixtures/qwen-image-edit, saves that
diffusers folder (so diffusers' pipeline can load it) and exports it.

Every request-dependent quantity is a graph input, so one graph serves every size, prompt length, batch and number of
condition images:
- text_encoder: input_ids, attention_mask, position_ids (the M-RoPE positions, [3, batch, sequence], computed by the
  caller), pixel_values, image_grid_thw. The vision tower's patch positions, window partition and per-image attention
  segments are computed inside the graph from image_grid_thw with vectorised tensor ops (no Python loop is traced):
  windowed and per-image attention are block masks over the processor's patch order, which gives the same result as
  transformers' window permutation + per-segment attention.
- transformer: RoPE tables as inputs (img_rope_cos/sin, txt_rope_cos/sin), modulate_index for zero_cond_t.
- vae_encoder / vae_decoder: one frame, the frame axis added and removed inside.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "test" / "fixtures" / "qwen-image-edit"
PROCESSOR_FILES = FIXTURES / "Qwen-Image-Edit" / "processor"
OPSET = 18


# ----------------------------------------------------------------------------------------------------------------
# tiny components (diffusers' own test configs, SPEC §12)
# ----------------------------------------------------------------------------------------------------------------


def tiny_components(zero_cond_t: bool = False) -> dict:
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    extra = {"zero_cond_t": True} if zero_cond_t else {}
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
        **extra,
    )
    torch.manual_seed(0)
    z_dim = 4
    vae = AutoencoderKLQwenImage(
        base_dim=z_dim * 6,
        z_dim=z_dim,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )
    torch.manual_seed(0)
    scheduler = FlowMatchEulerDiscreteScheduler()
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16,
        vocab_size=152064,
        vision_end_token_id=151653,
        vision_start_token_id=151652,
        vision_token_id=151654,
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    # diffusers' tests load hf-internal-testing/tiny-random-Qwen2VLForConditionalGeneration (not reachable here);
    # the real Qwen-Image-Edit processor files are used instead (same vocabulary, 151643 + 22 added tokens).
    processor = load_processor(PROCESSOR_FILES)
    tokenizer = processor.tokenizer
    return dict(
        transformer=transformer, vae=vae, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, processor=processor
    )


def load_processor(folder):
    """Qwen2VLProcessor from a processor/ folder. Without torchvision (this venv: no CPU wheel matches its torch),
    transformers' Qwen2VLProcessor.from_pretrained fails on the video processor it never uses here, and the image
    processor falls back to the PIL backend (Qwen2VLImageProcessorPil); this builds the same processor from the
    tokenizer and that image processor, with no video processor."""
    from transformers import Qwen2Tokenizer, Qwen2VLProcessor

    try:
        import torchvision  # noqa: F401

        return Qwen2VLProcessor.from_pretrained(folder)
    except ImportError:
        pass
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def check_argument_for_proper_class(self, name, arg):
            if name == "video_processor" and arg is None:
                return None
            return super().check_argument_for_proper_class(name, arg)

    return ImageOnlyQwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(folder), tokenizer=Qwen2Tokenizer.from_pretrained(folder), video_processor=None
    )


def save_tiny_folder(pipe, folder: Path):
    """save_pretrained, then the real processor files in processor/ and tokenizer/ (model_index names the stock
    transformers classes, as the Hub folders do)."""
    pipe.processor.save_pretrained = lambda *a, **k: None  # its files are copied below
    pipe.save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index["tokenizer"] = ["transformers", "Qwen2Tokenizer"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    for sub in ("processor", "tokenizer"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        shutil.copytree(PROCESSOR_FILES, folder / sub)


def load_pipeline(folder, dtype=torch.float32):
    """diffusers' DiffusionPipeline.from_pretrained, with the processor and tokenizer passed in (load_processor).
    The text encoder is loaded in float32 whatever `dtype` (the transformer and VAE) is."""
    from diffusers import DiffusionPipeline

    processor = load_processor(Path(folder) / "processor")
    dtypes = {"default": dtype, "text_encoder": torch.float32}
    return DiffusionPipeline.from_pretrained(str(folder), torch_dtype=dtypes, processor=processor, tokenizer=processor.tokenizer)


def tiny_pipeline(plus: bool, zero_cond_t: bool):
    from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline

    cls = QwenImageEditPlusPipeline if plus else QwenImageEditPipeline
    return cls(**tiny_components(zero_cond_t))


# ----------------------------------------------------------------------------------------------------------------
# text encoder
# ----------------------------------------------------------------------------------------------------------------


def vision_patch_layout(grid_thw: torch.Tensor, num_patches: int, merge: int):
    """Per patch (in the processor's order): image index, frame, row and column in its image, from image_grid_thw.

    The processor orders each image's patches as (frame, row/merge, column/merge, merge, merge). Vectorised over
    patches (shape [P, images] at most), so tracing keeps it general."""
    t, h, w = grid_thw[:, 0], grid_thw[:, 1], grid_thw[:, 2]
    sizes = t * h * w
    ends = torch.cumsum(sizes, 0)
    starts = ends - sizes
    p = torch.arange(num_patches, dtype=torch.int64, device=grid_thw.device)
    image = (p[:, None] >= ends[None, :]).to(torch.int64).sum(1)
    local = p - starts[image]
    gh, gw = h[image], w[image]
    frame = local // (gh * gw)
    r = local % (gh * gw)
    unit = merge * merge
    block, within = r // unit, r % unit
    blocks_w = gw // merge
    row = (block // blocks_w) * merge + within // merge
    col = (block % blocks_w) * merge + within % merge
    return image, frame, row, col


class TextEncoder(nn.Module):
    """Qwen2_5_VLForConditionalGeneration → hidden_states[-1], with caller-given M-RoPE position_ids."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        cfg = model.config
        self.visual = model.model.visual
        self.lm = model.model.language_model
        vc = cfg.vision_config
        self.merge = vc.spatial_merge_size
        # transformers: vit_merger_window_size = window_size // spatial_merge_size // patch_size merged units
        self.window_patches = (vc.window_size // self.merge // vc.patch_size) * self.merge
        self.fullatt = set(vc.fullatt_block_indexes)
        self.image_token_id = cfg.image_token_id

    def vision(self, pixel_values, grid_thw):
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

        visual = self.visual
        x = visual.patch_embed(pixel_values)
        n = x.shape[0]
        image, frame, row, col = vision_patch_layout(grid_thw, n, self.merge)
        cos, sin = visual.rotary_pos_emb(x, torch.stack([row, col], dim=-1))
        # attention segments: transformers' cu_seqlens are per (image, frame); windows are window_patches² squares of
        # each frame (its window_index permutation + cu_window_seqlens); as masks over the unpermuted order:
        same_frame = (image[:, None] == image[None, :]) & (frame[:, None] == frame[None, :])
        wp = self.window_patches
        same_window = same_frame & ((row // wp)[:, None] == (row // wp)[None, :]) & ((col // wp)[:, None] == (col // wp)[None, :])
        full_mask, window_mask = same_frame[None, None], same_window[None, None]
        for i, blk in enumerate(visual.blocks):
            attn = blk.attn
            hs = blk.norm1(x)
            q, k, v = attn.qkv(hs).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
            q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
            q, k, v = (u.transpose(0, 1).unsqueeze(0) for u in (q, k, v))
            mask = full_mask if i in self.fullatt else window_mask
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)
            o = o.squeeze(0).transpose(0, 1).reshape(n, -1)
            x = x + attn.proj(o)
            x = x + blk.mlp(blk.norm2(x))
        return visual.merger(x)  # [patches / merge², out_hidden], image by image, as the processor's placeholders

    def forward(self, input_ids, attention_mask, position_ids, pixel_values, image_grid_thw):
        embeds = self.lm.embed_tokens(input_ids)
        image_embeds = self.vision(pixel_values, image_grid_thw).to(embeds.dtype)
        # masked_scatter of the image features into the <|image_pad|> positions, as a gather
        is_image = input_ids == self.image_token_id
        flat = is_image.reshape(-1)
        k = torch.cumsum(flat.to(torch.int64), 0) - 1
        k = torch.clamp(k, min=0)
        gathered = image_embeds[k].reshape(embeds.shape)
        embeds = torch.where(is_image[..., None], gathered, embeds)
        b, l = input_ids.shape
        idx = torch.arange(l, device=input_ids.device)
        causal = idx[None, :] <= idx[:, None]
        mask = causal[None, None] & attention_mask.bool()[:, None, None, :]
        cos, sin = self.lm.rotary_emb(embeds, position_ids)
        h = embeds
        for layer in self.lm.layers:
            h = layer(h, attention_mask=mask, position_embeddings=(cos, sin), position_ids=None)
            if isinstance(h, tuple):
                h = h[0]
        return self.lm.norm(h)


def mrope_position_ids(input_ids, attention_mask, image_grid_thw, image_token_id, merge=2):
    """The M-RoPE positions transformers' get_rope_index computes (with mm_token_type_ids: 1 on image tokens).

    Per sample, over its attended tokens in order: a text token takes (p, p, p) and p += 1; a run of image tokens
    of the next image (grid t, h, w; H = h/merge, W = w/merge) takes (p + ti, p + hi, p + wi) for ti < t, hi < H,
    wi < W in row-major order, then p += max(H, W) (t is 1 for images). Padding positions are 0 (as transformers
    5 leaves them; they are never attended)."""
    b, l = input_ids.shape
    out = torch.zeros(3, b, l, dtype=torch.int64)
    grids = iter(image_grid_thw.tolist())
    for i in range(b):
        keep = attention_mask[i].bool()
        ids = input_ids[i][keep].tolist()
        pos, j, cols = 0, 0, []
        while j < len(ids):
            if ids[j] == image_token_id:
                t, gh, gw = next(grids)
                hh, ww = gh // merge, gw // merge
                for ti in range(t):
                    for hi in range(hh):
                        for wi in range(ww):
                            cols.append((pos + ti, pos + hi, pos + wi))
                j += t * hh * ww
                pos += max(hh, ww)
            else:
                cols.append((pos, pos, pos))
                pos += 1
                j += 1
        out[:, i, keep] = torch.tensor(cols, dtype=torch.int64).T
    return out


# ----------------------------------------------------------------------------------------------------------------
# transformer
# ----------------------------------------------------------------------------------------------------------------


def apply_rope(x, cos, sin):
    """x [B, S, H, D]; cos/sin [S, D/2]: adjacent pairs (2k, 2k+1) rotated by angle k, diffusers' complex product
    (x_2k + i x_2k+1)(cos_k + i sin_k). Written with constant 0/1 matrices instead of reshapes so that the traced
    graph keeps S dynamic (each product has one non-zero term: exact)."""
    d = x.shape[-1]
    dup = torch.zeros(d // 2, d, dtype=torch.float32)
    rot = torch.zeros(d, d, dtype=torch.float32)
    for k in range(d // 2):
        dup[k, 2 * k] = dup[k, 2 * k + 1] = 1.0
        rot[2 * k + 1, 2 * k] = -1.0  # (x R)_2k = -x_2k+1
        rot[2 * k, 2 * k + 1] = 1.0  # (x R)_2k+1 = x_2k
    c = (cos.float() @ dup)[None, :, None, :]
    s = (sin.float() @ dup)[None, :, None, :]
    xf = x.float()
    return (xf * c + (xf @ rot) * s).to(x.dtype)


class RopeInputsProcessor:
    """diffusers' QwenDoubleStreamAttnProcessor2_0 with RoPE as real cos/sin tables."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, encoder_hidden_states_mask=None, attention_mask=None, image_rotary_emb=None):
        (img_cos, img_sin), (txt_cos, txt_sin) = image_rotary_emb
        head_dim = attn.inner_dim // attn.heads
        seq_txt = encoder_hidden_states.shape[1]
        mask = None
        if encoder_hidden_states_mask is not None:
            ones = torch.ones_like(hidden_states[..., 0], dtype=torch.bool)
            mask = torch.cat([encoder_hidden_states_mask, ones], dim=1)[:, None, None, :]
        iq, ik, iv = (m(hidden_states).unflatten(-1, (-1, head_dim)) for m in (attn.to_q, attn.to_k, attn.to_v))
        tq, tk, tv = (m(encoder_hidden_states).unflatten(-1, (-1, head_dim)) for m in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        iq, ik = attn.norm_q(iq), attn.norm_k(ik)
        tq, tk = attn.norm_added_q(tq), attn.norm_added_k(tk)
        iq, ik = apply_rope(iq, img_cos, img_sin), apply_rope(ik, img_cos, img_sin)
        tq, tk = apply_rope(tq, txt_cos, txt_sin), apply_rope(tk, txt_cos, txt_sin)
        q = torch.cat([tq, iq], dim=1).transpose(1, 2)
        k = torch.cat([tk, ik], dim=1).transpose(1, 2)
        v = torch.cat([tv, iv], dim=1).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).flatten(2, 3).to(q.dtype)
        img = attn.to_out[0](o[:, seq_txt:].contiguous())
        txt = attn.to_add_out(o[:, :seq_txt].contiguous())
        return img, txt


class Transformer(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.zero_cond_t = bool(getattr(model.config, "zero_cond_t", False))
        for block in model.transformer_blocks:
            block.attn.set_processor(RopeInputsProcessor())

    def forward(self, hidden_states, encoder_hidden_states, encoder_hidden_states_mask, timestep, img_rope_cos, img_rope_sin, txt_rope_cos, txt_rope_sin, modulate_index=None):
        m = self.model
        hidden_states = m.img_in(hidden_states)
        timestep = timestep.to(hidden_states.dtype)
        if self.zero_cond_t:
            timestep = torch.cat([timestep, timestep * 0], dim=0)
        else:
            modulate_index = None
        ehs = m.txt_in(m.txt_norm(encoder_hidden_states))
        mask = encoder_hidden_states_mask.bool()
        temb = m.time_text_embed(timestep, hidden_states)
        rope = ((img_rope_cos, img_rope_sin), (txt_rope_cos, txt_rope_sin))
        for block in m.transformer_blocks:
            ehs, hidden_states = block(
                hidden_states=hidden_states,
                encoder_hidden_states=ehs,
                encoder_hidden_states_mask=mask,
                temb=temb,
                image_rotary_emb=rope,
                modulate_index=modulate_index,
            )
        if self.zero_cond_t:
            temb = temb.chunk(2, dim=0)[0]
        return m.proj_out(m.norm_out(hidden_states, temb))


def rope_tables(transformer_config, img_shapes, text_len):
    """cos/sin tables [tokens, head_dim/2] for one sample's img_shapes [(F, H, W), ...] and a padded text length,
    from diffusers' QwenEmbedRope (the module's own complex tables, so the values are the pipeline's)."""
    from diffusers.models.transformers.transformer_qwenimage import QwenEmbedRope

    rope = QwenEmbedRope(theta=10000, axes_dim=list(transformer_config["axes_dims_rope"]), scale_rope=True)
    vid, txt = rope([list(img_shapes)], max_txt_seq_len=text_len, device=torch.device("cpu"))
    return vid.real.float().contiguous(), vid.imag.float().contiguous(), txt.real.float().contiguous(), txt.imag.float().contiguous()


# ----------------------------------------------------------------------------------------------------------------
# VAE
# ----------------------------------------------------------------------------------------------------------------


class VaeEncoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        h = self.vae._encode(sample.unsqueeze(2))  # [B, 2z, 1, h, w]: mean ‖ logvar
        return h[:, :, 0]


class VaeDecoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        # The decoder upsamples with nn.Upsample(scale_factor=2, mode="nearest-exact"), which the TorchScript ONNX
        # exporter lacks. For an integer scale factor, nearest-exact and nearest pick the same source pixel
        # (floor((i + 0.5) / 2) = floor(i / 2)), so the export uses "nearest".
        for m in vae.modules():
            if isinstance(m, nn.Upsample) and m.mode == "nearest-exact":
                assert all(float(f).is_integer() for f in m.scale_factor), m.scale_factor
                m.mode = "nearest"

    def forward(self, latent_sample):
        return self.vae._decode(latent_sample.unsqueeze(2), return_dict=False)[0][:, :, 0]


# ----------------------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------------------


def onnx_export(module, args, path: Path, input_names, output_names, dynamic_axes):
    """torch.onnx.export (TorchScript tracer), then model.onnx with every external tensor in one model.onnx_data.

    Under the 2 GB protobuf limit the tracer embeds the weights and model.onnx is written as is; above it, it writes
    one file per tensor, which are copied here one by one (streamed, not loaded together) into model.onnx_data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / "_tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(tmp / "model.onnx"),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    size, external = write_one_data_file(tmp / "model.onnx", path)
    shutil.rmtree(tmp)
    print(f"  wrote {path} ({size / 1e6:.1f} MB of weights{', in model.onnx_data' if external else ''})", flush=True)


def write_one_data_file(src_model: Path, path: Path):
    """Copy src_model to path; tensors stored outside it (any files next to it) go, one by one, into
    path's folder/model.onnx_data (4 KiB aligned). Returns (weight bytes, whether model.onnx_data was written)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(src_model), load_external_data=False)
    data = path.parent / "model.onnx_data"
    for f in (path, data):
        if f.exists():
            f.unlink()
    external = [t for t in model.graph.initializer if uses_external_data(t)]
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if external:
        with open(data, "wb") as out:
            for t in external:
                info = ExternalDataInfo(t)
                with open(src_model.parent / info.location, "rb") as f:
                    if info.offset:
                        f.seek(info.offset)
                    blob = f.read(info.length) if info.length else f.read()
                out.write(b"\0" * ((-out.tell()) % 4096))
                offset = out.tell()
                out.write(blob)
                size += len(blob)
                del t.external_data[:]
                for k, v in (("location", data.name), ("offset", str(offset)), ("length", str(len(blob)))):
                    e = t.external_data.add()
                    e.key, e.value = k, v
    onnx.save_model(model, str(path))
    return size, bool(external)


def sample_text_inputs(processor, plus: bool, image_size=64, n_images=1):
    """A real processor call on one prompt with n images (the export's trace example)."""
    from PIL import Image

    imgs = [Image.new("RGB", (image_size, image_size), (40 * i, 90, 160)) for i in range(n_images)]
    pic = "".join(f"Picture {i + 1}: <|vision_start|><|image_pad|><|vision_end|>" for i in range(n_images))
    text = f"<|im_start|>user\n{pic if plus else '<|vision_start|><|image_pad|><|vision_end|>'}a cat<|im_end|>\n"
    return processor(text=[text], images=imgs, padding=True, return_tensors="pt")


def export_text_encoder(te, processor, out: Path, plus: bool):
    te = te.float().eval()
    wrapper = TextEncoder(te).eval()
    inp = sample_text_inputs(processor, plus, n_images=2 if plus else 1)
    pos = mrope_position_ids(inp["input_ids"], inp["attention_mask"], inp["image_grid_thw"], te.config.image_token_id)
    args = (inp["input_ids"], inp["attention_mask"], pos, inp["pixel_values"].float(), inp["image_grid_thw"])
    onnx_export(
        wrapper,
        args,
        out / "text_encoder" / "model.onnx",
        ["input_ids", "attention_mask", "position_ids", "pixel_values", "image_grid_thw"],
        ["last_hidden_state"],
        {
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "position_ids": {1: "batch", 2: "sequence"},
            "pixel_values": {0: "patches"},
            "image_grid_thw": {0: "images"},
            "last_hidden_state": {0: "batch", 1: "sequence"},
        },
    )
    te.config.save_pretrained(out / "text_encoder")


def export_transformer(tr, out: Path, dtype):
    tr = tr.to(dtype).eval()
    wrapper = Transformer(tr).eval()
    cfg = tr.config
    b, text = 1, 7
    shapes = [(1, 4, 4), (1, 4, 6)]
    s_img = sum(f * h * w for f, h, w in shapes)
    ic, isn, tc, ts = rope_tables(cfg, shapes, text)
    mask = torch.ones(b, text, dtype=torch.int64)
    mask[:, -2:] = 0
    args = [
        torch.randn(b, s_img, cfg.in_channels, dtype=dtype),
        torch.randn(b, text, cfg.joint_attention_dim, dtype=dtype),
        mask,
        torch.full((b,), 0.5, dtype=dtype),
        ic,
        isn,
        tc,
        ts,
    ]
    names = ["hidden_states", "encoder_hidden_states", "encoder_hidden_states_mask", "timestep", "img_rope_cos", "img_rope_sin", "txt_rope_cos", "txt_rope_sin"]
    axes = {
        "hidden_states": {0: "batch", 1: "image_tokens"},
        "encoder_hidden_states": {0: "batch", 1: "text_tokens"},
        "encoder_hidden_states_mask": {0: "batch", 1: "text_tokens"},
        "timestep": {0: "batch"},
        "img_rope_cos": {0: "image_tokens"},
        "img_rope_sin": {0: "image_tokens"},
        "txt_rope_cos": {0: "text_tokens"},
        "txt_rope_sin": {0: "text_tokens"},
        "out_hidden_states": {0: "batch", 1: "image_tokens"},
    }
    if wrapper.zero_cond_t:
        mi = torch.zeros(b, s_img, dtype=torch.int64)
        mi[:, shapes[0][1] * shapes[0][2] :] = 1
        args.append(mi)
        names.append("modulate_index")
        axes["modulate_index"] = {0: "batch", 1: "image_tokens"}
    onnx_export(wrapper, tuple(args), out / "transformer" / "model.onnx", names, ["out_hidden_states"], axes)
    tr.save_config(out / "transformer")


def export_vae(vae, out: Path, dtype):
    vae = vae.to(dtype).eval()
    z = vae.config.z_dim
    f = 2 ** len(vae.temperal_downsample)
    onnx_export(
        VaeEncoder(vae).eval(),
        (torch.rand(1, 3, 8 * f, 6 * f, dtype=dtype) * 2 - 1,),
        out / "vae_encoder" / "model.onnx",
        ["sample"],
        ["latent_parameters"],
        {"sample": {0: "batch", 2: "height", 3: "width"}, "latent_parameters": {0: "batch", 2: "latent_height", 3: "latent_width"}},
    )
    onnx_export(
        VaeDecoder(vae).eval(),
        (torch.randn(1, z, 8, 6, dtype=dtype),),
        out / "vae_decoder" / "model.onnx",
        ["latent_sample"],
        ["sample"],
        {"latent_sample": {0: "batch", 2: "latent_height", 3: "latent_width"}, "sample": {0: "batch", 2: "height", 3: "width"}},
    )
    vae.save_config(out / "vae_encoder")
    vae.save_config(out / "vae_decoder")


def copy_folder_files(src: Path, out: Path):
    shutil.copy(src / "model_index.json", out / "model_index.json")
    for sub in ("scheduler", "processor"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        shutil.copytree(src / sub, out / sub)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a diffusers folder (Qwen/Qwen-Image-Edit, -2509, -2511 or a merged copy)")
    ap.add_argument("--tiny", action="store_true", help="build diffusers' tiny test components instead of --model")
    ap.add_argument("--edit-plus", action="store_true", help="--tiny: QwenImageEditPlusPipeline (2509 layout)")
    ap.add_argument("--zero-cond-t", action="store_true", help="--tiny: Plus with zero_cond_t (2511 layout; implies --edit-plus)")
    ap.add_argument("--save-diffusers", help="--tiny: where to save the diffusers folder (required with --tiny)")
    ap.add_argument("--out", required=True, help="the ONNX folder to write")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="transformer and VAE dtype (text encoder stays fp32)")
    ap.add_argument("--only", default="text_encoder,transformer,vae", help="comma-separated parts to export")
    a = ap.parse_args(argv)
    dtype = torch.float16 if a.dtype == "fp16" else torch.float32
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    if a.tiny:
        if not a.save_diffusers:
            ap.error("--tiny needs --save-diffusers DIR")
        plus = a.edit_plus or a.zero_cond_t
        pipe = tiny_pipeline(plus, a.zero_cond_t)
        save_tiny_folder(pipe, Path(a.save_diffusers))
        print(f"saved the tiny diffusers folder {a.save_diffusers} ({type(pipe).__name__}, zero_cond_t={a.zero_cond_t})", flush=True)
        src = Path(a.save_diffusers)
    else:
        if not a.model:
            ap.error("--model or --tiny")
        src = Path(a.model)
    pipe = load_pipeline(src, dtype)
    plus = type(pipe).__name__ == "QwenImageEditPlusPipeline"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = set(a.only.split(","))
    print(f"exporting {src} ({type(pipe).__name__}) to {out}, transformer/VAE {a.dtype}", flush=True)
    if "text_encoder" in parts:
        export_text_encoder(pipe.text_encoder, pipe.processor, out, plus)
    if "transformer" in parts:
        export_transformer(pipe.transformer, out, dtype)
    if "vae" in parts:
        export_vae(pipe.vae, out, dtype)
    copy_folder_files(src, out)
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
