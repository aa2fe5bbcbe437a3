-- Quick questions to a dinofeat cache, in DuckDB SQL (duckdb CLI, Python or Node).
--   duckdb -c ".read examples/queries.sql"        (from the directory that holds dinofeat-cache)
-- Set the two variables below to your cache directory and an image key (its path relative to the
-- input root). Parquet shards only: DuckDB reads Arrow IPC only through an extension.

SET VARIABLE cache = 'dinofeat-cache';
SET VARIABLE image = 'photos/cat.jpg';

-- name: per_bucket
-- Images and storage per bucket (the model input size) and its patch grid.
SELECT bucket_width || 'x' || bucket_height AS bucket, grid_w, grid_h,
       count(*) AS images, sum(octet_length(patches)) AS patch_bytes
FROM read_parquet(getvariable('cache') || '/shards/*.parquet')
GROUP BY ALL
ORDER BY images DESC, bucket;

-- name: find_key
-- One image: where it came from, what the model saw, which shard holds it.
SELECT key, sha256, width, height, bucket_width, bucket_height, grid_h, grid_w,
       crop_x, crop_y, crop_w, crop_h, filename AS shard
FROM read_parquet(getvariable('cache') || '/shards/*.parquet', filename = true)
WHERE key = getvariable('image');

-- name: failures
-- Images that failed, by stage and reason (errors.jsonl; empty when all went well).
SELECT stage, reason, count(*) AS images, min(key) AS example
FROM read_json(getvariable('cache') || '/errors.jsonl',
               columns = {key: 'VARCHAR', path: 'VARCHAR', stage: 'VARCHAR', reason: 'VARCHAR', time: 'VARCHAR'})
GROUP BY ALL
ORDER BY images DESC;

-- name: nearest
-- The images whose CLS vector is closest to one image's (cosine similarity).
WITH rows AS (SELECT key, cls FROM read_parquet(getvariable('cache') || '/shards/*.parquet'))
SELECT other.key, list_cosine_similarity(query.cls, other.cls) AS cosine
FROM rows AS query, rows AS other
WHERE query.key = getvariable('image') AND other.key <> query.key
ORDER BY cosine DESC
LIMIT 10;

-- name: duplicates
-- The same file bytes stored under more than one key.
SELECT sha256, count(*) AS copies, list(key ORDER BY key) AS keys
FROM read_parquet(getvariable('cache') || '/shards/*.parquet')
GROUP BY sha256
HAVING count(*) > 1;

-- name: metadata
-- How the features were made: dtype, layout, model and preprocessing, from each shard's footer.
SELECT DISTINCT decode(key) AS key, decode(value) AS value
FROM parquet_kv_metadata(getvariable('cache') || '/shards/*.parquet')
ORDER BY key;
