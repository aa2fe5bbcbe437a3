"""Turn a dinofeat feature cache into PyTorch training batches. Needs pyarrow, numpy and torch;
not dinofeat.

    python examples/load_cache.py dinofeat-cache [--batch-size 8]

Two ways to batch images whose patch grids differ in size:

- by bucket: every batch holds rows of one bucket (one grid), so patches stack to
  [B, grid_h, grid_w, hidden] with no padding. This is what a trainer that batches images by
  aspect-ratio bucket wants: the bucket of the latents is the bucket of the features.
- padded: any rows together; each row's context is [CLS, patch_1 .. patch_(grid_h*grid_w)]
  (patches row-major), padded with zeros to the longest in the batch, plus a boolean mask that is
  True on real tokens, for a DiT that cross-attends to the DINO features.

A cache made with a model converted with `dinofeat convert --layers 4,8` also holds each of those
blocks' features (layer4_cls, layer4_patches, ...): item["layers"][4] = {"cls", "patches"}, shaped
as item["cls"] and item["patches"], and stack_bucket stacks them the same way.

A cache made with `dinofeat extract --flip` also holds each image's horizontally flipped copy:
`cache.get(i, flipped=True)` returns it, and `FeatureCache(dir, random_flip=True)` picks an
orientation at random per item, saying which in item["flipped"], so the trainer flips its latent
to match. "crop" is always the region of the upright original the features cover (the flipped copy
covers the crop box mirrored, x = width - crop_x - crop_w, seen in a mirror; in a cache made with
--crops it covers the trainer's box itself, seen in a mirror, as a trainer flips the crop it encodes).

In code:

    cache = FeatureCache("dinofeat-cache")
    by_bucket = DataLoader(cache, batch_sampler=BucketBatchSampler(cache, batch_size=8), collate_fn=stack_bucket)
    padded = DataLoader(cache, batch_size=8, shuffle=True, collate_fn=pad_context)

Parquet shards are read into memory; Arrow shards (extract --format arrow) are memory-mapped, so a
cache larger than RAM costs only the pages a batch touches.
"""
import argparse
import json
import os
import random
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def read_shard(path):
    if path.endswith(".parquet"):
        return pq.read_table(path)
    return pa.ipc.open_stream(pa.memory_map(path)).read_all()


class FeatureCache(Dataset):
    """Every row of a cache; item i is a dict of tensors (float32, whatever the stored dtype).

    random_flip: each item is the upright or the flipped image's features at random (a cache made
    with --flip); item["flipped"] says which.
    """

    def __init__(self, cache_dir, random_flip=False, seed=0):
        shard_dir = os.path.join(cache_dir, "shards")
        # Finished shards only: one being written has a .tmp suffix until it is complete.
        paths = sorted(os.path.join(shard_dir, f) for f in os.listdir(shard_dir) if f.endswith((".parquet", ".arrow")))
        if not paths:
            raise FileNotFoundError(f"no shards in {shard_dir}: run dinofeat extract first")
        tables = [read_shard(p) for p in paths]
        meta = {k.decode(): v.decode() for k, v in tables[0].schema.metadata.items()}
        for path, table in zip(paths, tables):
            if table.schema.metadata[b"dinofeat.fingerprint"].decode() != meta["dinofeat.fingerprint"]:
                raise ValueError(f"{path} was made with other settings than {paths[0]}")
        self.table = pa.concat_tables(tables)
        self.dtype = np.dtype(meta["dinofeat.dtype"])  # 'float16' or 'float32'
        self.hidden = int(meta["dinofeat.hidden_size"])
        self.registers_kept = meta["dinofeat.registers_kept"] == "true"
        self.flip_kept = meta.get("dinofeat.flip") == "true"
        # With --crops the flipped copy is of the trainer's box itself, not of the box mirrored.
        self.boxes_fixed = "crops" in json.loads(meta["dinofeat.preprocessing"])
        if random_flip and not self.flip_kept:
            raise ValueError(f"{cache_dir} holds no flipped copies: extract it with --flip to flip at random")
        self.random_flip = random_flip
        self.rng = random.Random(seed)
        self.model = json.loads(meta["dinofeat.model"])
        # Intermediate blocks (1-based) stored beside the last; absent for a model converted without --layers.
        self.layers = self.model.get("layers", [])
        self.preprocessing = json.loads(meta["dinofeat.preprocessing"])
        self.keys = self.table.column("key").to_pylist()
        self.grids = list(zip(self.table.column("grid_h").to_pylist(), self.table.column("grid_w").to_pylist()))

    def __len__(self):
        return self.table.num_rows

    def _value(self, column, i):
        return self.table.column(column)[i].as_py()

    def _tensor(self, column, i, shape):
        raw = self._value(column, i)
        return torch.from_numpy(np.frombuffer(raw, dtype=self.dtype).reshape(shape).astype(np.float32))

    def __getitem__(self, i):
        return self.get(i, flipped=self.random_flip and self.rng.random() < 0.5)

    def get(self, i, flipped=False):
        """Row i's features of the upright image, or of the horizontally flipped one."""
        # The plain columns hold the orientation the `flip` column names (upright unless a
        # per-image plan flipped it); the *_flip columns hold the other one.
        stored = self.flip_kept and self._value("flip", i)
        other = "" if flipped == stored else "_flip"
        if other and not self.flip_kept:
            raise ValueError("this cache holds no flipped copies: extract it with --flip")
        grid_h, grid_w = self.grids[i]
        x, y, w, h = (self._value(c, i) for c in ("crop_x", "crop_y", "crop_w", "crop_h"))
        if other and not self.boxes_fixed:
            x = self._value("width", i) - x - w
        item = {
            "key": self.keys[i],
            "flipped": flipped,
            "cls": torch.tensor(self._value("cls" + other, i), dtype=torch.float32),
            "patches": self._tensor("patches" + other, i, (grid_h, grid_w, self.hidden)),
            "grid": (grid_h, grid_w),
            "bucket": (self._value("bucket_width", i), self._value("bucket_height", i)),
            # Region of the upright original the features cover: x, y, w, h.
            "crop": (x, y, w, h),
        }
        if self.registers_kept:
            item["registers"] = self._tensor("registers" + other, i, (-1, self.hidden))
        if self.layers:
            item["layers"] = {
                k: {
                    "cls": torch.tensor(self._value(f"layer{k}_cls", i), dtype=torch.float32),
                    "patches": self._tensor(f"layer{k}_patches", i, (grid_h, grid_w, self.hidden)),
                }
                for k in self.layers
            }
        return item


class BucketBatchSampler(Sampler):
    """Batches of row indices that share a grid, shuffled within and across buckets each epoch."""

    def __init__(self, cache, batch_size, shuffle=True, drop_last=False, seed=0):
        self.by_grid = defaultdict(list)
        for i, grid in enumerate(cache.grids):
            self.by_grid[grid].append(i)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.rng = random.Random(seed)

    def _batches(self):
        batches = []
        for indices in self.by_grid.values():
            indices = list(indices)
            if self.shuffle:
                self.rng.shuffle(indices)
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            self.rng.shuffle(batches)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self):
        full, rest = zip(*(divmod(len(v), self.batch_size) for v in self.by_grid.values()))
        return sum(full) + (0 if self.drop_last else sum(1 for r in rest if r))


def stack_bucket(items):
    """Rows of one grid: cls [B, hidden], patches [B, grid_h, grid_w, hidden]; layers[k] the same per stored block."""
    grids = {item["grid"] for item in items}
    if len(grids) != 1:
        raise ValueError(f"a bucket batch holds one grid, got {sorted(grids)}: use BucketBatchSampler or pad_context")
    batch = {
        "keys": [item["key"] for item in items],
        "flipped": [item["flipped"] for item in items],
        "cls": torch.stack([item["cls"] for item in items]),
        "patches": torch.stack([item["patches"] for item in items]),
    }
    if "registers" in items[0]:
        batch["registers"] = torch.stack([item["registers"] for item in items])
    if "layers" in items[0]:
        batch["layers"] = {
            k: {part: torch.stack([item["layers"][k][part] for item in items]) for part in ("cls", "patches")}
            for k in items[0]["layers"]
        }
    return batch


def pad_context(items):
    """Any rows: context [B, L, hidden] = [CLS, patches row-major, zero padding], L = 1 + the
    largest grid_h*grid_w; mask [B, L] True on real tokens; grids [B, 2] to place patch tokens.

    For torch.nn.MultiheadAttention pass key_padding_mask=~mask; for
    F.scaled_dot_product_attention pass attn_mask=mask[:, None, None, :].
    """
    lengths = [1 + item["patches"].shape[0] * item["patches"].shape[1] for item in items]
    hidden = items[0]["cls"].shape[0]
    context = torch.zeros(len(items), max(lengths), hidden)
    mask = torch.zeros(len(items), max(lengths), dtype=torch.bool)
    for b, (item, n) in enumerate(zip(items, lengths)):
        context[b, 0] = item["cls"]
        context[b, 1:n] = item["patches"].reshape(-1, hidden)
        mask[b, :n] = True
    return {
        "keys": [item["key"] for item in items],
        "flipped": [item["flipped"] for item in items],
        "context": context,
        "mask": mask,
        "grids": torch.tensor([item["grid"] for item in items]),
    }


def main():
    parser = argparse.ArgumentParser(description="Show the training batches a dinofeat cache gives.")
    parser.add_argument("cache", help="cache directory made by dinofeat extract")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    cache = FeatureCache(args.cache)
    buckets = defaultdict(int)
    for grid in cache.grids:
        buckets[grid] += 1
    print(f"{len(cache)} images, {cache.dtype} features of {cache.hidden}, model {cache.model.get('sourceRepo', cache.model['family'])}")
    if cache.layers:
        print("intermediate layers (blocks): " + ", ".join(str(k) for k in cache.layers))
    print("grids (h x w): " + ", ".join(f"{h}x{w}: {n}" for (h, w), n in sorted(buckets.items())))

    for batch in DataLoader(cache, batch_sampler=BucketBatchSampler(cache, args.batch_size), collate_fn=stack_bucket):
        print(f"by bucket: cls {list(batch['cls'].shape)}, patches {list(batch['patches'].shape)}")
        for k, layer in batch.get("layers", {}).items():
            print(f"  layer {k}: cls {list(layer['cls'].shape)}, patches {list(layer['patches'].shape)}")
        break
    for batch in DataLoader(cache, batch_size=args.batch_size, shuffle=True, collate_fn=pad_context):
        print(f"padded: context {list(batch['context'].shape)}, mask {list(batch['mask'].shape)}, real tokens per row {batch['mask'].sum(1).tolist()}")
        break


if __name__ == "__main__":
    main()
