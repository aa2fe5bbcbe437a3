"""Hugging Face's own forward pass as an independent reference for the converter tests.

Reads a JSON job on stdin: {"out": dir, "models": [{"name", "class", "config", "seed",
"inputs": [[batch, height, width], ...], optional "layers": [k, ...]}]}. For each model it builds
the transformers class from the config with seeded random weights (every component made to
matter: non-trivial layer scales, biases, norms, CLS/register tokens), writes it with
save_pretrained to <out>/<name>/, and for each input writes
<name>/<b>x<h>x<w>.{pixel_values,last_hidden_state,pooler_output}.bin (raw little-endian float32)
and, per listed block k, <b>x<h>x<w>.layer<k>.bin: output_hidden_states[k] (index 0 is the
embeddings, k the output of block k) through the model's final norm. Eager attention, float32, eval mode, as the golden data was made.
"""
import json
import math
import os
import sys

import torch
import transformers

job = json.load(sys.stdin)
torch.set_grad_enabled(False)


def randomise(model, seed):
    gen = torch.Generator().manual_seed(seed)
    # By module type: ConvNeXt's downsampling norms are named by position (downsample_layers.0).
    norm_weights = {f"{m_name}.weight" for m_name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    for name, p in model.named_parameters():
        shape = p.shape
        if name.endswith("lambda1") or name.endswith(".gamma"):  # ViT / ConvNeXt layer scales
            v = torch.rand(shape, generator=gen) * 0.9 + 0.1
        elif name in norm_weights:
            v = 1 + 0.2 * torch.randn(shape, generator=gen)
        elif name.endswith("bias"):
            v = 0.2 * torch.randn(shape, generator=gen)
        elif "cls_token" in name or "register_tokens" in name or "position_embeddings" in name:
            v = torch.randn(shape, generator=gen)
        elif p.dim() >= 2:
            fan_in = math.prod(shape[1:])
            # Sharper attention than at init, so the softmax and RoPE matter.
            gain = 2.0 if any(k in name for k in ("q_proj", "k_proj", "query", "key")) else 1.0
            v = gain * torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        else:
            v = 0.1 * torch.randn(shape, generator=gen)
        p.copy_(v)


# JSON cannot tell 1000.0 from 1000; the config classes check float fields strictly.
FLOAT_FIELDS = {"rope_theta", "layer_norm_eps", "layerscale_value", "pos_embed_rescale", "layer_scale_init_value"}

summary = {}
for spec in job["models"]:
    cls = getattr(transformers, spec["class"])
    fields = {k: float(v) if k in FLOAT_FIELDS else v for k, v in spec["config"].items()}
    config = cls.config_class(**fields)
    config._attn_implementation = "eager"
    model = cls(config).eval()
    randomise(model, spec["seed"])
    out_dir = os.path.join(job["out"], spec["name"])
    model.save_pretrained(out_dir)
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    for b, h, w in spec["inputs"]:
        x = torch.randn((b, 3, h, w), generator=gen)
        layers = spec.get("layers", [])
        res = model(pixel_values=x, output_hidden_states=bool(layers))
        stem = os.path.join(out_dir, f"{b}x{h}x{w}")
        if layers:
            # A ViT's final norm (DINOv3: norm, DINOv2: layernorm); layers are asked of ViTs only.
            final_norm = model.norm if hasattr(model, "norm") else model.layernorm
            for k in layers:
                final_norm(res.hidden_states[k]).numpy().tofile(stem + f".layer{k}.bin")
        x.numpy().tofile(stem + ".pixel_values.bin")
        res.last_hidden_state.numpy().tofile(stem + ".last_hidden_state.bin")
        res.pooler_output.numpy().tofile(stem + ".pooler_output.bin")
        summary[f"{spec['name']}/{b}x{h}x{w}"] = list(res.last_hidden_state.shape)
json.dump(summary, sys.stdout)
