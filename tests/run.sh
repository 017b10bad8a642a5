#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (system tools, the
# wasm32-wasip2 Rust target for the example plugins, the Python clients and moto in a venv,
# s3s-fs), checks formatting and lints, builds, then runs the Rust tests (unit, SigV4 vectors,
# end-to-end with aws-sdk-s3, plugins) and the Python end-to-end tests (boto3, aws CLI), against
# the local backend and against upstream S3 servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '\n== %s\n' "$*"; }

log "system tools"
missing=()
for tool in curl openssl md5sum rclone; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=()
  for t in "${missing[@]}"; do
    case "$t" in md5sum) pkgs+=(coreutils) ;; *) pkgs+=("$t") ;; esac
  done
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The example plugins (plugins/) are WebAssembly components: the Rust tests build and load them.
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

log "python clients (venv)"
venv="${SLUICE_VENV:-$root/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt

log "independent S3 servers for the upstream tests (s3s-fs; moto comes with the venv)"
SLUICE_S3S_FS=$(bash tests/upstreams/install.sh)
export SLUICE_S3S_FS
export SLUICE_VENV="$venv"

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "build"
cargo build --locked -p sluice
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export SLUICE_BIN="$target_dir/debug/sluice"

log "example plugins (WebAssembly components for wasm32-wasip2, the target installed above)"
(cd plugins && cargo fmt --all -- --check)
SLUICE_PLUGINS_DIR=$(bash plugins/build.sh)
# The same router in Python (componentize-py, installed into the venv): the interface is
# language-neutral.
bash plugins/build-second-language.sh >/dev/null
export SLUICE_PLUGINS_DIR

log "rust tests"
cargo test --locked --workspace

log "benchmark, quick mode (must complete and write its report; no speed is asserted)"
bench_out=$(mktemp -d)
bash tests/bench/run.sh --quick --out "$bench_out"
report=$(ls "$bench_out"/*-quick.md)
grep -q '| get-4KiB-c64 | sluice |' "$report" && grep -q '| get-4KiB-c64 | nginx-proxy |' "$report" \
  && grep -q '<svg' "$bench_out"/*-quick.svg || { echo "benchmark report incomplete: $report" >&2; exit 1; }
# Every request the load generator signed was accepted: its signing agrees with Sluice's.
if grep -E ' errors=[1-9]' "$bench_out"/*-quick.txt; then
  echo "benchmark requests failed (above)" >&2; exit 1
fi
rm -rf "$bench_out"

log "python end-to-end tests (boto3, aws CLI)"
"$venv/bin/python" -m pytest tests/python -q
