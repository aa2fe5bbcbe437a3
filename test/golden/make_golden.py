"""Regenerates test/golden/ (see its README): Hugging Face's own forward on tiny DINOv3 and DINOv2
checkpoints with seeded random weights.

    .venv/bin/python test/golden/make_golden.py
"""
import hashlib
import json
import math
import os
import sys

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_grad_enabled(False)
transformers.utils.logging.disable_progress_bar()

# The fields Hugging Face writes for these sizes (config classes check float fields strictly, so
# 1.0 stays 1.0). tiny's config and preprocessor config are also what `dinofeat test-model` writes.
DINOV3_TINY = {
    "architectures": ["DINOv3ViTModel"],
    "attention_dropout": 0.0,
    "drop_path_rate": 0.0,
    "hidden_act": "gelu",
    "hidden_size": 64,
    "image_size": 224,
    "initializer_range": 0.02,
    "intermediate_size": 256,
    "key_bias": False,
    "layer_norm_eps": 1e-05,
    "layerscale_value": 1.0,
    "mlp_bias": True,
    "model_type": "dinov3_vit",
    "num_attention_heads": 4,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "num_register_tokens": 4,
    "patch_size": 16,
    "pos_embed_jitter": None,
    "pos_embed_rescale": 2.0,
    "pos_embed_shift": None,
    "proj_bias": True,
    "query_bias": True,
    "rope_theta": 100.0,
    "torch_dtype": "float32",
    "use_gated_mlp": False,
    "value_bias": True,
}
DINOV2_TINY = {
    "architectures": ["Dinov2Model"],
    "attention_probs_dropout_prob": 0.0,
    "drop_path_rate": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 64,
    "image_size": 518,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-06,
    "layerscale_value": 1.0,
    "mlp_ratio": 4,
    "model_type": "dinov2",
    "num_attention_heads": 4,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 14,
    "qkv_bias": True,
    "torch_dtype": "float32",
    "use_swiglu_ffn": False,
}
DINOV3_PREPROCESSOR = {
    "image_processor_type": "DINOv3ViTImageProcessorFast",
    "do_resize": True,
    "size": {"height": 224, "width": 224},
    "resample": 2,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}
DINOV2_PREPROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 256},
}

# name -> (transformers class, config, preprocessor config, seed, inputs it runs on)
MODELS = {
    "tiny": ("DINOv3ViTModel", DINOV3_TINY, DINOV3_PREPROCESSOR, 101, ["batch2_64x48", "gradient_160x256", "randn_224x224"]),
    "tiny_gated": ("DINOv3ViTModel", {**DINOV3_TINY, "hidden_act": "silu", "use_gated_mlp": True}, DINOV3_PREPROCESSOR, 202, ["gradient_160x256"]),
    "tiny_dinov2": ("Dinov2Model", DINOV2_TINY, DINOV2_PREPROCESSOR, 303, ["randn_224x224"]),
    "tiny_dinov2_reg": (
        "Dinov2WithRegistersModel",
        {
            **DINOV2_TINY,
            "apply_layernorm": True,
            "architectures": ["Dinov2WithRegistersModel"],
            "model_type": "dinov2_with_registers",
            "num_register_tokens": 4,
            "out_features": ["stage2"],
            "out_indices": [2],
            "reshape_hidden_states": True,
            "stage_names": ["stem", "stage1", "stage2"],
        },
        DINOV2_PREPROCESSOR,
        404,
        ["randn_224x224"],
    ),
}
# The DINOv3 cases go to index.json, the DINOv2 ones to dinov2.json.
INDEXES = {"index.json": ["tiny", "tiny_gated"], "dinov2.json": ["tiny_dinov2", "tiny_dinov2_reg"]}
DEBUG = ("tiny", "gradient_160x256")

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def make_inputs():
    """pixel_values as the models see them (already normalised): noise, a smooth image, a batch of 2."""
    gen = torch.Generator().manual_seed(7)
    y = torch.linspace(0, 1, 160).view(160, 1).expand(160, 256)
    x = torch.linspace(0, 1, 256).view(1, 256).expand(160, 256)
    rings = 0.5 + 0.5 * torch.sin(2 * math.pi * (3 * x + 2 * y) + 4 * torch.cos(2 * math.pi * x))
    smooth = torch.stack([x, y, rings]).unsqueeze(0)
    return {
        "randn_224x224": ("randn", torch.randn((1, 3, 224, 224), generator=gen)),
        "gradient_160x256": ("gradient", (smooth - MEAN) / STD),
        "batch2_64x48": ("batch2", torch.randn((2, 3, 64, 48), generator=gen) * 1.2 + 0.1),
    }


def exact_in_half(v):
    """Rounds to bfloat16's 8 significant bits and flushes what float16 cannot hold as a normal."""
    v = v.to(torch.bfloat16).to(torch.float32)
    v = torch.where(v.abs() < 2.0**-14, torch.zeros_like(v), v)
    assert torch.equal(v.to(torch.float16).to(torch.float32), v)
    return v


def draw(name, shape, gen):
    """One parameter's random value, by its role in the network."""
    def randn(scale):
        return scale * torch.randn(shape, generator=gen)

    if name.endswith("lambda1"):
        return 0.1 + 0.9 * torch.rand(shape, generator=gen)
    if "norm" in name and name.endswith("weight"):
        return 1 + randn(0.22)
    if any(k in name for k in ("cls_token", "register_tokens", "mask_token")):
        return randn(1.0)
    if "position_embeddings" in name:
        return randn(0.9)
    if name.endswith("bias"):
        # Biases that shift attention logits and MLP inputs are larger, so they visibly matter.
        big = any(k in name for k in ("q_proj", "k_proj", "query", "key", "up_proj", "gate_proj", "fc1"))
        return randn(0.5 if big else 0.15)
    fan_in = math.prod(shape[1:])
    # Query/key projections sharper than at init, so softmax and RoPE errors show.
    gain = 1.75 if any(k in name for k in ("q_proj", "k_proj", "query", "key")) else 1.0
    return randn(gain / math.sqrt(fan_in))


def build(name):
    cls_name, config, _, seed, _ = MODELS[name]
    cls = getattr(transformers, cls_name)
    fields = {k: v for k, v in config.items() if k not in ("architectures", "model_type", "torch_dtype")}
    hf_config = cls.config_class(**fields)
    hf_config._attn_implementation = "eager"
    model = cls(hf_config).eval()
    gen = torch.Generator().manual_seed(seed)
    for pname, p in model.named_parameters():
        p.copy_(exact_in_half(draw(pname, tuple(p.shape), gen)))
    return model


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def write_bin(rel, tensor):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
    with open(path, "wb") as f:
        f.write(data)
    return {"file": rel, "shape": list(tensor.shape), "sha256": hashlib.sha256(data).hexdigest()}


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def compare(a, b):
    """Max abs diff and per-token cosines of two [batch, tokens, hidden] outputs (in float64)."""
    a, b = a.double(), b.double()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return {"max_abs_diff": (a - b).abs().max().item(), "min_cosine": cos.min().item(), "mean_cosine": cos.mean().item()}


def save_checkpoint(name, model):
    _, config, preprocessor, _, _ = MODELS[name]
    rel = f"models/{name}"
    out = os.path.join(HERE, rel)
    os.makedirs(out, exist_ok=True)
    # save_pretrained writes the checkpoint layout (tensor names as published), which can differ
    # from the module names of this transformers version; our own config files replace its.
    model.save_pretrained(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps(config, indent=2) + "\n")
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        f.write(json.dumps(preprocessor, indent=2) + "\n")
    # What the tests read is what transformers loads back: no missing or unexpected tensors.
    cls = type(model)
    loaded, info = cls.from_pretrained(out, output_loading_info=True, attn_implementation="eager")
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"{name}: {problems}"
    saved = model.state_dict()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, saved[k]), f"{name}: {k} changed on reload"
    weights = os.path.join(out, "model.safetensors")
    return loaded.eval(), {
        "dir": rel,
        "safetensors_sha256": sha256_file(weights),
        "safetensors_bytes": os.path.getsize(weights),
        "config": config,
        "family": config["model_type"],
        "hf_class": cls.__name__,
    }


def half_copies_agree(model, x):
    """F16 and BF16 copies hold the same values, so they must give bit-identical outputs."""
    want = model(pixel_values=x).last_hidden_state
    for dtype in (torch.float16, torch.bfloat16):
        copy = type(model)(model.config).eval()
        copy.load_state_dict({k: v.to(dtype).to(torch.float32) for k, v in model.state_dict().items()})
        if not torch.equal(copy(pixel_values=x).last_hidden_state, want):
            return False
    return True


def run_case(name, model, input_name, x, model_entry):
    out = model(pixel_values=x)
    last, pooled = out.last_hidden_state, out.pooler_output
    assert torch.equal(pooled, last[:, 0])
    b, _, h, w = x.shape
    p = model.config.patch_size
    regs = getattr(model.config, "num_register_tokens", 0)
    case = {
        "model": name,
        "input": input_name,
        "height": h,
        "width": w,
        "batch": b,
        "patch_grid": [h // p, w // p],
        "num_register_tokens": regs,
        "num_prefix_tokens": 1 + regs,
        "num_tokens": last.shape[1],
        "last_hidden_state": write_bin(f"expected/{name}/{input_name}.last_hidden_state.bin", last),
        "pooler_output": write_bin(f"expected/{name}/{input_name}.pooler_output.bin", pooled),
        "stats": {"mean": last.double().mean().item(), "std": last.double().std().item(), "max_abs": last.abs().max().item()},
    }
    # How far float32 itself is from the exact forward: the floor any fp32 port can reach.
    model64 = type(model)(model.config).eval().double()
    model64.load_state_dict(model.state_dict())
    case["float32_vs_float64"] = compare(last, model64(pixel_values=x.double()).last_hidden_state)
    if b > 1:
        singles = torch.cat([model(pixel_values=x[i : i + 1]).last_hidden_state for i in range(b)])
        case["batch_vs_single_runs"] = compare(last, singles)
    if "position_embeddings" in dict(model.embeddings.named_parameters()):
        hp, wp = h // p, w // p
        dim = model.config.hidden_size
        table = model.embeddings.interpolate_pos_encoding(torch.zeros(1, 1 + hp * wp, dim), h, w)
        antialias = name == "tiny_dinov2_reg"
        case["pos_embed_interpolation"] = f"bicubic, align_corners=False, antialias={antialias}, explicit output size (Hp, Wp), float32"
        case["pos_embed"] = write_bin(f"expected/{name}/pos_embed_{hp}x{wp}.bin", table)
    if "f16_copy_gives_identical_outputs" not in model_entry:
        same = half_copies_agree(model, x)
        model_entry["f16_copy_gives_identical_outputs"] = same
        model_entry["bf16_copy_gives_identical_outputs"] = same
        assert same, f"{name}: half-precision copies differ"
    return case


def debug_tables(model, x):
    """Intermediate values for one case, to find where a port first goes wrong."""
    cos, sin = model.rope_embeddings(x)
    out = model(pixel_values=x, output_hidden_states=True)
    files = {"rope_cos": write_bin("expected/tiny/debug/rope_cos.bin", cos), "rope_sin": write_bin("expected/tiny/debug/rope_sin.bin", sin)}
    files["embeddings"] = write_bin("expected/tiny/debug/embeddings.bin", out.hidden_states[0])
    for i, hs in enumerate(out.hidden_states[1:]):
        files[f"layer{i}_output"] = write_bin(f"expected/tiny/debug/layer{i}_output.bin", hs)
    files["note"] = (
        "rope_cos/rope_sin: [Hp*Wp, head_dim], one row per patch, row by row. embeddings: [CLS, registers, patches] "
        "before the first layer. layerN_output: the residual stream after layer N, before the final LayerNorm."
    )
    return {"model": DEBUG[0], "input": DEBUG[1], "files": files}


LAYOUT = {
    "binary": "raw little-endian float32, C order, no header",
    "pixel_values": "[batch, 3, height, width] (NCHW), already normalised",
    "last_hidden_state": "[batch, 1 + num_register_tokens + Hp*Wp, hidden_size]; token 0 = CLS, tokens 1..num_register_tokens = registers, then patches row by row (patch (i, j) at 1 + num_register_tokens + i*Wp + j), all after the final LayerNorm",
    "pooler_output": "[batch, hidden_size] = last_hidden_state[:, 0] (CLS after the final LayerNorm)",
    "patch_grid": "Hp = floor(height / patch_size), Wp = floor(width / patch_size)",
    "pos_embed": "DINOv2 families only: [1, 1 + Hp*Wp, hidden_size], the position table Hugging Face adds to [CLS, patches] for that grid (row 0 = CLS, then patches row by row); registers get none",
}


def main():
    inputs = make_inputs()
    input_entries = {n: {**write_bin(f"inputs/{n}.bin", x), "kind": kind} for n, (kind, x) in inputs.items()}
    about = (
        f"Expected outputs of Hugging Face's own forward (transformers {transformers.__version__}, torch {torch.__version__}; "
        "eager attention, float32, eval mode) on seeded random checkpoints in the Hugging Face layout. "
        "Regenerate with test/golden/make_golden.py."
    )
    for index_file, names in INDEXES.items():
        models, cases, used = {}, [], set()
        debug = None
        for name in names:
            built = build(name)
            model, entry = save_checkpoint(name, built)
            models[name] = entry
            for input_name in MODELS[name][4]:
                used.add(input_name)
                cases.append(run_case(name, model, input_name, inputs[input_name][1], entry))
            if name == DEBUG[0]:
                debug = debug_tables(model, inputs[DEBUG[1]][1])
            print(f"{name}: {len(MODELS[name][4])} case(s)", file=sys.stderr)
        index = {"about": about, "layout": LAYOUT, "cases": cases, "inputs": {n: input_entries[n] for n in inputs if n in used}, "models": models}
        if debug:
            index["debug"] = debug
        write_json(os.path.join(HERE, index_file), index)


if __name__ == "__main__":
    main()
