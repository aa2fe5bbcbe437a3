"""Hugging Face's preprocessing + forward pass as the independent reference for the rows
`dinofeat extract` stored, for test/extract-parity.test.ts: DINOv3, and DINOv2 (below).

Reads a JSON job on stdin: {"checkpoint": dir, "runs": [{"name", "cache", "images", "crops"?}]}
("crops": key -> [x, y, w, h], the boxes a run's --crops file gave, used instead of the rule). For every
row of every cache (float32 shards) it preprocesses <images>/<key> the way transformers'
DINOv3ViTImageProcessor does, runs transformers' DINOv3ViTModel on it and compares:

  PIL open -> ImageOps.exif_transpose -> (alpha composited on white, dinofeat's --background
  default) -> convert('RGB') -> (cover: centre crop of the bucket's aspect) -> float / 255 ->
  F.interpolate(bilinear, antialias=True, align_corners=False) -> (x - mean) / std

That is what the processor computes: its torchvision backend rescales, then calls
torchvision.transforms.v2.functional.resize(BILINEAR, antialias=True), which for float tensors is
this interpolate call, then normalises. torchvision itself cannot be loaded here (its wheels are
CUDA builds that fail against torch +cpu), so the steps are written out.

Controls show the comparison can fail, each a plausible preprocessing bug: the resized pixels
rounded to 8 bits (what resizing in sharp would do), the source window moved half a source pixel,
a bicubic filter, and (for images with an EXIF orientation) the orientation not applied.

A DINOv2 checkpoint (model_type dinov2*) is compared with both of transformers' BitImageProcessor
backends instead (dinov2_backends): per row, the metrics against each under "backends", and at
the top level those against the torchvision backend, the one dinofeat follows. Prints JSON with
per-row metrics.
"""
import importlib.util
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import transformers
from PIL import Image, ImageOps

job = json.load(sys.stdin)
torch.set_grad_enabled(False)
model = transformers.AutoModel.from_pretrained(job["checkpoint"], attn_implementation="eager").eval()
DINOV2 = model.config.model_type.startswith("dinov2")
with open(os.path.join(job["checkpoint"], "preprocessor_config.json")) as f:
    processor_config = json.load(f)
MEAN = torch.tensor(processor_config["image_mean"]).view(1, 3, 1, 1)
STD = torch.tensor(processor_config["image_std"]).view(1, 3, 1, 1)
SKIP = 1 + getattr(model.config, "num_register_tokens", 0)
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def load_rgb(path, orient=True):
    image = Image.open(path)
    if orient:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB")


def centre_crop(width, height, bucket_width, bucket_height):
    """The centred box of the bucket's aspect ratio spanning the full width or height, its other
    side rounded half up to whole source pixels: x, y, w, h."""
    if width * bucket_height > height * bucket_width:
        w, h = min(width, max(1, (2 * height * bucket_width + bucket_height) // (2 * bucket_height))), height
    else:
        w, h = width, min(height, max(1, (2 * width * bucket_height + bucket_width) // (2 * bucket_width)))
    return (width - w) // 2, (height - h) // 2, w, h


def pixel_values(image, box, height, width, mode="bilinear", round_to_8_bits=False):
    x, y, w, h = box
    crop = image.crop((x, y, x + w, y + h))
    t = torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float() / 255
    t = torch.nn.functional.interpolate(t, size=(height, width), mode=mode, antialias=True, align_corners=False)
    if round_to_8_bits:
        t = (t * 255).clamp(0, 255).round() / 255
    return (t - MEAN) / STD


def bilinear_weights(size_in, size_out, shift):
    """The antialiased bilinear filter as a matrix (out x in), computed the way torch's antialias
    path does (tent of width max(scale, 1) clipped at the edges and normalised, positions in
    float32: the rounding of the sample centres shows at 1e-6), with every sample centre moved by
    `shift` source pixels."""
    f = np.float32
    scale = f(size_in) / f(size_out)
    support = max(scale, f(1))
    weights = np.zeros((size_out, size_in), dtype=np.float32)
    for i in range(size_out):
        centre = scale * (f(i) + f(0.5)) + f(shift)
        lo, hi = max(int(centre - support + f(0.5)), 0), min(int(centre + support + f(0.5)), size_in)
        w = np.clip(f(1) - np.abs((np.arange(lo, hi, dtype=np.float32) - centre + f(0.5)) / support), 0, None)
        weights[i, lo:hi] = w / w.sum()
    return weights.astype(np.float64)


def shifted_pixel_values(image, box, height, width, shift=0.5):
    """The same resize with the source window moved half a source pixel right and down."""
    x, y, w, h = box
    crop = np.asarray(image.crop((x, y, x + w, y + h)), dtype=np.float64) / 255
    rows, cols = bilinear_weights(h, height, shift), bilinear_weights(w, width, shift)
    t = np.einsum("yh,hwc,xw->cyx", rows, crop, cols, optimize=True)
    return (torch.from_numpy(t.astype(np.float32))[None] - MEAN) / STD


def dinov2_backends(image, height, width):
    """pixel_values from both of transformers' DINOv2 (BitImageProcessor) backends, configured as
    dinofeat runs the model: no centre crop, resized straight to the bucket (its defaults resize
    the short side to 256 and crop 224). "pil": BitImageProcessorPil as it is. "torchvision": the
    default backend (use_fast) when torchvision is installed; without it, its steps written out:
    the uint8 image resized as floats by interpolate(bicubic, antialias), clamped to 0..255 and
    rounded, then rescaled and normalised."""
    kwargs = {"do_center_crop": False, "size": {"height": height, "width": width}}
    pil = transformers.BitImageProcessorPil.from_pretrained(job["checkpoint"], **kwargs)
    out = {"pil": torch.from_numpy(pil(image, return_tensors="np")["pixel_values"])}
    if HAS_TORCHVISION:
        fast = transformers.AutoImageProcessor.from_pretrained(job["checkpoint"], use_fast=True, **kwargs)
        out["torchvision"] = fast(image, return_tensors="pt")["pixel_values"]
    else:
        t = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
        t = torch.nn.functional.interpolate(t, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
        out["torchvision"] = (t.clamp(0, 255).round() / 255 - MEAN) / STD
    return out


def tokens(pixels):
    hidden = model(pixel_values=pixels).last_hidden_state[0].numpy()
    return hidden[0], hidden[SKIP:]


def cosine(a, b):
    """In float64: float32 arithmetic alone would put 1 - cos on a 6e-8 grid, the size of what is measured."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def compare(ref, cls, patches):
    ref_cls, ref_patches = ref
    per_patch = cosine(ref_patches, patches)
    return {
        "cls_cos": float(cosine(ref_cls, cls)),
        "patch_cos_mean": float(per_patch.mean()),
        "patch_cos_min": float(per_patch.min()),
        "max_abs": float(max(np.abs(ref_cls - cls).max(), np.abs(ref_patches - patches).max())),
    }


def read_shards(cache):
    shard_dir = os.path.join(cache, "shards")
    for name in sorted(os.listdir(shard_dir)):
        path = os.path.join(shard_dir, name)
        if name.endswith(".parquet"):
            yield pq.read_table(path)
        elif name.endswith(".arrow"):
            yield pa.ipc.open_stream(path).read_all()


rows = []
for run in job["runs"]:
    for table in read_shards(run["cache"]):
        meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        assert meta["dinofeat.dtype"] == "float32", "the parity test compares float32 shards"
        resize = json.loads(meta["dinofeat.preprocessing"])["resize"]
        hidden = int(meta["dinofeat.hidden_size"])
        for r in table.to_pylist():
            path = os.path.join(run["images"], r["key"])
            image = load_rgb(path)
            bw, bh = r["bucket_width"], r["bucket_height"]
            if "crops" in run:
                box = tuple(run["crops"][r["key"]])  # the crop box a trainer's crops file gave (extract --crops)
            else:
                box = (0, 0, image.width, image.height) if resize == "stretch" else centre_crop(image.width, image.height, bw, bh)
            cls = np.asarray(r["cls"], dtype=np.float32)
            patches = np.frombuffer(r["patches"], dtype=np.float32).reshape(-1, hidden)
            row = {
                "run": run["name"], "key": r["key"],
                "size": [image.width, image.height], "stored_size": [r["width"], r["height"]],
                "bucket": [bw, bh], "crop": list(box),
                "stored_crop": [r["crop_x"], r["crop_y"], r["crop_w"], r["crop_h"]],
            }
            if DINOV2:
                assert resize == "stretch", "the DINOv2 processors resize the whole image"
                backends = {name: compare(tokens(px), cls, patches) for name, px in dinov2_backends(image, bh, bw).items()}
                rows.append({**row, **backends["torchvision"], "backends": backends, "controls": {}})
                continue
            row = {
                **row,
                **compare(tokens(pixel_values(image, box, bh, bw)), cls, patches),
                "controls": {
                    "bicubic": compare(tokens(pixel_values(image, box, bh, bw, "bicubic")), cls, patches),
                    "8_bit_rounding": compare(tokens(pixel_values(image, box, bh, bw, round_to_8_bits=True)), cls, patches),
                    "half_pixel_shift": compare(tokens(shifted_pixel_values(image, box, bh, bw)), cls, patches),
                },
            }
            if Image.open(path).getexif().get(0x0112, 1) != 1:
                unrotated = load_rgb(path, orient=False)
                row["controls"]["no_exif_orientation"] = compare(tokens(pixel_values(unrotated, (0, 0, unrotated.width, unrotated.height), bh, bw)), cls, patches)
            rows.append(row)

processor = (f"BitImageProcessor (PIL backend; torchvision backend {'as it is' if HAS_TORCHVISION else 'written out: torchvision is not installed'})"
             if DINOV2 else f"torch {torch.__version__} interpolate(bilinear, antialias)")
json.dump({
    "reference": f"PIL {Image.__version__} + exif_transpose + {processor} + transformers {transformers.__version__} {type(model).__name__}",
    "rows": rows,
}, sys.stdout)
