"""Qwen-Image-Edit: diffusers (PyTorch) against the ONNX export, component by component, and a reference run.

Run by hand from the repository root, in a venv with torch, transformers 5, diffusers, onnxruntime (none of their
code is in this repository), after scripts/export/qwen_image_edit.py --tiny has written the tiny folders:

    python scripts/parity/qwen_parity.py --diffusers /work/qwen-tiny/diffusers-edit --onnx /work/qwen-tiny/edit \
        --reference /work/qwen-tiny/reference-edit.json [--vectors test/vectors/qwen-image-edit-tiny-edit.json]

1. Components, for the same inputs, at sizes other than the export's trace sizes: the text encoder's last hidden
   state (transformers with mm_token_type_ids, i.e. 3-D M-RoPE, against ONNX Runtime with the same position_ids);
   the transformer (real prompt embeddings and mask, VAE condition tokens, several timesteps, batch 2 with padding,
   several condition images, modulate_index for zero_cond_t); the VAE encoder and decoder (batch 2, odd sizes).
2. The reference case: diffusers' own pipeline (prompt "dance monkey", negative "bad quality", a 32x32 image of
   uniform 8x8 squares, 2 steps, 32x32, fixed initial latents), with its intermediate values recorded.
   transformers >= 5.15 needs `mm_token_type_ids` for Qwen2.5-VL's 3-D M-RoPE and diffusers does not pass it
   (diffusers issue 14194, PR 14189 open): the reference is run with it forwarded (the trained behaviour); the
   pipeline as published (1-D positions) is run as well and its final image reported against it.
3. --slices: diffusers' test_inference inputs (SPEC §12), to compare with the published slices.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "export"))
import qwen_image_edit as qe  # noqa: E402

PROMPT, NEGATIVE = "dance monkey", "bad quality"
SIZE, STEPS, TRUE_CFG = 32, 2, 4.0


def squares_image() -> Image.Image:
    """32x32 RGB, 4x4 uniform 8x8 squares; square (row i, column j), k = 4i + j: (16k, 255 - 16k, 48i + 16j + 32)."""
    a = np.zeros((SIZE, SIZE, 3), np.uint8)
    for i in range(4):
        for j in range(4):
            k = 4 * i + j
            a[8 * i : 8 * i + 8, 8 * j : 8 * j + 8] = (16 * k, 255 - 16 * k, 48 * i + 16 * j + 32)
    return Image.fromarray(a)


def session(path: Path) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 2
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def diff(a, b) -> float:
    a = a.detach().float().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, np.float32)
    b = b.detach().float().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, np.float32)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def scale(a) -> float:
    return float(a.detach().abs().max()) if isinstance(a, torch.Tensor) else float(np.abs(a).max())


def with_mm_token_type_ids(te):
    """Make a Qwen2_5_VLForConditionalGeneration compute 3-D M-RoPE when called as diffusers calls it."""
    orig = te.forward
    image_token_id = te.config.image_token_id

    def forward(*args, **kw):
        if kw.get("input_ids") is not None and kw.get("mm_token_type_ids") is None and kw.get("image_grid_thw") is not None:
            kw["mm_token_type_ids"] = (kw["input_ids"] == image_token_id).long()
        return orig(*args, **kw)

    te.forward = forward
    return orig


# ----------------------------------------------------------------------------------------------------------------
# 1. components
# ----------------------------------------------------------------------------------------------------------------


def text_cases(plus: bool):
    """(texts, images): batch, prompt lengths, image counts and grids other than the export's trace example."""
    rng = np.random.default_rng(1)
    img = lambda w, h: Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))  # noqa: E731
    edit = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n<|im_start|>assistant\n"
    pic = lambda n: "".join(f"Picture {i + 1}: <|vision_start|><|image_pad|><|vision_end|>" for i in range(n))  # noqa: E731
    plus_t = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
    cases = [
        ("1 image 300x200 (windows)", [edit.format("make it blue")], [img(300, 200)]),
        ("batch 2, padded", [edit.format("a"), edit.format("a much longer instruction, with commas and more words")], [img(120, 90), img(90, 120)]),
        ("3 images 3 sizes", [plus_t.format(pic(3) + "combine them")], [img(392, 392), img(448, 320), img(150, 330)]),
        ("edit 1024x1024 (the pipeline's size)", [edit.format(PROMPT)], [squares_image().resize((1024, 1024))]),
    ]
    return cases


def check_text_encoder(pipe, onnx_dir: Path, report: dict):
    te, proc = pipe.text_encoder, pipe.processor
    sess = session(onnx_dir / "text_encoder" / "model.onnx")
    image_token_id = te.config.image_token_id
    rows = []
    for name, texts, images in text_cases(False):
        inp = proc(text=texts, images=images, padding=True, return_tensors="pt")
        mm = (inp["input_ids"] == image_token_id).long()
        pos = qe.mrope_position_ids(inp["input_ids"], inp["attention_mask"], inp["image_grid_thw"], image_token_id)
        t0 = time.time()
        with torch.no_grad():
            ref = te(
                input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], pixel_values=inp["pixel_values"],
                image_grid_thw=inp["image_grid_thw"], mm_token_type_ids=mm, output_hidden_states=True,
            ).hidden_states[-1]
            ref1d = te(
                input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], pixel_values=inp["pixel_values"],
                image_grid_thw=inp["image_grid_thw"], output_hidden_states=True,
            ).hidden_states[-1]
            hf_pos, _ = te.model.get_rope_index(inp["input_ids"], mm, inp["image_grid_thw"], attention_mask=inp["attention_mask"])
        t1 = time.time()
        (out,) = sess.run(None, {
            "input_ids": inp["input_ids"].numpy(), "attention_mask": inp["attention_mask"].numpy(), "position_ids": pos.numpy(),
            "pixel_values": inp["pixel_values"].float().numpy(), "image_grid_thw": inp["image_grid_thw"].numpy(),
        })
        t2 = time.time()
        keep = inp["attention_mask"].bool().numpy()
        row = dict(
            case=name, input_ids=list(inp["input_ids"].shape), grids=inp["image_grid_thw"].tolist(), patches=int(inp["pixel_values"].shape[0]),
            position_ids_equal_get_rope_index=bool(torch.equal(pos, hf_pos)),
            max_abs_diff=float(np.abs(out[keep] - ref.numpy()[keep]).max()), scale=scale(ref),
            one_d_positions_vs_mrope=float((ref1d - ref)[inp["attention_mask"].bool()].abs().max()),
            seconds_torch=round(t1 - t0, 2), seconds_ort=round(t2 - t1, 2),
        )
        print("  text_encoder", row, flush=True)
        rows.append(row)
    report["text_encoder"] = rows


def pack(x):
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def check_transformer(pipe, onnx_dir: Path, report: dict, zero_cond_t: bool):
    tr, vae = pipe.transformer, pipe.vae
    sess = session(onnx_dir / "transformer" / "model.onnx")
    f = pipe.vae_scale_factor
    z = vae.config.z_dim
    rng = np.random.default_rng(2)
    rows = []
    # real prompt embeddings (3-D M-RoPE text encoder), two prompts of different lengths → padded mask
    with torch.no_grad():
        cond = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 64, 48)).astype(np.float32))
        rows_ = [pipe._get_qwen_prompt_embeds([p], image=squares_image())[0][0] for p in (PROMPT, "a much longer instruction for the second row")]
    n = max(r.shape[0] for r in rows_)
    embeds = torch.stack([torch.cat([r, r.new_zeros(n - r.shape[0], r.shape[1])]) for r in rows_])
    mask = torch.stack([torch.cat([torch.ones(r.shape[0], dtype=torch.long), torch.zeros(n - r.shape[0], dtype=torch.long)]) for r in rows_])
    cases = [
        ("batch 2 padded, 1 condition 64x48 (16x12 latent), out 32x40", 2, (32, 40), [(64, 48)]),
        ("batch 1, 2 conditions 64x48 + 32x64, out 48x32", 1, (48, 32), [(64, 48), (32, 64)]),
    ]
    for name, b, (oh, ow), conds in cases:
        e, m = embeds[:b], mask[:b]
        if b == 1:
            e, m = e[:, : int(m[0].sum())], m[:, : int(m[0].sum())]
        latents = torch.from_numpy(rng.standard_normal((b, (oh // f // 2) * (ow // f // 2), tr.config.in_channels)).astype(np.float32))
        cond_tokens, shapes = [], [(1, oh // f // 2, ow // f // 2)]
        for ch, cw in conds:
            img = torch.from_numpy(rng.uniform(-1, 1, (1, 3, ch, cw)).astype(np.float32))
            with torch.no_grad():
                lat = vae.encode(img.unsqueeze(2)).latent_dist.mode()[:, :, 0]
            cond_tokens.append(pack(lat).repeat(b, 1, 1))
            shapes.append((1, ch // f // 2, cw // f // 2))
        x = torch.cat([latents, *cond_tokens], dim=1)
        ic, isn, tc, ts = qe.rope_tables(tr.config, shapes, e.shape[1])
        for sigma in (1.0, 0.6, 0.02):
            t = torch.full((b,), sigma)
            with torch.no_grad():
                ref = tr(hidden_states=x, encoder_hidden_states=e, encoder_hidden_states_mask=m, timestep=t, img_shapes=[shapes] * b, return_dict=False)[0]
            feeds = {
                "hidden_states": x.numpy(), "encoder_hidden_states": e.numpy(), "encoder_hidden_states_mask": m.long().numpy(),
                "timestep": t.numpy(), "img_rope_cos": ic.numpy(), "img_rope_sin": isn.numpy(), "txt_rope_cos": tc.numpy(), "txt_rope_sin": ts.numpy(),
            }
            if zero_cond_t:
                mi = np.zeros((b, x.shape[1]), np.int64)
                mi[:, latents.shape[1] :] = 1
                feeds["modulate_index"] = mi
            (out,) = sess.run(None, feeds)
            row = dict(case=name, sigma=sigma, tokens=list(x.shape), text=list(e.shape), max_abs_diff=diff(out, ref), scale=scale(ref))
            print("  transformer", row, flush=True)
            rows.append(row)
    report["transformer"] = rows


def check_vae(pipe, onnx_dir: Path, report: dict):
    vae = pipe.vae
    enc, dec = session(onnx_dir / "vae_encoder" / "model.onnx"), session(onnx_dir / "vae_decoder" / "model.onnx")
    rng = np.random.default_rng(3)
    rows = []
    for b, h, w in [(1, 32, 32), (2, 48, 80), (1, 128, 96)]:
        x = torch.from_numpy(rng.uniform(-1, 1, (b, 3, h, w)).astype(np.float32))
        with torch.no_grad():
            dist = vae.encode(x.unsqueeze(2)).latent_dist
            ref = torch.cat([dist.mean, dist.logvar], dim=1)[:, :, 0]
        (out,) = enc.run(None, {"sample": x.numpy()})
        # logvar is clamped to [-30, 20] by diffusers' distribution; compare the mean half and the clamped logvar
        zc = vae.config.z_dim
        out_cl = np.concatenate([out[:, :zc], np.clip(out[:, zc:], -30, 20)], axis=1)
        row = dict(part="vae_encoder", shape=[b, 3, h, w], max_abs_diff_mean=diff(out[:, :zc], dist.mean[:, :, 0]), max_abs_diff=diff(out_cl, ref), scale=scale(ref))
        print("  vae", row, flush=True)
        rows.append(row)
        lat = torch.from_numpy(rng.standard_normal((b, zc, h // pipe.vae_scale_factor, w // pipe.vae_scale_factor)).astype(np.float32))
        with torch.no_grad():
            img = vae.decode(lat.unsqueeze(2), return_dict=False)[0][:, :, 0]
        (out,) = dec.run(None, {"latent_sample": lat.numpy()})
        row = dict(part="vae_decoder", shape=list(lat.shape), max_abs_diff=diff(out, img), scale=scale(img))
        print("  vae", row, flush=True)
        rows.append(row)
    report["vae"] = rows


# ----------------------------------------------------------------------------------------------------------------
# 2. the reference run
# ----------------------------------------------------------------------------------------------------------------


def floats(t, digits=8):
    a = t.detach().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float32)
    return [float(f"{v:.{digits}g}") for v in a.reshape(-1).tolist()]


def summary(t) -> dict:
    a = t.detach().float() if isinstance(t, torch.Tensor) else torch.from_numpy(np.asarray(t, np.float32))
    flat = a.reshape(-1)
    return dict(shape=list(a.shape), first=floats(flat[:8]), last=floats(flat[-8:]), sum=float(flat.double().sum()), abs_mean=float(flat.double().abs().mean()))


def run_reference(pipe, plus: bool, images, seed=0):
    """One pipeline call with recording hooks; returns (record, image tensor)."""
    rec = {"text_encoder_calls": [], "encode_prompt": [], "transformer_calls": []}
    te = pipe.text_encoder
    te_forward = te.forward

    def te_hook(*args, **kw):
        rec["text_encoder_calls"].append({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()})
        return te_forward(*args, **kw)

    te.forward = te_hook
    enc_orig = pipe.encode_prompt

    def enc_hook(*args, **kw):
        r = enc_orig(*args, **kw)
        rec["encode_prompt"].append(r)
        return r

    pipe.encode_prompt = enc_hook
    prep_orig = pipe.prepare_latents

    def prep_hook(*args, **kw):
        r = prep_orig(*args, **kw)
        rec["prepare_latents"] = r
        return r

    pipe.prepare_latents = prep_hook
    tr_forward = pipe.transformer.forward

    def tr_hook(*args, **kw):
        out = tr_forward(*args, **kw)
        if len(rec["transformer_calls"]) < 2:
            rec["transformer_calls"].append(dict(kw=kw, out=out[0] if isinstance(out, tuple) else out.sample))
        return out

    pipe.transformer.forward = tr_hook
    f = pipe.vae_scale_factor
    shape = (1, 1, pipe.transformer.config.in_channels // 4, 2 * (SIZE // (f * 2)), 2 * (SIZE // (f * 2)))
    noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
    latents = pipe._pack_latents(noise[:, 0], 1, shape[2], shape[3], shape[4])
    try:
        out = pipe(
            image=images if plus else images[0], prompt=PROMPT, negative_prompt=NEGATIVE, true_cfg_scale=TRUE_CFG,
            height=SIZE, width=SIZE, num_inference_steps=STEPS, latents=latents.clone(), output_type="pt",
        ).images
    finally:
        te.forward, pipe.encode_prompt, pipe.prepare_latents, pipe.transformer.forward = te_forward, enc_orig, prep_orig, tr_forward
    rec["latents"] = latents
    rec["noise_unpacked"] = noise
    return rec, out


def reference(pipe, plus: bool, zero_cond_t: bool, out_json: Path, vectors: Path | None):
    images = [squares_image()] + ([squares_image().transpose(Image.FLIP_LEFT_RIGHT)] if plus else [])
    orig = with_mm_token_type_ids(pipe.text_encoder)
    t0 = time.time()
    rec, image = run_reference(pipe, plus, images)
    print(f"  reference run (3-D M-RoPE) {time.time() - t0:.1f}s", flush=True)
    pipe.text_encoder.forward = orig  # as published: no mm_token_type_ids
    t0 = time.time()
    _, image_1d = run_reference(pipe, plus, images)
    print(f"  reference run (as published, 1-D positions) {time.time() - t0:.1f}s", flush=True)
    image_token_id = pipe.text_encoder.config.image_token_id

    (pe, pm), (ne, nm) = rec["encode_prompt"][0], rec["encode_prompt"][1]
    calls = rec["text_encoder_calls"]
    latents, image_latents = rec["prepare_latents"]
    first = rec["transformer_calls"][0]
    sched = pipe.scheduler
    texts = []
    for c in calls:
        pos = qe.mrope_position_ids(c["input_ids"], c["attention_mask"], c["image_grid_thw"], image_token_id)
        texts.append(dict(
            input_ids=c["input_ids"][0].tolist(), attention_mask_sum=int(c["attention_mask"].sum()), image_grid_thw=c["image_grid_thw"].tolist(),
            position_ids=pos[:, 0].tolist(), pixel_values=summary(c["pixel_values"]),
        ))
    out_json.parent.mkdir(parents=True, exist_ok=True)
    pv = out_json.with_suffix(".pixel_values.f32")
    calls[0]["pixel_values"].float().numpy().astype("<f4").tofile(pv)
    full = dict(
        pipeline=type(pipe).__name__, zero_cond_t=zero_cond_t,
        note=(
            "diffusers pipeline on the tiny folder, text encoder called with mm_token_type_ids (3-D M-RoPE, transformers' "
            "get_rope_index = position_ids below). Processor: the real Qwen-Image-Edit processor files, PIL image backend "
            "(Qwen2VLImageProcessorPil; no torchvision here)."
        ),
        inputs=dict(
            prompt=PROMPT, negative_prompt=NEGATIVE, true_cfg_scale=TRUE_CFG, num_inference_steps=STEPS, height=SIZE, width=SIZE,
            image="32x32 RGB, 4x4 uniform 8x8 squares; square (row i, column j), k = 4i + j: (16k, 255 - 16k, 48i + 16j + 32)"
            + ("; Plus: [that image, its left-right mirror]" if plus else ""),
            image_pixels=[np.asarray(im).reshape(-1).tolist() for im in images],
            latents_note="torch.randn((1, 1, C, h, w), generator=torch.Generator('cpu').manual_seed(0)) packed; passed as latents=",
            latents=floats(rec["latents"]),
        ),
        text_encoder_calls=texts,
        pixel_values_file=pv.name,
        prompt_embeds=dict(shape=list(pe.shape), mask=None if pm is None else pm[0].tolist(), values=floats(pe)),
        negative_prompt_embeds=dict(shape=list(ne.shape), mask=None if nm is None else nm[0].tolist(), values=floats(ne)),
        image_latents=dict(summary(image_latents), values=floats(image_latents)),
        img_shapes=[list(s) for s in first["kw"]["img_shapes"][0]],
        sigmas=floats(sched.sigmas, 9), timesteps=floats(sched.timesteps, 9),
        first_transformer_call=dict(
            timestep=floats(first["kw"]["timestep"], 9), hidden_states=summary(first["kw"]["hidden_states"]),
            out_noise_tokens=floats(first["out"][:, : latents.shape[1]]), out=summary(first["out"]),
        ),
        image=dict(summary(image), values=floats(image), note="output_type pt: [0, 1], [1, 3, 32, 32]"),
        image_as_published_1d_positions=dict(summary(image_1d), max_abs_diff_vs_mrope=diff(image_1d, image)),
    )
    # a small RoPE example with the real model's axes (16, 56, 56): noise 2x2 tokens, one condition 2x4, 3 text tokens
    ex_shapes = [(1, 2, 2), (1, 2, 4)]
    ic, isn, tc, ts = qe.rope_tables({"axes_dims_rope": (16, 56, 56)}, ex_shapes, 3)
    full["rope_example_real_axes"] = dict(
        axes_dims_rope=[16, 56, 56], img_shapes=[list(x) for x in ex_shapes], text_tokens=3,
        img_rope_cos=[floats(r) for r in ic], img_rope_sin=[floats(r) for r in isn], txt_rope_cos=[floats(r) for r in tc], txt_rope_sin=[floats(r) for r in ts],
    )
    out_json.write_text(json.dumps(full))
    print(f"  wrote {out_json} ({out_json.stat().st_size / 1e3:.0f} kB) and {pv.name}", flush=True)
    print(f"  image first/last: {full['image']['first']} ... {full['image']['last']}; 1-D positions differ by {full['image_as_published_1d_positions']['max_abs_diff_vs_mrope']:.3g}", flush=True)
    if vectors:
        small = {k: v for k, v in full.items() if k not in ("image_latents", "prompt_embeds", "negative_prompt_embeds")}
        small["image_latents"] = summary(image_latents)
        for k, e, m in (("prompt_embeds", pe, pm), ("negative_prompt_embeds", ne, nm)):
            small[k] = dict(summary(e), mask=None if m is None else m[0].tolist(), first_token=floats(e[0, 0]), last_token=floats(e[0, -1]))
        small["inputs"] = dict(full["inputs"], image_pixels=None, image_pixels_note="see inputs.image; not repeated here")
        small["pixel_values_file"] = None
        vectors.parent.mkdir(parents=True, exist_ok=True)
        vectors.write_text(json.dumps(small, separators=(",", ":")) + "\n")
        print(f"  wrote {vectors} ({vectors.stat().st_size / 1e3:.0f} kB)", flush=True)
    return full


def slices(pipe, plus: bool) -> dict:
    """diffusers' test_inference call (SPEC §12) on this folder."""
    image = Image.new("RGB", (32, 32))
    out = pipe(
        image=[image, image] if plus else image, prompt=PROMPT, negative_prompt=NEGATIVE, generator=torch.Generator("cpu").manual_seed(0),
        num_inference_steps=2, true_cfg_scale=1.0, height=32, width=32, max_sequence_length=16, output_type="pt",
    ).images[0]
    flat = out.flatten()
    got = floats(torch.cat([flat[:8], flat[-8:]]), 4)
    expected = {
        False: [0.5637, 0.6341, 0.6001, 0.5620, 0.5794, 0.5498, 0.5757, 0.6389, 0.4174, 0.3597, 0.5649, 0.4894, 0.4969, 0.5255, 0.4083, 0.4986],
        True: [0.5640, 0.6339, 0.5997, 0.5607, 0.5799, 0.5496, 0.5760, 0.6393, 0.4172, 0.3595, 0.5655, 0.4896, 0.4971, 0.5255, 0.4088, 0.4987],
    }[plus]
    r = dict(got=got, expected=expected, max_abs_diff=float(np.abs(np.array(got) - np.array(expected)).max()))
    print("  slices", r, flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--diffusers", required=True, help="the tiny diffusers folder")
    ap.add_argument("--onnx", required=True, help="its export")
    ap.add_argument("--reference", help="write the reference JSON here")
    ap.add_argument("--vectors", help="also write a trimmed copy here (for test/vectors)")
    ap.add_argument("--report", help="write the figures as JSON here")
    ap.add_argument("--skip", default="", help="comma-separated: text_encoder,transformer,vae,reference,slices")
    a = ap.parse_args()
    torch.set_num_threads(2)
    skip = set(a.skip.split(",")) - {""}
    pipe = qe.load_pipeline(a.diffusers)
    pipe.set_progress_bar_config(disable=True)
    plus = type(pipe).__name__ == "QwenImageEditPlusPipeline"
    zct = bool(getattr(pipe.transformer.config, "zero_cond_t", False))
    print(f"{a.diffusers}: {type(pipe).__name__}, zero_cond_t={zct}; ONNX {a.onnx}", flush=True)
    onnx_dir = Path(a.onnx)
    report = {"pipeline": type(pipe).__name__, "zero_cond_t": zct}
    if "text_encoder" not in skip:
        check_text_encoder(pipe, onnx_dir, report)
    if "transformer" not in skip:
        orig = with_mm_token_type_ids(pipe.text_encoder)
        check_transformer(pipe, onnx_dir, report, zct)
        pipe.text_encoder.forward = orig
    if "vae" not in skip:
        check_vae(pipe, onnx_dir, report)
    if "slices" not in skip:
        report["slices_as_published"] = slices(pipe, plus)
        orig = with_mm_token_type_ids(pipe.text_encoder)
        report["slices_mrope"] = slices(pipe, plus)
        pipe.text_encoder.forward = orig
    if a.reference and "reference" not in skip:
        full = reference(pipe, plus, zct, Path(a.reference), Path(a.vectors) if a.vectors else None)
        report["reference_image_first_last"] = [full["image"]["first"], full["image"]["last"]]
        report["reference_1d_vs_mrope_image_diff"] = full["image_as_published_1d_positions"]["max_abs_diff_vs_mrope"]
    if a.report:
        Path(a.report).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
