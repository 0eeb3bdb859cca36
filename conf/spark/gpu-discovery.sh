#!/usr/bin/env bash
# Spark GPU discovery script: prints this node's GPUs as Spark's ResourceInformation JSON,
#   {"name": "gpu", "addresses": ["0", "1"]}
# Spark runs it on each executor/worker (spark.*.resource.gpu.discoveryScript).
# Without nvidia-smi, or without GPUs, it fails with one line on stderr: a GPU executor on a
# CPU-only node must not start.
set -euo pipefail
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-discovery: nvidia-smi not found: this node has no NVIDIA driver" >&2
  exit 1
fi
if ! indices=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>&1); then
  echo "gpu-discovery: nvidia-smi failed: $(echo "$indices" | head -n 1)" >&2
  exit 1
fi
addresses=""
for index in $indices; do
  addresses="${addresses:+$addresses,}\"${index//[^0-9]/}\""
done
if [ -z "$addresses" ]; then
  echo "gpu-discovery: nvidia-smi lists no GPUs" >&2
  exit 1
fi
echo "{\"name\": \"gpu\", \"addresses\": [$addresses]}"
