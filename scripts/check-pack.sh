#!/usr/bin/env bash
# Checks the package as users get it: `npm pack` (prepack builds dist/), the tarball's contents,
# then a user's install into an empty folder and the installed CLI: --version, test-model, an
# extract of a folder of images, validate. Needs the npm registry for the dependencies.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/dinofeat-pack.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { echo "check-pack: $*" >&2; }

step "npm pack"
(cd "$root" && npm pack --silent --pack-destination "$work" >/dev/null)
tarball=$(echo "$work"/dinofeat-*.tgz)
tar -tzf "$tarball" | sed 's|^package/||' | sort > "$work/contents"
for must in bin/dinofeat.js dist/cli.js dist/model/ort-worker-entry.js README.md package.json; do
  grep -qx "$must" "$work/contents" || { echo "check-pack: $must is not in the tarball" >&2; exit 1; }
done
if grep -E '^(test|src|scripts|docs|\.ci)/|\.map$' "$work/contents"; then
  echo "check-pack: the tarball ships files users do not need (above)" >&2
  exit 1
fi
step "$(basename "$tarball"): $(wc -l < "$work/contents") files, $(du -k "$tarball" | cut -f1) KiB"

# A user's install: onnxruntime-node's install script would fetch CUDA binaries, and this repo's
# allowScripts does not reach a user's install, so the README says to skip it the same way.
mkdir "$work/user"
cd "$work/user"
step "npm i $(basename "$tarball") into an empty folder"
ONNXRUNTIME_NODE_INSTALL=skip npm i --no-audit --no-fund --loglevel=error "$tarball" >/dev/null

want=$(node -p "require('$root/package.json').version")
got=$(npx --no-install dinofeat --version)
[ "$got" = "$want" ] || { echo "check-pack: dinofeat --version said '$got', want $want" >&2; exit 1; }
step "dinofeat --version: $got"

npx --no-install dinofeat test-model model >/dev/null
mkdir images
cp "$root"/examples/images/*.jpg "$root"/examples/images/*.png images/
npx --no-install dinofeat extract images --model model/model.onnx --out cache --bucket 224x224 --quiet
npx --no-install dinofeat validate cache --model model/model.onnx --images images --recompute 2 >/dev/null
step "test-model, extract and validate ran from the installed package"
