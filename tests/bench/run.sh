#!/usr/bin/env bash
# Measures Sluice against what users would pick instead, side by side in one run, on 127.0.0.1:
#   sluice / sluice-tls             Sluice on its local backend (SigV4 verified on every request)
#   nginx-static / nginx-static-tls nginx serving the same bytes as static files (going direct)
#   nginx-proxy / nginx-proxy-tls   nginx as a reverse proxy in front of that static server
#   upstream-*                      an upstream S3 store (nginx serving files, so Sluice's cost shows)
#                                   reached direct (direct-tls), through nginx's reverse proxy
#                                   (nginx-proxy-tls) and through Sluice, which verifies and re-signs
#                                   every request (sluice-tls)
# Scenarios: 4 KiB GET with 64 connections; 1 GiB GET and PUT with 1 connection; Sluice's
# memory with 1,000 idle keep-alive connections; and the local backend's own figures (4 KiB
# PUT, multipart, ListObjectsV2 on 1,000,000 keys). Systems alternate within each round
# (A B A B ...), several rounds; the report gives medians and median per-round ratios.
#
#   encrypted / plaintext           Sluice (TLS) on the local backend, objects encrypted at rest
#                                   (a second Sluice with `encryption: required`) or not
#   encrypted-up / plaintext-up     the same Sluice to an upstream S3 server (s3s-fs, installed by
#                                   tests/upstreams/install.sh), one route encrypting, one not
#
#   plugins-0 / plugins-1 / plugins-3 / plugins-c
#                                   Sluice (plain HTTP, local backend) for four tenants whose
#                                   chains hold no plugin, policy-guard, tenant-router +
#                                   policy-guard + the template, and a plugin whose decisions are
#                                   never reusable, so both its exports are called on every
#                                   request (misbehaving with no mode); same server, same run;
#                                   then its RSS once 100 more tenants each hold a warm
#                                   policy-guard
#
#   tests/bench/run.sh [--quick] [--only local|upstream|encryption|plugins] [--rounds N] [--out DIR]
#
# Installs nginx (Debian package) if missing, builds in release mode (debug with --quick),
# stops everything it started, and writes DIR/<date>.md and DIR/<date>.svg (default DIR:
# tests/bench/results).
# Bounded: about 6 minutes by default, under 2 minutes with --quick (tiny sizes, one round).
set -euo pipefail
cd "$(dirname "$0")/../.."
quick=0
only=""
rounds_arg=""
out=tests/bench/results
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --only) only="$2"; shift ;;
    --rounds) rounds_arg="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--only local|upstream|encryption|plugins] [--rounds N] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
# 1,000 idle connections need more descriptors than the usual soft limit of 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true

# --quick shows that the benchmark runs end to end and writes its report, and asserts no
# speed: it uses the debug build the tests already made. A release build on a fresh machine
# (wasmtime and cranelift optimised) would take a third of CI's time for figures nobody reads.
profile=release
[ $quick = 1 ] && profile=debug
if [ $profile = release ]; then
  cargo build --release -q -p sluice -p sluice-tests --bin sluice --bin sluice-bench
else
  cargo build -q -p sluice -p sluice-tests --bin sluice --bin sluice-bench
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sluice="$target_dir/$profile/sluice"; bench="$target_dir/$profile/sluice-bench"

if [ $quick = 1 ]; then
  small=4096; big=$((8 << 20)); rounds=1; secs=1; keys=20000; idle=200
else
  small=4096; big=$((1 << 30)); rounds=3; secs=5; keys=1000000; idle=1000
fi
[ -n "$rounds_arg" ] && rounds=$rounds_arg
# Which groups of scenarios run (--only picks one; the million-key listing is prepared only
# for the local group).
wants() { [ -z "$only" ] || [ "$only" = "$1" ]; }

work=$(mktemp -d)
chmod 755 "$work"
spid=""
cleanup() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null || true
  [ -n "${epid:-}" ] && kill "$epid" 2>/dev/null && wait "$epid" 2>/dev/null || true
  [ -n "${fspid:-}" ] && kill "$fspid" 2>/dev/null && wait "$fspid" 2>/dev/null || true
  [ -n "${ppid_:-}" ] && kill "$ppid_" 2>/dev/null && wait "$ppid_" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && "$nginx_bin" -p "$work" -c "$work/nginx.conf" -s stop 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== preparing data ($((big >> 20)) MiB large object, $keys listing keys)"
wants local && cargo bench -q --profile "$([ $profile = release ] && echo bench || echo dev)" \
  -p sluice-storage --features bench --bench listing -- "$work/data" "$keys" | sed 's/^/storage: /'
mkdir -p "$work/www/bench" "$work/nginx-tmp" "$work/results"
head -c "$small" /dev/urandom > "$work/www/bench/obj-$small"
head -c "$big" /dev/urandom > "$work/www/bench/obj-$big"
# The upstream's bucket "upstream": the same files, served by the static nginx as an S3 store would.
mkdir -p "$work/www/upstream"
cp "$work/www/bench/obj-$small" "$work/www/bench/obj-$big" "$work/www/upstream/"
"$sluice" dev-cert --out "$work/certs" >/dev/null

read -r p_static p_static_tls p_proxy p_proxy_tls < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
cat > "$work/nginx.conf" <<NGINX
$user_line
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp;
  upstream static { server 127.0.0.1:$p_static; keepalive 128; }
  server {
    listen 127.0.0.1:$p_static;
    root $work/www;
    dav_methods PUT; create_full_put_path on; client_max_body_size 0;
  }
  server {
    listen 127.0.0.1:$p_static_tls ssl;
    ssl_certificate $work/certs/cert.pem; ssl_certificate_key $work/certs/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $work/www;
    dav_methods PUT; create_full_put_path on; client_max_body_size 0;
  }
  server {
    listen 127.0.0.1:$p_proxy;
    client_max_body_size 0;
    location / {
      proxy_pass http://static; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_request_buffering off; proxy_buffering off;
    }
  }
  server {
    listen 127.0.0.1:$p_proxy_tls ssl;
    ssl_certificate $work/certs/cert.pem; ssl_certificate_key $work/certs/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_max_body_size 0;
    location / {
      proxy_pass http://static; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_request_buffering off; proxy_buffering off;
    }
  }
}
NGINX
"$nginx_bin" -p "$work" -c "$work/nginx.conf"

secret=$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(30)).decode())')
cat > "$work/bench.yaml" <<YAML
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
    danger_accept_unsigned_payload: true   # loopback benchmark: measure the data path
  - bind: 127.0.0.1:0
    tls: { cert: certs/cert.pem, key: certs/key.pem }
backends:
  local: { type: local, path: data }
  nginx-up:                # an upstream "S3 store": nginx's static files (it ignores the signature)
    type: s3
    profile: generic
    endpoint: http://127.0.0.1:$p_static
    region: us-east-1
    addressing: path
    access_key_id: BENCHUPSTREAMKEY
    secret_access_key: bench-upstream-secret
tenants:
  - name: bench
    keys: [{ access_id: BENCHKEY00000001, secret: "$secret" }]
    routes: [{ bucket: "upstream", backend: nginx-up }, { bucket: "*", backend: local }]
YAML
SLUICE_LOG=warn "$sluice" serve --config "$work/bench.yaml" > "$work/sluice.out" 2> "$work/sluice.err" &
spid=$!
for _ in $(seq 1 300); do [ "$(grep -c 'listening on' "$work/sluice.out" 2>/dev/null)" = 2 ] && break; sleep 0.1; done
# A second Sluice whose local backend encrypts every object (its own data directory: one
# process per index).
enc_key=$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())')
# Its upstream: s3s-fs, a real S3 server (the encrypted route keeps its envelope as metadata).
fs_up="http://127.0.0.1:9"
if wants encryption; then
  s3s_fs=$(bash tests/upstreams/install.sh)
  fs_secret=$(python3 -c 'import secrets;print(secrets.token_hex(20))')
  mkdir -p "$work/s3s-data"
  RUST_LOG=s3s_fs=info NO_COLOR=1 "$s3s_fs" --host 127.0.0.1 --port 0 --access-key BENCHS3SFS000000 \
    --secret-key "$fs_secret" "$work/s3s-data" > "$work/s3s.out" 2>&1 &
  fspid=$!
  for _ in $(seq 1 300); do grep -q 'http://127.0.0.1:' "$work/s3s.out" 2>/dev/null && break; sleep 0.1; done
  fs_up=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/s3s.out" | head -1)
  [ -n "$fs_up" ] || { cat "$work/s3s.out"; exit 1; }
fi
cat > "$work/enc.yaml" <<YAML
listeners:
  - bind: 127.0.0.1:0
    tls: { cert: certs/cert.pem, key: certs/key.pem }
encryption:
  current: bench
  keys: [{ id: bench, key: "$enc_key" }]
backends:
  local: { type: local, path: data-enc }
  fs-up:
    type: s3
    profile: minio
    endpoint: $fs_up
    region: us-east-1
    addressing: path
    access_key_id: BENCHS3SFS000000
    secret_access_key: "${fs_secret:-unused}"
tenants:
  - name: bench
    keys: [{ access_id: BENCHKEY00000001, secret: "$secret" }]
    routes:
      - { bucket: "up-plain", backend: fs-up }
      - { bucket: "up-enc", backend: fs-up, encryption: required }
      - { bucket: "*", backend: local, encryption: required }
YAML
SLUICE_LOG=warn "$sluice" serve --config "$work/enc.yaml" > "$work/sluice-enc.out" 2> "$work/sluice-enc.err" &
epid=$!
for _ in $(seq 1 300); do grep -q 'listening on' "$work/sluice-enc.out" 2>/dev/null && break; sleep 0.1; done
e_tls=$(sed -n 's/^sluice listening on \(https:.*\)/\1/p' "$work/sluice-enc.out")
[ -n "$e_tls" ] || { cat "$work/sluice-enc.err"; exit 1; }

if wants plugins; then
  plugins_dir="${SLUICE_PLUGINS_DIR:-$(bash plugins/build.sh)}"
  {
    cat <<YAML
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
    danger_accept_unsigned_payload: true
backends:
  local: { type: local, path: plug-data }
plugins:
  cache_dir: plugin-cache
  modules:
    policy-guard:
      component: $plugins_dir/policy_guard.wasm
      capabilities: [settings, tables]
      settings: { protected-prefixes: "protected/" }
    tenant-router:
      component: $plugins_dir/tenant_router.wasm
      capabilities: [tables]
      tables: { routes: { "p3/eu-*": local } }
    template:
      component: $plugins_dir/plugin_template.wasm
    always-called:
      component: $plugins_dir/misbehaving.wasm
      capabilities: [settings]
tenants:
  - { name: p0, keys: [{ access_id: BENCHKEYPLUGIN00, secret: "$secret" }], routes: [{ bucket: "*", backend: local }] }
  - { name: p1, keys: [{ access_id: BENCHKEYPLUGIN01, secret: "$secret" }], routes: [{ bucket: "*", backend: local }], plugins: [policy-guard] }
  - { name: p3, keys: [{ access_id: BENCHKEYPLUGIN03, secret: "$secret" }], routes: [{ bucket: "*", backend: local }], plugins: [tenant-router, policy-guard, template] }
  - { name: pc, keys: [{ access_id: BENCHKEYPLUGIN0C, secret: "$secret" }], routes: [{ bucket: "*", backend: local }], plugins: [always-called] }
YAML
    for i in $(seq -w 0 99); do
      echo "  - { name: w$i, keys: [{ access_id: BENCHKEYWARM00$i, secret: \"$secret\" }], routes: [{ bucket: \"*\", backend: local }], plugins: [policy-guard] }"
    done
  } > "$work/plugins.yaml"
  SLUICE_LOG=warn "$sluice" serve --config "$work/plugins.yaml" > "$work/sluice-plug.out" 2> "$work/sluice-plug.err" &
  ppid_=$!
  for _ in $(seq 1 600); do grep -q 'listening on' "$work/sluice-plug.out" 2>/dev/null && break; sleep 0.1; done
  p_plain=$(sed -n 's/^sluice listening on \(http:.*\)/\1/p' "$work/sluice-plug.out")
  [ -n "$p_plain" ] || { cat "$work/sluice-plug.err"; exit 1; }
fi

s_plain=$(sed -n 's/^sluice listening on \(http:.*\)/\1/p' "$work/sluice.out")
s_tls=$(sed -n 's/^sluice listening on \(https:.*\)/\1/p' "$work/sluice.out")
[ -n "$s_plain" ] && [ -n "$s_tls" ] || { cat "$work/sluice.err"; exit 1; }

results="$work/results/results.txt"
# run SYSTEM SCENARIO ROUND ARGS...: one sluice-bench run against SYSTEM; its result line
# (labelled SCENARIO/SYSTEM/rROUND, as report.py expects) is appended to the results.
run() {
  local system=$1 scenario=$2 round=$3; shift 3
  local target=() access_id=BENCHKEY00000001
  case "$system" in
    plugins-[0-9c]) target=(--endpoint "$p_plain" --server-pid "$ppid_"); access_id="BENCHKEYPLUGIN0${system#plugins-}"; access_id="${access_id^^}" ;;
    warm-[0-9]*) target=(--endpoint "$p_plain" --server-pid "$ppid_"); access_id="BENCHKEYWARM00${system#warm-}" ;;
    direct-tls) target=(--raw --endpoint "https://127.0.0.1:$p_static_tls" --ca "$work/certs/cert.pem") ;;
    sluice) target=(--endpoint "$s_plain" --server-pid "$spid") ;;
    sluice-tls|plaintext) target=(--endpoint "$s_tls" --ca "$work/certs/cert.pem" --server-pid "$spid") ;;
    encrypted) target=(--endpoint "$e_tls" --ca "$work/certs/cert.pem" --server-pid "$epid") ;;
    plaintext-up) target=(--endpoint "$e_tls" --ca "$work/certs/cert.pem" --server-pid "$epid" --bucket up-plain) ;;
    encrypted-up) target=(--endpoint "$e_tls" --ca "$work/certs/cert.pem" --server-pid "$epid" --bucket up-enc) ;;
    nginx-static) target=(--raw --endpoint "http://127.0.0.1:$p_static") ;;
    nginx-static-tls) target=(--raw --endpoint "https://127.0.0.1:$p_static_tls" --ca "$work/certs/cert.pem") ;;
    nginx-proxy) target=(--raw --endpoint "http://127.0.0.1:$p_proxy") ;;
    nginx-proxy-tls) target=(--raw --endpoint "https://127.0.0.1:$p_proxy_tls" --ca "$work/certs/cert.pem") ;;
  esac
  SLUICE_BENCH_SECRET="$secret" "$bench" --access-id "$access_id" \
    --label "$scenario/$system/r$round" "${target[@]}" "$@" >> "$results"
  tail -1 "$results"
}

systems=(sluice nginx-proxy nginx-static sluice-tls nginx-proxy-tls nginx-static-tls)
up_systems=(sluice-tls nginx-proxy-tls direct-tls)
if wants local || wants encryption; then
  echo "== setup: the same objects in Sluice"
  run sluice setup 0 --op get --size "$small" --requests 1 >/dev/null
  run sluice setup 0 --op get --size "$big" --requests 1 >/dev/null
fi
if wants encryption; then
  echo "== setup: the same objects in the encrypting Sluice"
  run encrypted setup 0 --op get --size "$small" --requests 1 >/dev/null
  run encrypted setup 0 --op get --size "$big" --requests 1 >/dev/null
  for sys in plaintext-up encrypted-up; do
    run "$sys" setup 0 --op get --size "$small" --requests 1 >/dev/null
    run "$sys" setup 0 --op get --size "$big" --requests 1 >/dev/null
  done
fi
plugin_systems=(plugins-0 plugins-1 plugins-3 plugins-c)
if wants plugins; then
  echo "== setup: the same object for each plugin tenant"
  for sys in "${plugin_systems[@]}"; do run "$sys" setup 0 --op get --size "$small" --requests 1 >/dev/null; done
fi
enc_systems=(plaintext encrypted)
enc_up_systems=(plaintext-up encrypted-up)
for r in $(seq 1 "$rounds"); do
  echo "== round $r of $rounds"
  if wants plugins; then
    for sys in "${plugin_systems[@]}"; do
      run "$sys" plugins-get-4KiB-c64 "$r" --op get --size "$small" --concurrency 64 --duration "$secs" --no-setup
    done
  fi
  if wants encryption; then
    for sys in "${enc_systems[@]}"; do
      run "$sys" enc-get-4KiB-c64 "$r" --op get --size "$small" --concurrency 64 --duration "$secs" --no-setup
    done
    for sys in "${enc_systems[@]}"; do
      run "$sys" "enc-get-$((big >> 20))MiB" "$r" --op get --size "$big" --requests 1 --no-setup
    done
    for sys in "${enc_systems[@]}"; do
      run "$sys" "enc-put-$((big >> 20))MiB" "$r" --op put --size "$big" --requests 1 --no-setup
    done
    for sys in "${enc_systems[@]}"; do
      run "$sys" "enc-range-1KiB-of-$((big >> 20))MiB" "$r" --op get --size "$big" --range-bytes 1024 --requests 200 --no-setup
    done
    for sys in "${enc_up_systems[@]}"; do
      run "$sys" enc-upstream-get-4KiB-c64 "$r" --op get --size "$small" --concurrency 64 --duration "$secs" --no-setup
    done
    for sys in "${enc_up_systems[@]}"; do
      run "$sys" "enc-upstream-get-$((big >> 20))MiB" "$r" --op get --size "$big" --requests 1 --no-setup
    done
    for sys in "${enc_up_systems[@]}"; do
      run "$sys" "enc-upstream-put-$((big >> 20))MiB" "$r" --op put --size "$big" --requests 1 --no-setup
    done
  fi
  if wants local; then
  for sys in "${systems[@]}"; do
    run "$sys" get-4KiB-c64 "$r" --op get --size "$small" --concurrency 64 --duration "$secs" --no-setup
  done
  for sys in "${systems[@]}"; do
    run "$sys" "get-$((big >> 20))MiB" "$r" --op get --size "$big" --requests 1 --no-setup
  done
  for sys in "${systems[@]}"; do
    run "$sys" "put-$((big >> 20))MiB" "$r" --op put --size "$big" --requests 1
  done
  fi
  wants upstream || continue
  # Upstream: client over TLS, the store behind on loopback plain HTTP (nginx's static server).
  for sys in "${up_systems[@]}"; do
    run "$sys" upstream-get-4KiB-c64 "$r" --bucket upstream --op get --size "$small" --concurrency 64 --duration "$secs" --no-setup
  done
  for sys in "${up_systems[@]}"; do
    run "$sys" "upstream-get-$((big >> 20))MiB" "$r" --bucket upstream --op get --size "$big" --requests 1 --no-setup
  done
  for sys in "${up_systems[@]}"; do
    run "$sys" "upstream-put-$((big >> 20))MiB" "$r" --bucket upstream --op put --size "$big" --requests 1 --no-setup
  done
done

if wants plugins; then
  # Resident memory of the plugin server before and after 100 more tenants each warm an
  # instance of policy-guard (one request each).
  rss() { awk '/^VmRSS/ { print $2 }' "/proc/$ppid_/status"; }
  before=$(rss)
  for i in $(seq -w 0 99); do run "warm-$i" warm 0 --op get --size "$small" --requests 1 >/dev/null; done
  after=$(rss)
  echo "plugins: RSS ${before} KiB with 3 tenants' instances, ${after} KiB after 100 more tenants each warmed policy-guard ($(( (after - before) / 100 )) KiB per tenant)" | tee "$work/rss.txt"
fi

if wants local; then
  echo "== Sluice only: idle connections and the local backend"
  run sluice "idle-$idle" 1 --op idle --size "$small" --concurrency "$idle" --no-setup
  run sluice put-4KiB-c16 1 --op put --size "$small" --concurrency 16 --duration "$secs"
  run sluice "multipart-$((big >> 20))MiB-8MiB-parts" 1 --op multipart --size "$big" --part-size 8MiB --part-concurrency 4 --requests 1
  run sluice "list-1000-of-$keys" 1 --op list --size 1 --bucket million --list-keys "$keys" --requests 200 --no-setup
fi

mkdir -p "$out"
stamp=$(date -u +%Y-%m-%d)
[ $quick = 1 ] && stamp="$stamp-quick"
[ -n "$only" ] && stamp="$stamp-$only"
python3 tests/bench/report.py "$results" "$out/$stamp.md" "$out/$stamp.svg"
cp "$results" "$out/$stamp.txt"
if [ -f "$work/rss.txt" ]; then
  cat "$work/rss.txt" >> "$out/$stamp.txt"
  { echo; cat "$work/rss.txt"; } >> "$out/$stamp.md"
fi
echo "== report: $out/$stamp.md, $out/$stamp.svg"
