"""A plain pyarrow read of a dinofeat cache, as a user's training code would do it, for the tests.

Reads a JSON job on stdin: {"cache": dir, "values": bool}. Opens every shard under <cache>/shards
(Parquet, or Arrow IPC stream), decodes `patches` / `registers` with the dtype from the shard
metadata, reshapes them to [grid_h, grid_w, hidden] / [num_registers, hidden] (numpy raises if
the sizes do not fit) and prints JSON: schema, metadata and rows (tensor values when "values").
"""
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

job = json.load(sys.stdin)
shard_dir = os.path.join(job["cache"], "shards")
files = sorted(f for f in os.listdir(shard_dir) if f.endswith((".parquet", ".arrow")))
tables = [
    pq.read_table(os.path.join(shard_dir, f)) if f.endswith(".parquet")
    else pa.ipc.open_stream(os.path.join(shard_dir, f)).read_all()
    for f in files
]
schema = tables[0].schema
meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
dtype = np.dtype(meta["dinofeat.dtype"])
hidden = int(meta["dinofeat.hidden_size"])

rows = []
for table in tables:
    for r in table.to_pylist():
        patches = np.frombuffer(r["patches"], dtype=dtype).reshape(r["grid_h"], r["grid_w"], hidden)
        row = {k: v for k, v in r.items() if k not in ("cls", "patches", "registers")}
        row["cls_length"] = len(r["cls"])
        row["patches_shape"] = list(patches.shape)
        if "registers" in r:
            registers = np.frombuffer(r["registers"], dtype=dtype).reshape(-1, hidden)
            row["registers_shape"] = list(registers.shape)
        if job.get("values"):
            row["cls"] = r["cls"]
            row["patches"] = patches.astype(np.float32).ravel().tolist()
            if "registers" in r:
                row["registers"] = registers.astype(np.float32).ravel().tolist()
        rows.append(row)

json.dump({
    "files": files,
    "types": {f.name: str(f.type) for f in schema},
    "metadata": meta,
    "rows": rows,
}, sys.stdout)
