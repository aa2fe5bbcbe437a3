"""Hugging Face's decode and preprocessing, as the independent reference for
test/image-parity.test.ts.

Reads a JSON job on stdin and prints JSON metrics.

  decode:     [{"name", "file", "ours": raw RGB8 path, "width", "height"}]
              PIL: Image.open -> ImageOps.exif_transpose -> (alpha: alpha_composite on white)
              -> convert("RGB"), compared byte for byte with dinofeat's decode.
  preprocess: [{"name", "file", "ours": float32 [3, H, W] path, "rgb": dinofeat's decoded RGB8
              path, "rgb_width", "rgb_height", "crop": [x, y, w, h], "width", "height",
              "family", "mean", "std"}]

DINOv3 (DINOv3ViTImageProcessor): rescale to [0, 1] floats -> torchvision resize(BILINEAR,
antialias=True) -> normalise. torchvision cannot be loaded here (its wheel does not match torch
+cpu), so the resize is written as what torchvision calls for float tensors:
torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False).

DINOv2 (BitImageProcessor, resample BICUBIC, on the 8-bit image): with torchvision (transformers'
default backend) the uint8 image is resized as floats by interpolate(bicubic, antialias=True),
then clamped to 0..255 and rounded; written out the same way ("torchvision"). transformers'
PIL backend (BitImageProcessorPil, what transformers falls back to without torchvision) is run
as it is ("hf_pil").

Each preprocess case is compared twice: from dinofeat's own decoded RGB ("same_rgb": only the
resize and normalise differ) and from PIL's decode ("pil": the whole pipeline). Controls that
must fail: for DINOv3 the resize without antialias, with bicubic, and with its result rounded to
8 bits (what resizing in sharp does); for DINOv2 without the 8-bit rounding.
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from transformers import BitImageProcessorPil


def pil_rgb(path):
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB")


def to_tensor(rgb):
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]


def dinov3(rgb, c, mode="bilinear", antialias=True, round_to_8_bits=False):
    x = to_tensor(rgb).float() * (1 / 255)
    x = F.interpolate(x, size=(c["height"], c["width"]), mode=mode, antialias=antialias, align_corners=False)
    if round_to_8_bits:
        x = (x * 255).clamp(0, 255).round() * (1 / 255)
    return normalise(x, c)


def dinov2_torchvision(rgb, c, round_to_8_bits=True):
    x = F.interpolate(to_tensor(rgb).float(), size=(c["height"], c["width"]), mode="bicubic", antialias=True, align_corners=False)
    if round_to_8_bits:
        x = x.clamp(0, 255).round()
    return normalise(x * (1 / 255), c)


def dinov2_hf_pil(rgb, c):
    processor = BitImageProcessorPil(size={"height": c["height"], "width": c["width"]}, do_center_crop=False, image_mean=c["mean"], image_std=c["std"])
    return processor(Image.fromarray(rgb), return_tensors="np")["pixel_values"][0]


def normalise(x, c):
    mean = torch.tensor(c["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(c["std"]).view(1, 3, 1, 1)
    return ((x - mean) / std)[0].numpy()


def diff(a, b):
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return {"mean": float(d.mean()), "max": float(d.max())}


job = json.load(sys.stdin)
out = {"versions": {"torch": torch.__version__, "pillow": Image.__version__}, "decode": [], "preprocess": []}

for c in job["decode"]:
    ref = np.asarray(pil_rgb(c["file"]))
    ours = np.fromfile(c["ours"], dtype=np.uint8)
    row = {"name": c["name"], "pil_size": [ref.shape[1], ref.shape[0]]}
    if ref.shape == (c["height"], c["width"], 3):
        row.update(diff(ours.reshape(ref.shape), ref))
    out["decode"].append(row)

for c in job["preprocess"]:
    x, y, w, h = c["crop"]
    ours = np.fromfile(c["ours"], dtype=np.float32).reshape(3, c["height"], c["width"])
    our_rgb = np.fromfile(c["rgb"], dtype=np.uint8).reshape(c["rgb_height"], c["rgb_width"], 3)
    pil = np.asarray(pil_rgb(c["file"]).crop((x, y, x + w, y + h)))
    row = {"name": c["name"], "family": c["family"], "decode": diff(our_rgb, pil) if pil.shape == our_rgb.shape else None}
    if c["family"] == "dinov3":
        row["same_rgb"] = diff(ours, dinov3(our_rgb, c))
        row["pil"] = diff(ours, dinov3(pil, c))
        row["controls"] = {
            "no_antialias": diff(ours, dinov3(pil, c, antialias=False)),
            "bicubic": diff(ours, dinov3(pil, c, mode="bicubic")),
            "8_bit_rounding": diff(ours, dinov3(pil, c, round_to_8_bits=True)),
        }
    else:
        ref = dinov2_torchvision(our_rgb, c)
        row["same_rgb"] = diff(ours, ref)
        row["pil"] = diff(ours, dinov2_torchvision(pil, c))
        row["values_off"] = float((np.abs(ours - ref) > 1e-3).mean())
        row["hf_pil"] = diff(ours, dinov2_hf_pil(pil, c))
        row["controls"] = {"no_8_bit_rounding": diff(ours, dinov2_torchvision(pil, c, round_to_8_bits=False))}
    out["preprocess"].append(row)

json.dump(out, sys.stdout)
