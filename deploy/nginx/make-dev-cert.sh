#!/usr/bin/env bash
# A self-signed certificate for trying the compose stack on one machine (browsers will warn).
# In production put your CA-issued shardline.crt and shardline.key in deploy/nginx/certs/ instead.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/certs"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
  -keyout "$dir/shardline.key" -out "$dir/shardline.crt" \
  -subj "/CN=${1:-localhost}" -addext "subjectAltName=DNS:${1:-localhost},IP:127.0.0.1"
chmod 600 "$dir/shardline.key"
echo "wrote $dir/shardline.crt and $dir/shardline.key"
