"""tenant-router, in Python: the same plugin as `../tenant-router/src/lib.rs`, decision for
decision, built to a component by componentize-py (`../build-second-language.sh`).

It sends a tenant's buckets to backends by pattern. Its table is the plugin's `tables`
capability, table `routes`: keys `<tenant>/<bucket pattern>` or `*/<bucket pattern>` (a pattern
is an exact name or a prefix ending in `*`), values `<backend>` or `<backend>/<target bucket>`.
The first key that matches, tenant's own before `*`, longest pattern first, wins; no match
defers to the configured routes. A request without a bucket (ListBuckets) defers too. Route
decisions may be cached for a minute per tenant and bucket; `authorize` always allows. An
instance serves one tenant only: on its first call it reads the tenant and the table
(`tables.entries`) once, keeps the patterns that can apply to that tenant, and a later call
asks only for the bucket.

The Python runtime is initialised when the component is built (componentize-py snapshots it)
and the build replaces WASI with stubs that trap (`--stub-wasi`), as Sluice would: so nothing
here prints, and an uncaught exception (whose traceback goes to stderr) traps, which Sluice
counts as the plugin failing. Hash seeds and `random` are fixed at build time.
"""

from typing import Dict, List, Optional, Tuple

import wit_world
from wit_world.imports import tables
from wit_world.imports.types import (
    Authorization,
    CacheHint,
    ContextFields,
    RequestContext,
    Route,
    RouteChoice_Configured,
    RouteChoice_To,
    RouteDecision,
    Verdict_Allow,
)

# Same tenant and bucket, same answer: for a minute.
CACHE = CacheHint(ttl_ms=60_000, depends_on=ContextFields.TENANT | ContextFields.BUCKET)
# Answers are built once and reused: a call only finds which one applies.
CONFIGURED = RouteDecision(RouteChoice_Configured(), CACHE)
ALLOW = Authorization(Verdict_Allow(), None)


def decision(target: str) -> RouteDecision:
    """The decision for a table value: `<backend>` or `<backend>/<target bucket>` (split at the
    first `/` only, as Rust's `split_once`)."""
    if "/" in target:
        backend, target_bucket = target.split("/", 1)
        return RouteDecision(RouteChoice_To(Route(backend, target_bucket, None)), CACHE)
    return RouteDecision(RouteChoice_To(Route(target, None, None)), CACHE)


class Owner:
    """One owner's patterns (a tenant's, or `*`'s): exact bucket names, and prefixes longest
    first, so that the first prefix a bucket starts with is the one the Rust router finds by
    trying the bucket's own prefixes, longest first."""

    def __init__(self) -> None:
        self.exact: Dict[str, RouteDecision] = {}
        self.prefixes: List[Tuple[str, RouteDecision]] = []

    def find(self, bucket: str) -> Optional[RouteDecision]:
        target = self.exact.get(bucket)
        if target is not None:
            return target
        for prefix, target in self.prefixes:
            if bucket.startswith(prefix):
                return target
        return None


_patterns: Optional[Tuple[Owner, Owner]] = None


def patterns(ctx: RequestContext) -> Tuple[Owner, Owner]:
    """The patterns that apply to this instance's tenant: its own, then `*`'s. Read from table
    `routes` on the instance's first call and kept: an instance serves one tenant only, and
    tables do not change while it lives."""
    global _patterns
    if _patterns is None:
        tenant = ctx.tenant()
        own, anyone = Owner(), Owner()
        for key, target in tables.entries("routes"):
            if "/" not in key:
                continue  # never matches: every key tried is `<owner>/<pattern>`
            owner, pattern = key.split("/", 1)
            if owner == tenant:
                entry = own
            elif owner == "*":
                entry = anyone
            else:
                continue
            if pattern.endswith("*"):
                entry.prefixes.append((pattern[:-1], decision(target)))
            else:
                entry.exact[pattern] = decision(target)
        for entry in (own, anyone):
            entry.prefixes.sort(key=lambda p: len(p[0]), reverse=True)
        _patterns = (own, anyone)
    return _patterns


class WitWorld(wit_world.WitWorld):
    def route(self, ctx: RequestContext) -> RouteDecision:
        bucket = ctx.bucket()
        if bucket is None:
            return CONFIGURED
        for owner in patterns(ctx):
            found = owner.find(bucket)
            if found is not None:
                return found
        return CONFIGURED

    def authorize(self, ctx: RequestContext) -> Authorization:
        return ALLOW
