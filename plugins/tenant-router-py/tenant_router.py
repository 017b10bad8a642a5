"""tenant-router, in Python: the same plugin as `../tenant-router/src/lib.rs`, decision for
decision, built to a component by componentize-py (`../build-second-language.sh`).

It sends a tenant's buckets to backends by pattern. Its table is the plugin's `tables`
capability, table `routes`: keys `<tenant>/<bucket pattern>` or `*/<bucket pattern>` (a pattern
is an exact name or a prefix ending in `*`), values `<backend>` or `<backend>/<target bucket>`.
The first key that matches, tenant's own before `*`, longest pattern first, wins; no match
defers to the configured routes. A request without a bucket (ListBuckets) defers too. Route
decisions may be cached for a minute per tenant and bucket; `authorize` always allows.

The Python runtime is initialised when the component is built (componentize-py snapshots it)
and the build replaces WASI with stubs that trap (`--stub-wasi`), as Sluice would: so nothing
here prints, and an uncaught exception (whose traceback goes to stderr) traps, which Sluice
counts as the plugin failing. Hash seeds and `random` are fixed at build time.
"""

from typing import Iterator, Optional

import wit_world
from wit_world.imports import tables
from wit_world.imports.types import (
    Authorization,
    CacheHint,
    ContextFields,
    RequestContext,
    Route,
    RouteChoice,
    RouteChoice_Configured,
    RouteChoice_To,
    RouteDecision,
    Verdict_Allow,
)

# Same tenant and bucket, same answer: for a minute.
CACHE = CacheHint(ttl_ms=60_000, depends_on=ContextFields.TENANT | ContextFields.BUCKET)


def patterns(bucket: str) -> Iterator[str]:
    """The patterns tried for `bucket`, most specific first: the name itself, then its
    prefixes with `*`, longest first (down to `*` alone)."""
    yield bucket
    for end in range(len(bucket), -1, -1):
        yield bucket[:end] + "*"


def lookup(tenant: str, bucket: str) -> Optional[str]:
    """The target of the first key of `routes` that matches, or `None`."""
    for owner in (tenant, "*"):
        for pattern in patterns(bucket):
            target = tables.lookup("routes", f"{owner}/{pattern}")
            if target is not None:
                return target
    return None


def choose(tenant: str, bucket: str) -> RouteChoice:
    target = lookup(tenant, bucket)
    if target is None:
        return RouteChoice_Configured()
    # `<backend>/<target bucket>`: split at the first `/` only (as Rust's `split_once`).
    if "/" in target:
        backend, target_bucket = target.split("/", 1)
        return RouteChoice_To(Route(backend, target_bucket, None))
    return RouteChoice_To(Route(target, None, None))


class WitWorld(wit_world.WitWorld):
    def route(self, ctx: RequestContext) -> RouteDecision:
        bucket = ctx.operation.bucket
        if bucket is None:
            return RouteDecision(RouteChoice_Configured(), CACHE)
        return RouteDecision(choose(ctx.tenant, bucket), CACHE)

    def authorize(self, ctx: RequestContext) -> Authorization:
        return Authorization(Verdict_Allow(), None)
