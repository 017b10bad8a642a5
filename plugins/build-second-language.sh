#!/usr/bin/env bash
# Builds the tenant-router written in Python (tenant-router-py/, the same plugin as the Rust
# tenant-router, proving the interface is not Rust's) into a WebAssembly component with
# componentize-py, next to the Rust components of build.sh: ${SLUICE_PLUGINS_TARGET:-
# ~/.cache/sluice/plugins-target}/wasm32-wasip2/release/tenant_router_py.wasm. Installs the
# pinned componentize-py into the venv $SLUICE_VENV (default ~/.cache/sluice/venv, created if
# missing) when it is not there; builds only when the component is older than its sources, the
# WIT or this script. Prints the directory that holds the component, and nothing else on stdout.
set -euo pipefail
cd "$(dirname "$0")"
here="$(pwd)"

# The exact tool version: a component's bytes (and so its compiled-cache entry) depend on it.
componentize_py_version=0.25.1
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
out="${SLUICE_PLUGINS_TARGET:-$HOME/.cache/sluice/plugins-target}/wasm32-wasip2/release"
wasm="$out/tenant_router_py.wasm"

# Up to date: nothing it is built from is newer than it.
if [ -f "$wasm" ] && [ -z "$(find tenant-router-py ../wit build-second-language.sh -newer "$wasm" -type f -print -quit)" ]; then
    echo "$out"
    exit 0
fi

tool="$venv/bin/componentize-py"
if [ "$("$tool" --version 2>/dev/null)" != "componentize-py $componentize_py_version" ]; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$componentize_py_version" >&2
fi

# Built from a copy of the sources: the clone gets no __pycache__, and the component sees only
# them and the standard library. componentize-py adds a `site-packages` to the Python path
# (the one under $VIRTUAL_ENV, else the host Python's), whose listing would end up in the
# component; an empty one keeps the host's packages out.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/app" "$stage/env/lib/site-packages" "$out"
cp tenant-router-py/*.py "$stage/app/"
(
    cd "$stage/app"
    # The world: Sluice's, with only the capability the plugin uses (tenant-router-py/wit).
    # `--stub-wasi`: the component imports no WASI (its functions are stubs that trap), and
    # the runtime skips what it otherwise does on the first call, which would trap in Sluice:
    # reading the environment and arguments (`wasi:cli/environment`) and reseeding `random`.
    VIRTUAL_ENV="$stage/env" PYTHONDONTWRITEBYTECODE=1 "$tool" -q \
        -d "$here/../wit" -d "$here/tenant-router-py/wit" -w sluice:tenant-router-py/tenant-router \
        componentize tenant_router --stub-wasi -p . -o "$out/.tenant_router_py.wasm.tmp" >&2
)
mv "$out/.tenant_router_py.wasm.tmp" "$wasm"
echo "$out"
