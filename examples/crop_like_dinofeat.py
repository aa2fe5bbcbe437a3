"""Crop and resize images to exactly the region and size a dinofeat cache's features cover, so the
VAE side encodes what DINO saw: latent (i, j) and patch (i, j) then cover the same pixels. Needs
Pillow; not dinofeat.

    dinofeat crops dinofeat-cache > crops.jsonl
    python examples/crop_like_dinofeat.py crops.jsonl IMAGES_DIR OUT_DIR [--resample lanczos]

Each line of crops.jsonl (what `dinofeat crops` writes, and what `extract --crops` reads) gives an
image's key (its path under IMAGES_DIR), the bucket (the trainer's input size) and the crop box in
upright source pixels. Per line this opens the image upright (EXIF orientation applied, as dinofeat
does), flattens transparency on white (dinofeat's --background default), takes the crop box,
resizes it to the bucket with the filter your VAE pipeline uses, mirrors it when the line says
"flip": true, and writes OUT_DIR/<key>.png.

In code:

    for line in read_crops("crops.jsonl"):
        image = crop_like_dinofeat(load_upright(os.path.join(images, line["key"])), line)
"""
import argparse
import json
import os

from PIL import Image, ImageOps

RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def read_crops(path):
    """The lines of a crops file, as dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_upright(path, background=(255, 255, 255)):
    """The image as dinofeat decodes it: EXIF orientation applied, alpha flattened, RGB."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, background + (255,)), rgba)
    return image.convert("RGB")


def crop_like_dinofeat(image, line, resample=Image.LANCZOS):
    """The crop box of `line`, resized to its bucket (then mirrored if the line flips it)."""
    x, y, w, h = line["crop_x"], line["crop_y"], line["crop_w"], line["crop_h"]
    if x + w > image.width or y + h > image.height:
        raise ValueError(f"{line['key']}: crop box {w}x{h}+{x}+{y} is not inside the {image.width}x{image.height} upright image")
    out = image.resize((line["bucket_width"], line["bucket_height"]), resample, box=(x, y, x + w, y + h))
    return ImageOps.mirror(out) if line.get("flip") else out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crops", help="crops.jsonl, as dinofeat crops writes it")
    parser.add_argument("images", help="the folder extract read (keys are paths under it)")
    parser.add_argument("out", help="where the cropped, resized PNGs go")
    parser.add_argument("--resample", choices=sorted(RESAMPLE), default="lanczos")
    args = parser.parse_args()
    for line in read_crops(args.crops):
        target = os.path.join(args.out, line["key"] + ".png")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        crop_like_dinofeat(load_upright(os.path.join(args.images, line["key"])), line, RESAMPLE[args.resample]).save(target)


if __name__ == "__main__":
    main()
