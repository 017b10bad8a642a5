#!/usr/bin/env bash
# Builds the example plugins (WebAssembly components of ../wit/plugin.wit) for wasm32-wasip2,
# adding the target to the toolchain if it is missing, into a target directory outside the
# clone ($SLUICE_PLUGINS_TARGET, default ~/.cache/sluice/plugins-target), and copies the
# components to plugins/dist/ (where config/plugins.yaml names them). Prints the directory
# that holds the built `.wasm` components.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2 >&2
export CARGO_TARGET_DIR="${SLUICE_PLUGINS_TARGET:-$HOME/.cache/sluice/plugins-target}"
cargo build --locked --release --target wasm32-wasip2 -q >&2
out="$CARGO_TARGET_DIR/wasm32-wasip2/release"
mkdir -p dist
cp -p "$out"/*.wasm dist/
echo "$out"
