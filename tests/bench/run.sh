#!/usr/bin/env bash
# End-to-end load run through Sluice on the local backend (release build, 127.0.0.1 only).
# Scenarios: 1 GiB PUT and GET (1 connection), 2 GiB PUT and GET (peak RSS), 1 GiB multipart
# upload in 8 MiB parts, 4 KiB GET and PUT with 16 connections, ListObjectsV2 pages on a
# 1,000,000-key bucket. Prints one result line per scenario. Bounded: each scenario stops itself.
#   tests/bench/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
quick=0; [ "${1:-}" = "--quick" ] && quick=1

cargo build --release -q -p sluice -p sluice-tests --bin sluice --bin sluice-bench
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sluice="$target_dir/release/sluice"; bench="$target_dir/release/sluice-bench"

work=$(mktemp -d)
keys=1000000; [ $quick = 1 ] && keys=20000
# The listing bucket is filled (and measured without HTTP) before the server takes the data dir.
cargo bench -q -p sluice-storage --features bench --bench listing -- "$work/data" "$keys"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
secret=$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(30)).decode())')
cat > "$work/bench.yaml" <<YAML
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
    danger_accept_unsigned_payload: true   # loopback benchmark: measure the data path
backends:
  local: { type: local, path: data }
tenants:
  - name: bench
    keys: [{ access_id: BENCHKEY00000001, secret: "$secret" }]
    routes: [{ bucket: "*", backend: local }]
YAML
SLUICE_LOG=warn "$sluice" serve --config "$work/bench.yaml" > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 1 300); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
endpoint=$(sed -n 's/^sluice listening on //p' "$work/out" | head -1)
[ -n "$endpoint" ] || { cat "$work/err"; exit 1; }

run() { SLUICE_BENCH_SECRET="$secret" "$bench" --endpoint "$endpoint" --access-id BENCHKEY00000001 --server-pid "$pid" "$@"; }
if [ $quick = 1 ]; then
  run --label put-1MiB --op put --size 1MiB --requests 20
  run --label get-4KiB-c16 --op get --size 4KiB --concurrency 16 --requests 2000
  run --label multipart-24MiB-8MiB-parts --op multipart --size 24MiB --part-size 8MiB --requests 1
  run --label list-1000-of-${keys} --op list --size 1 --bucket million --list-keys "$keys" --requests 50
else
  run --label put-1GiB --op put --size 1GiB
  run --label put-1GiB-signed --op put --size 1GiB --payload signed
  run --label get-1GiB --op get --size 1GiB
  run --label put-2GiB --op put --size 2GiB
  run --label get-2GiB --op get --size 2GiB
  run --label get-4KiB-c16 --op get --size 4KiB --concurrency 16 --requests 50000 --max-seconds 30
  run --label put-4KiB-c16 --op put --size 4KiB --concurrency 16 --requests 5000 --max-seconds 30
  run --label multipart-1GiB-8MiB-parts --op multipart --size 1GiB --part-size 8MiB --part-concurrency 4 --requests 1
  run --label list-1000-of-${keys} --op list --size 1 --bucket million --list-keys "$keys" --requests 500
  run --label list-1000-of-${keys}-c4 --op list --size 1 --bucket million --list-keys "$keys" --concurrency 4 --requests 1000
fi
