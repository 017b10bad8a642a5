#!/usr/bin/env bash
# Installs the independent S3 servers the upstream tests start on 127.0.0.1:
#   - s3s-fs 0.14.1 (crates.io; checks SigV4 headers, presigned URLs, aws-chunked signatures),
#     built with `cargo install` into $SLUICE_TOOLS (default ~/.cache/sluice/tools), once;
#   - moto in server mode comes from tests/python/requirements.txt (the venv).
# Prints the path of the s3s-fs binary.
set -euo pipefail
tools="${SLUICE_TOOLS:-$HOME/.cache/sluice/tools}"
bin="$tools/bin/s3s-fs"
if ! "$bin" --version 2>/dev/null | grep -qx 's3s-fs 0.14.1'; then
  echo "installing s3s-fs 0.14.1 into $tools" >&2
  CARGO_TARGET_DIR="$tools/target" cargo install --locked --quiet s3s-fs --version 0.14.1 \
    --features binary --root "$tools" >&2
fi
echo "$bin"
