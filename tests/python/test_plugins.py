"""WebAssembly plugins in the request path, through real clients (boto3, the aws CLI).

One Sluice with a local backend and an s3s-fs upstream (`fs`), and the example plugins built
from `plugins/` (`SLUICE_PLUGINS_DIR`, else `plugins/build.sh`), copied into the test's own
directory so that hot-reload tests can replace them:

- tenant `dev`: chain [router, guard]; `router` (tenant-router) sends `eu-*` buckets to `fs`,
  everything else takes the configured routes (`home-*` on fs, the rest local); `guard`
  (policy-guard) refuses deletes under `protected/` without `x-approved-by`, and marks the
  bucket `SENSITIVE` (no presigned URLs, TLS only);
- tenants `trap`, `loop`, `hog`, `lost`: each runs the misbehaving fixture in that mode (a
  trap, an endless loop, unbounded allocation, a route to a backend that does not exist);
  `lenient` runs the trap with `on_failure: allow`;
- tenant `calm`: no plugins, for the other tenants' latency while the fixtures misbehave;
- tenant `swapper`: chain [swap], whose component file the reload tests replace.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import (
    ENCRYPTION_KEY,
    REPO,
    Sluice,
    _run_setup,
    _stop,
    aws_cli_for,
    error_code,
    make_client,
    random_secret,
    sluice_bin,
    wait_until,
)
from upstreams import REGION, Upstream, _backend_yaml, launch_sluice, start_s3s_fs


def unique_bucket(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"

SENSITIVE = "vault-sensitive"
MISBEHAVING = ["trap", "loop", "hog", "lost"]
TENANTS = ["dev", "calm", "swapper", "lenient", *MISBEHAVING]
# The other tenants' requests may be slowed by the fixtures by at most this much (p99, seconds)
# beyond the same load of requests without plugins: a looping call holds a runtime thread for
# its CPU deadline (5 ms) before its next calls move off the runtime threads, and clients and
# server share two cores (measured: within 0-13 ms of the control).
LATENCY_BOUND = 0.030


def built_plugins() -> Path:
    """The example plugins' components (`SLUICE_PLUGINS_DIR`, else built by plugins/build.sh and
    plugins/build-second-language.sh)."""
    env = os.environ.get("SLUICE_PLUGINS_DIR")
    if env:
        return Path(env)
    for script in ["plugins/build.sh", "plugins/build-second-language.sh"]:
        proc = subprocess.run(["bash", str(REPO / script)], stdout=subprocess.PIPE, text=True, timeout=900)
        assert proc.returncode == 0, f"{script} failed"
    return Path(proc.stdout.strip())


def access_id(tenant: str) -> str:
    return f"SLUICEPLUG{tenant.upper():<6}".replace(" ", "0")[:16]


def fixture_yaml(name: str, mode: str, extra: str = "") -> str:
    return f"""\
    {name}:
      component: plugins/misbehaving.wasm
      capabilities: [settings]
      settings: {{ mode: {mode} }}
      deadline: 5ms
      memory: 16MiB
{extra}"""


def write_config(root: Path, master: str, secrets_by_tenant: dict[str, str], fs: Upstream) -> Path:
    chains = {"dev": "[router, guard]", "calm": "[]", "swapper": "[swap]", "lenient": "[lenient]",
              **{t: f"[{t}]" for t in MISBEHAVING}}
    tenants = "".join(f"""\
  - name: {t}
    keys:
      - access_id: {access_id(t)}
        secret: "{secrets_by_tenant[t]}"
    routes:
{'      - { bucket: "home-*", backend: fs }' + chr(10) if t == "dev" else ""}\
      - {{ bucket: "*", backend: local }}
    plugins: {chains[t]}
""" for t in TENANTS)
    config = f"""\
# Written by tests/python/test_plugins.py
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
    danger_accept_unsigned_payload: true
  - bind: 127.0.0.1:0
    tls: {{ cert: certs/cert.pem, key: certs/key.pem }}
s3:
  region: {REGION}
limits:
  shutdown_grace: 5s
key_store:
  path: keys.yaml
  master_key: "{master}"
encryption:
  current: p-1
  keys:
    - {{ id: p-1, key: "{ENCRYPTION_KEY}" }}
backends:
  local: {{ type: local, path: srv/data }}
{_backend_yaml("fs", fs, "minio")}plugins:
  cache_dir: plugin-cache
  modules:
    router:
      component: plugins/tenant_router.wasm
      capabilities: [tables]
      tables:
        routes: {{ "dev/eu-*": fs }}
    guard:
      component: plugins/policy_guard.wasm
      capabilities: [settings, tables]
      settings: {{ protected-prefixes: "protected/" }}
      tables:
        sensitive: {{ {SENSITIVE}: "yes" }}
    swap:
      component: plugins/swap.wasm
      capabilities: [settings, tables]
      settings: {{ protected-prefixes: "protected/" }}
{fixture_yaml("trap", "trap")}{fixture_yaml("loop", "loop")}{fixture_yaml("hog", "hog")}\
{fixture_yaml("lost", "unknown-backend")}{fixture_yaml("lenient", "trap", "      on_failure: allow" + chr(10))}\
tenants:
{tenants}"""
    path = root / "sluice.yaml"
    path.write_text(config)
    return path


class PluginEnv:
    def __init__(self, sluice: Sluice, fs: Upstream, secrets_by_tenant: dict[str, str], root: Path):
        self.sluice = sluice
        self.fs = fs
        self.root = root
        self.secrets = secrets_by_tenant
        self.fs_direct = fs.client()

    def client(self, tenant: str, tls: bool = False):
        return make_client(self.sluice, access_id=access_id(tenant), secret=self.secrets[tenant], tls=tls)

    def approved(self, tenant: str):
        """A client whose deletes carry policy-guard's approval header."""
        client = self.client(tenant)
        client.meta.events.register(
            "before-sign.s3.DeleteObject",
            lambda request, **_: request.headers.__setitem__("x-approved-by", "alice"),
        )
        return client

    def log(self) -> str:
        return self.sluice.log_path.read_text(errors="replace")

    def access_line(self, path: str, method: str = "") -> str:
        lines = [line for line in self.log().splitlines()
                 if "sluice::access" in line and f'path="{path}"' in line and f"method={method}" in line]
        assert lines, f"no access line for {path}\n{self.sluice.log_tail()}"
        return lines[-1]


@pytest.fixture(scope="module")
def env() -> Iterator[PluginEnv]:
    root = Path(tempfile.mkdtemp(prefix="sluice-plugins-"))
    fs = None
    try:
        fs = start_s3s_fs(root / "s3s-fs")
        plugins = root / "sluice" / "plugins"
        plugins.mkdir(parents=True)
        built = built_plugins()
        for name in ["tenant_router.wasm", "policy_guard.wasm", "misbehaving.wasm"]:
            shutil.copy(built / name, plugins / name)
        shutil.copy(built / "policy_guard.wasm", plugins / "swap.wasm")
        binary = sluice_bin()
        _run_setup(binary, "dev-cert", "--out", str(root / "sluice" / "certs"))
        master = _run_setup(binary, "master-key").strip()
        secrets_by_tenant = {t: random_secret() for t in TENANTS}
        config = write_config(root / "sluice", master, secrets_by_tenant, fs)
        sluice = launch_sluice(root / "sluice", config, secrets_by_tenant["dev"], "server")
        sluice.access_id = access_id("dev")
        try:
            yield PluginEnv(sluice, fs, secrets_by_tenant, root)
        finally:
            _stop(sluice.process)
        assert sluice.process.returncode == 0, sluice.log_tail()
    finally:
        if fs is not None:
            fs.stop()
        shutil.rmtree(root, ignore_errors=True)


def put_get(client, bucket: str, key: str, body: bytes) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=body)
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == body


# --------------------------------------------------------------------------------------------
# Routing and denial


def test_router_sends_one_tenants_buckets_to_two_backends(env: PluginEnv):
    """`eu-*` goes to s3s-fs by the plugin's table, anything else to the local backend by the
    configured route: checked at s3s-fs directly, and in the access line."""
    s3 = env.client("dev")
    eu, us = unique_bucket("eu"), unique_bucket("us")
    for b in (eu, us):
        s3.create_bucket(Bucket=b)
    put_get(s3, eu, "a.txt", b"in europe")
    put_get(s3, us, "a.txt", b"at home")
    # s3s-fs holds the eu bucket and its object, and knows nothing of the other.
    assert env.fs_direct.get_object(Bucket=eu, Key="a.txt")["Body"].read() == b"in europe"
    with pytest.raises(ClientError) as e:
        env.fs_direct.head_bucket(Bucket=us)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "router.route=fs" in env.access_line(f"/{eu}/a.txt", "PUT")
    assert "router.route=configured" in env.access_line(f"/{us}/a.txt", "PUT")
    # tenant-router marks its route decisions reusable per tenant and bucket: the GET after the
    # PUT took it from the decision cache. policy-guard's verdicts on anything but deletes are
    # reusable per operation: a second GET takes its verdict from the cache too.
    get_line = env.access_line(f"/{eu}/a.txt", "GET")
    assert "router.route=fs(cached)" in get_line and "guard.authorize=allow" in get_line, get_line
    assert s3.get_object(Bucket=eu, Key="a.txt")["Body"].read() == b"in europe"
    get_line = env.access_line(f"/{eu}/a.txt", "GET")
    assert 'guard.authorize=allow(cached)"' in get_line, get_line
    # ListBuckets sees both backends' buckets.
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {eu, us} <= names
    for b in (eu, us):
        s3.delete_object(Bucket=b, Key="a.txt")
        s3.delete_bucket(Bucket=b)


def test_denial_reaches_boto3_as_the_plugins_error(env: PluginEnv):
    s3 = env.client("dev")
    b = unique_bucket("guard")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="protected/ledger", Body=b"keep")
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=b, Key="protected/ledger")
    assert error_code(e.value) == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "needs approval: send the x-approved-by header" in e.value.response["Error"]["Message"]
    assert s3.get_object(Bucket=b, Key="protected/ledger")["Body"].read() == b"keep", "nothing lost"
    line = env.access_line(f"/{b}/protected/ledger", "DELETE")
    assert "guard.authorize=deny:AccessDenied" in line and "status=403" in line

    # With the approval header the same delete goes through.
    env.approved("dev").delete_object(Bucket=b, Key="protected/ledger")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key="protected/ledger")
    s3.delete_bucket(Bucket=b)


def test_denial_reaches_the_aws_cli(env: PluginEnv, tmp_path: Path):
    cli_env = Sluice(**{**env.sluice.__dict__, "access_id": access_id("dev"), "secret": env.secrets["dev"]})
    aws = aws_cli_for(cli_env, tmp_path)
    b = unique_bucket("guardcli")
    aws("s3", "mb", f"s3://{b}")
    src = tmp_path / "f.txt"
    src.write_text("precious")
    aws("s3", "cp", str(src), f"s3://{b}/protected/f.txt")
    out = aws("s3api", "delete-object", "--bucket", b, "--key", "protected/f.txt", check=False)
    assert out.returncode != 0
    assert "AccessDenied" in out.stderr and "needs approval" in out.stderr, out.stderr
    assert "protected/f.txt" in aws("s3", "ls", f"s3://{b}", "--recursive").stdout
    aws("s3", "cp", str(src), f"s3://{b}/free/f.txt")
    aws("s3", "rm", f"s3://{b}/free/f.txt")


def test_sensitive_bucket_refuses_presigned_urls_and_plain_http(env: PluginEnv):
    tls = env.client("dev", tls=True)
    tls.create_bucket(Bucket=SENSITIVE)
    tls.put_object(Bucket=SENSITIVE, Key="k", Body=b"secret")
    assert tls.get_object(Bucket=SENSITIVE, Key="k")["Body"].read() == b"secret"
    # Plain HTTP: the plugin allows only if TLS, which Sluice enforces.
    with pytest.raises(ClientError) as e:
        env.client("dev").get_object(Bucket=SENSITIVE, Key="k")
    assert error_code(e.value) == "AccessDenied"
    assert "TLS" in e.value.response["Error"]["Message"]
    # A presigned URL, even over TLS.
    url = tls.generate_presigned_url("get_object", Params={"Bucket": SENSITIVE, "Key": "k"}, ExpiresIn=60)
    r = requests.get(url, verify=str(env.sluice.ca_bundle), timeout=30)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
    assert "Presigned URLs are not accepted" in r.text
    tls.delete_object(Bucket=SENSITIVE, Key="k")
    tls.delete_bucket(Bucket=SENSITIVE)


# --------------------------------------------------------------------------------------------
# Misbehaving plugins


def latencies(client, bucket: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        assert client.get_object(Bucket=bucket, Key="small")["Body"].read() == b"x" * 4096
        out.append(time.perf_counter() - t)
    return out


def p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


@pytest.mark.parametrize("tenant,why", [
    ("trap", "the plugin trapped"),
    ("loop", "ran past its deadline of 5ms"),
    ("hog", "reached its memory limit of 16777216 bytes"),
    ("lost", "backend \\\"nowhere\\\""),
])
def test_failing_plugin_denies_and_names_itself(env: PluginEnv, tenant: str, why: str):
    s3 = env.client(tenant)
    started = time.monotonic()
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=unique_bucket(tenant))
    assert error_code(e.value) == "AccessDenied"
    assert e.value.response["Error"]["Message"] == f"Plugin {tenant} could not decide on this request."
    assert time.monotonic() - started < 5, "denied within its limits, not after a client timeout"
    warned = [line for line in env.log().splitlines() if "plugin gave no decision" in line and f'plugin="{tenant}"' in line]
    assert warned and why in warned[-1], f"{why!r} not in {warned[-1:]}"


def test_fail_open_plugin_lets_requests_through(env: PluginEnv):
    s3 = env.client("lenient")
    b = unique_bucket("lenient")
    s3.create_bucket(Bucket=b)
    put_get(s3, b, "k", b"through")
    assert "lenient.authorize=failed" in env.access_line(f"/{b}/k", "PUT")
    s3.delete_object(Bucket=b, Key="k")
    s3.delete_bucket(Bucket=b)


def hammer(endpoint: str, key: str, secret: str, stop, refused, allowed) -> None:
    """Sends HeadBucket of a bucket that does not exist as one tenant until `stop` is set,
    counting refusals (403, 404) and anything allowed. Runs in a process of its own: the clients'
    work must not stall the measuring thread on this interpreter's lock."""
    import boto3  # noqa: PLC0415 (a fresh process)

    from conftest import client_config  # noqa: PLC0415
    client = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                   region_name=REGION).client("s3", endpoint_url=endpoint, config=client_config())
    while not stop.is_set():
        try:
            client.head_bucket(Bucket="anything")
            with allowed.get_lock():
                allowed.value += 1
        except ClientError:
            with refused.get_lock():
                refused.value += 1


def under_load(env: PluginEnv, tenants: list[str], measure):
    """Runs `measure()` while each of `tenants` sends HeadBucket requests as fast as it can, from
    a process of its own; returns what it measured and each tenant's (refused, allowed) counts."""
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    counts = [(ctx.Value("i", 0), ctx.Value("i", 0)) for _ in tenants]
    procs = [ctx.Process(target=hammer, args=(env.sluice.endpoint, access_id(t), env.secrets[t], stop, d, a))
             for t, (d, a) in zip(tenants, counts)]
    for p in procs:
        p.start()
    try:
        wait_until(lambda: all(d.value + a.value >= 5 for d, a in counts), timeout=60,
                   what=f"{tenants} are being answered")
        measured = measure()
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=60)
    return measured, {t: (d.value, a.value) for t, (d, a) in zip(tenants, counts)}


def test_misbehaving_plugins_do_not_disturb_other_tenants(env: PluginEnv):
    """While the trap, loop and memory fixtures are called as fast as three clients can, every
    request of another tenant succeeds, and its p99 latency is within LATENCY_BOUND of its p99
    under the same load from a tenant without plugins (the clients share this machine's two
    cores with Sluice: the control run is what that alone costs)."""
    calm = env.client("calm")
    b = unique_bucket("calm")
    calm.create_bucket(Bucket=b)
    calm.put_object(Bucket=b, Key="small", Body=b"x" * 4096)
    latencies(calm, b, 20)  # warm the connection
    control, _ = under_load(env, ["calm"] * 3, lambda: latencies(calm, b, 200))
    during, counts = under_load(env, ["trap", "loop", "hog"], lambda: latencies(calm, b, 200))
    assert all(allowed == 0 for _, allowed in counts.values()), f"a misbehaving tenant was allowed: {counts}"
    assert all(refused >= 5 for refused, _ in counts.values()), counts
    print(f"calm p99 {p99(control) * 1000:.1f} ms beside well-behaved load, "
          f"{p99(during) * 1000:.1f} ms beside the fixtures; refused {counts}")
    assert p99(during) <= p99(control) + LATENCY_BOUND, (p99(control), p99(during))
    calm.delete_object(Bucket=b, Key="small")
    calm.delete_bucket(Bucket=b)


# --------------------------------------------------------------------------------------------
# Hot reload and refused components


def replace_atomically(path: Path, contents: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(contents)
    os.replace(tmp, path)


def protected_delete_allowed(s3, bucket: str) -> bool:
    """Whether the plugin serving `s3`'s tenant lets a delete under `protected/` through
    without approval (policy-guard does not; tenant-router does)."""
    s3.put_object(Bucket=bucket, Key="protected/p", Body=b"p")
    try:
        s3.delete_object(Bucket=bucket, Key="protected/p")
        return True
    except ClientError as e:
        assert error_code(e) == "AccessDenied"
        return False


def test_hot_reload_under_load_fails_no_request(env: PluginEnv):
    """`swap` starts as policy-guard (protected deletes refused). Under a steady load of GETs,
    its file is replaced by tenant-router (which allows everything): the new behaviour arrives
    and no request fails. Then garbage replaces it: refused with the reason logged, and the
    router keeps serving."""
    s3 = env.client("swapper")
    b = unique_bucket("swap")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="small", Body=b"x" * 4096)
    stop = threading.Event()
    done = {"ok": 0, "failed": []}

    def load() -> None:
        client = env.client("swapper")
        while not stop.is_set():
            try:
                assert client.get_object(Bucket=b, Key="small")["Body"].read() == b"x" * 4096
                done["ok"] += 1
            except Exception as e:  # noqa: BLE001 (any failure counts)
                done["failed"].append(repr(e))

    def allowed() -> bool:
        return protected_delete_allowed(s3, b)

    component = env.sluice.root / "plugins" / "swap.wasm"
    built = built_plugins()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(load) for _ in range(3)]
        try:
            wait_until(lambda: done["ok"] >= 50, timeout=60, what="the load is running")
            assert not allowed(), "policy-guard serves first"
            replace_atomically(component, (built / "tenant_router.wasm").read_bytes())
            wait_until(allowed, timeout=30, what="the new component serves")
            assert "plugin reloaded" in env.log()

            # A broken component is refused; the router keeps serving.
            replace_atomically(component, b"\0asm this is not a component")
            wait_until(lambda: "plugin reload refused" in env.log(), timeout=30, what="the refusal is logged")
            refusal = [line for line in env.log().splitlines() if "plugin reload refused" in line][-1]
            assert 'plugin="swap"' in refusal and "swap.wasm" in refusal, refusal
            assert allowed(), "the old component still serves"
            ok_before = done["ok"]
            wait_until(lambda: done["ok"] >= ok_before + 50, timeout=60, what="the load goes on")
        finally:
            stop.set()
            for f in futures:
                f.result(timeout=60)
            replace_atomically(component, (built / "policy_guard.wasm").read_bytes())
    assert done["failed"] == [], done["failed"][:5]
    assert done["ok"] >= 100
    wait_until(lambda: not allowed(), timeout=30, what="policy-guard is back")
    env.approved("swapper").delete_object(Bucket=b, Key="protected/p")
    s3.delete_object(Bucket=b, Key="small")
    s3.delete_bucket(Bucket=b)


def padded(component: bytes, size: int) -> bytes:
    """`component` with a custom section appended (a valid component still) so that it is
    exactly `size` bytes long."""
    def leb(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)
    name = b"pad"
    for payload in range(size):
        body = leb(len(name)) + name + b"\0" * payload
        section = b"\0" + leb(len(body)) + body
        if len(component) + len(section) == size:
            return component + section
    raise AssertionError(f"cannot pad {len(component)} bytes to {size}")


def test_sighup_reloads_what_polling_cannot_see(env: PluginEnv):
    """A component replaced by another of the same size with the old modification time is
    invisible to the once-a-second check; SIGHUP makes Sluice read it anyway."""
    s3 = env.client("swapper")
    b = unique_bucket("hup")
    s3.create_bucket(Bucket=b)

    def allowed() -> bool:
        return protected_delete_allowed(s3, b)

    component = env.sluice.root / "plugins" / "swap.wasm"
    built = built_plugins()
    assert not allowed(), "policy-guard serves first"
    before = component.stat()
    router = padded((built / "tenant_router.wasm").read_bytes(), before.st_size)
    replace_atomically(component, router)
    os.utime(component, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = component.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    hups = env.log().count("SIGHUP: reloading plugins")
    env.sluice.process.send_signal(signal.SIGHUP)
    wait_until(lambda: env.log().count("SIGHUP: reloading plugins") > hups, timeout=10, what="SIGHUP is seen")
    wait_until(allowed, timeout=30, what="the component read on SIGHUP serves")
    replace_atomically(component, (built / "policy_guard.wasm").read_bytes())
    wait_until(lambda: not allowed(), timeout=30, what="policy-guard is back")
    env.approved("swapper").delete_object(Bucket=b, Key="protected/p")
    s3.delete_bucket(Bucket=b)


def check_config(env: PluginEnv, component: str, capabilities: str) -> subprocess.CompletedProcess:
    """`sluice check` on a copy of the config whose `router` is `component` with `capabilities`."""
    text = env.sluice.config_path.read_text()
    text = text.replace("component: plugins/tenant_router.wasm\n      capabilities: [tables]",
                        f"component: {component}\n      capabilities: {capabilities}")
    if capabilities == "[]":
        text = text.replace('      tables:\n        routes: { "dev/eu-*": fs }\n', "")
    path = env.sluice.root / "check.yaml"
    path.write_text(text)
    return subprocess.run([str(env.sluice.binary), "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_check_refuses_malformed_and_ungranted_components(env: PluginEnv):
    junk = env.sluice.root / "plugins" / "junk.wasm"
    junk.write_bytes(secrets.token_bytes(256))
    out = check_config(env, "plugins/junk.wasm", "[tables]")
    assert out.returncode != 0
    assert "plugins.modules.router" in out.stderr and "not a WebAssembly component" in out.stderr, out.stderr

    out = check_config(env, "plugins/tenant_router.wasm", "[]")
    assert out.returncode != 0
    assert "imports `sluice:plugin/tables@0.1.0`" in out.stderr, out.stderr
    assert "add `tables` to the plugin's capabilities" in out.stderr, out.stderr

    out = check_config(env, "plugins/tenant_router.wasm", "[tables]")
    assert out.returncode == 0, out.stderr
    assert "plugin router: OK" in out.stdout


def test_shipped_plugins_config_checks(env: PluginEnv):
    """config/plugins.yaml names the components plugins/build.sh puts in plugins/dist/."""
    built_plugins()
    out = subprocess.run([str(env.sluice.binary), "check", "--config", str(REPO / "config/plugins.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "plugin policy-guard: OK" in out.stdout


def plugin_test(env: PluginEnv, component: Path, cases: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env.sluice.binary), "plugin", "test", str(component), "--cases", str(cases)],
                          capture_output=True, text=True, timeout=600)


def test_second_language_router_decides_as_the_rust_one(env: PluginEnv, tmp_path: Path):
    """`sluice plugin test` runs the Rust tenant-router and its Python twin on the same cases:
    both decide every case as expected, and print the same decisions."""
    built = built_plugins()
    cases = REPO / "plugins/tenant-router/cases.yaml"
    rust = plugin_test(env, built / "tenant_router.wasm", cases)
    python = plugin_test(env, built / "tenant_router_py.wasm", cases)
    assert rust.returncode == 0, rust.stdout + rust.stderr
    assert python.returncode == 0, python.stdout + python.stderr
    assert "10 cases, 10 as expected, 0 not" in rust.stdout
    assert python.stdout == rust.stdout

    # A case the plugin does not decide as written fails the run, saying where.
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(cases.read_text().replace("expect: { route: eu-store, authorize: allow } }",
                                               "expect: { route: us-store, authorize: allow } }", 1))
    out = plugin_test(env, built / "tenant_router_py.wasm", wrong)
    assert out.returncode != 0
    assert "FAIL a tenant's prefix pattern: route=eu-store" in out.stdout
    assert "route: expected us-store" in out.stdout


def test_plugin_check_reports_fit_and_imports(env: PluginEnv):
    built = built_plugins()
    out = subprocess.run([str(env.sluice.binary), "plugin", "check", str(built / "policy_guard.wasm")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "fits sluice:plugin/plugin@0.1.0" in out.stdout
    assert "capabilities it needs granted: settings, tables" in out.stdout
    junk = env.sluice.root / "not-a-component.wasm"
    junk.write_bytes(b"\0asm\x01\0\0\0")  # a core module, not a component
    out = subprocess.run([str(env.sluice.binary), "plugin", "check", str(junk)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "not a WebAssembly component" in out.stderr, out.stderr
