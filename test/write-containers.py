"""Containers as the tools people use write them, for the container-source tests.

Usage: write-containers.py IMAGES_DIR OUT_DIR. IMAGES_DIR holds 000000000.jpg ... 000000005.jpg
(the same images the tests extract from a folder). Writes under OUT_DIR:

  img2dataset/00000.tar      samples 0-3 in img2dataset's WebDataset layout (.jpg, .json, .txt per
                             sample, members added one by one as webdataset's TarWriter does)
  img2dataset/00001.tar.gz   samples 4-5, a folder added with tarfile.add (directory entries, ./ names)
  hf/train-00000-of-00001.parquet   Hugging Face datasets' to_parquet, Image feature (struct {bytes,
                             path}); datasets 5 leaves image columns uncompressed, the rest snappy
  pa/hub-snappy.parquet      the same table written by pyarrow, all snappy, as older Hub files are
  pa/images-zstd.parquet     pyarrow: binary column jpg and a string column id, zstd, 2 rows a group
  pa/one-group-plain.parquet pyarrow's defaults for a big file (one row group, no page index), snappy,
                             a page per image, plain pages (jpg, id)
  pa/one-group-dict.parquet  the Hub table (struct image column) in one row group, pages v2, no page
                             index: every image in pyarrow's dictionary page
  pa/one-group-fallback.parquet  jpg and id, one row group: the first two images dictionary-encoded,
                             then pyarrow's fallback to plain pages (two images each), as a big image
                             column is written
  bad/cut.tar                00000.tar cut in the middle of sample 2's image
  bad/corrupt.tar.gz         a gzip stream whose first block is damaged (nothing readable)
  bad/bad-crc.tgz            a gzip stream whose checksum at its end is wrong
  bad/not-parquet.parquet    text
  bad/null-image.parquet     a datasets Image table, row 0 only a path (null bytes), row 1 bytes
  bad/links.tar              sample a: its .jpg a symlink; sample b: only a .json
  exts/00000.tar             sample 000 with .png and .jpg members; sample 001 with a .seg.png only
"""
import gzip
import io
import json
import os
import sys
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, Features, Image, Value
from datasets.table import embed_table_storage

images_dir, out = sys.argv[1], sys.argv[2]
names = [f"{k:09d}" for k in range(6)]
data = {n: open(os.path.join(images_dir, f"{n}.jpg"), "rb").read() for n in names}
for d in ("img2dataset", "hf", "pa", "bad", "exts"):
    os.makedirs(os.path.join(out, d), exist_ok=True)


def add_bytes(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 1700000000
    tar.addfile(info, io.BytesIO(payload))


def add_sample(tar, name):
    add_bytes(tar, f"{name}.jpg", data[name])
    add_bytes(tar, f"{name}.json", json.dumps({"key": name, "caption": f"image {name}"}).encode())
    add_bytes(tar, f"{name}.txt", f"image {name}".encode())


first = os.path.join(out, "img2dataset", "00000.tar")
with tarfile.open(first, "w") as tar:
    for n in names[:4]:
        add_sample(tar, n)

staging = os.path.join(out, "staging")
os.makedirs(staging)
for n in names[4:]:
    open(os.path.join(staging, f"{n}.jpg"), "wb").write(data[n])
    open(os.path.join(staging, f"{n}.txt"), "w").write(f"image {n}")
with tarfile.open(os.path.join(out, "img2dataset", "00001.tar.gz"), "w:gz") as tar:
    tar.add(staging, arcname=".")

# As a dataset on the Hub holds its images: the Image feature with the bytes embedded.
ds = Dataset.from_dict(
    {"image": [os.path.join(images_dir, f"{n}.jpg") for n in names], "caption": [f"image {n}" for n in names]},
    features=Features({"image": Image(), "caption": Value("string")}),
)
ds = ds.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
ds.to_parquet(os.path.join(out, "hf", "train-00000-of-00001.parquet"))
pq.write_table(ds.data.table, os.path.join(out, "pa", "hub-snappy.parquet"), compression="snappy")

table = pa.table({"id": [f"img-{n}" for n in names], "jpg": pa.array([data[n] for n in names], pa.binary())})
pq.write_table(table, os.path.join(out, "pa", "images-zstd.parquet"), compression="zstd", row_group_size=2)
pq.write_table(table, os.path.join(out, "pa", "one-group-plain.parquet"), compression="snappy", use_dictionary=False, data_page_size=1, write_batch_size=1)
pq.write_table(ds.data.table, os.path.join(out, "pa", "one-group-dict.parquet"), compression="snappy", data_page_version="2.0", data_page_size=1, write_batch_size=1)
pq.write_table(table, os.path.join(out, "pa", "one-group-fallback.parquet"), compression="snappy", dictionary_pagesize_limit=1, write_batch_size=2, data_page_size=1)

# Cut inside sample 2's image: its header is there, its bytes stop half way.
blob = open(first, "rb").read()
at = blob.index(b"000000002.jpg")
open(os.path.join(out, "bad", "cut.tar"), "wb").write(blob[: at + 512 + len(data["000000002"]) // 2])

# The first deflate block's header says block type 3, which does not exist: nothing can be read.
packed = bytearray(gzip.compress(blob, mtime=0))
packed[10] |= 0x06
open(os.path.join(out, "bad", "corrupt.tar.gz"), "wb").write(bytes(packed))
# Whole data, a wrong CRC in the trailer: found only at the end of the stream.
packed = bytearray(gzip.compress(blob, mtime=0))
packed[-8] ^= 0xFF
open(os.path.join(out, "bad", "bad-crc.tgz"), "wb").write(bytes(packed))

open(os.path.join(out, "bad", "not-parquet.parquet"), "w").write("id,image\n1,cat.jpg\n")

mixed = Dataset.from_dict(
    {"image": [{"bytes": None, "path": "elsewhere/cat.jpg"}, {"bytes": data[names[0]], "path": "dog.jpg"}]},
    features=Features({"image": Image()}),
)
# to_parquet would look for the missing file; pyarrow writes the dataset's table as it is.
pq.write_table(mixed.data.table, os.path.join(out, "bad", "null-image.parquet"))

with tarfile.open(os.path.join(out, "bad", "links.tar"), "w") as tar:
    link = tarfile.TarInfo("a.jpg")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    tar.addfile(link)
    add_bytes(tar, "a.json", b"{}")
    add_bytes(tar, "b.json", b"{}")
    add_bytes(tar, "c.jpg", data[names[1]])

with tarfile.open(os.path.join(out, "exts", "00000.tar"), "w") as tar:
    add_bytes(tar, "000.png", data[names[2]])
    add_bytes(tar, "000.jpg", data[names[3]])
    add_bytes(tar, "001.seg.png", data[names[4]])
