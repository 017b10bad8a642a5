#!/usr/bin/env python3
"""Turns sluice-bench result lines into the benchmark report: a Markdown table of every
scenario (median of the rounds), the ratios the issue asks for, and an SVG bar chart.

    report.py RESULTS.txt OUT.md OUT.svg

Each input line is what `sluice-bench` prints: `label key=value key=value ...`; labels look
like `<scenario>/<system>/r<round>` (e.g. `get-4KiB-c64/sluice-tls/r2`).
"""
import os
import statistics
import sys
from collections import defaultdict


def parse(path):
    runs = defaultdict(list)  # (scenario, system) -> [dict]
    for line in open(path):
        parts = line.split()
        if not parts or "/" not in parts[0] or "=" in parts[0]:
            continue
        scenario, system, _round = parts[0].split("/")
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        runs[(scenario, system)].append(fields)
    return runs


def median(runs, key):
    values = [float(r[key]) for r in runs if r.get(key, "-") not in ("-", "")]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def main(src, out_md, out_svg):
    runs = parse(src)
    scenarios = sorted({s for s, _ in runs if s not in ("setup", "warm")})
    rows = []
    for scenario in scenarios:
        for (s, system), rs in sorted(runs.items()):
            if s != scenario:
                continue
            rows.append({
                "scenario": scenario,
                "system": system,
                "rounds": len(rs),
                "rps": median(rs, "req_per_s"),
                "mbps": median(rs, "MB_per_s"),
                "p50": median(rs, "p50_ms"),
                "p99": median(rs, "p99_ms"),
                "errors": sum(int(r.get("errors", 0)) for r in rs),
                "rss": max((float(r["server_peak_rss_mib"]) for r in rs if r.get("server_peak_rss_mib", "-") != "-"), default=None),
                "cpu": median(rs, "server_cpu_s"),
            })

    def ratio(scenario, a, b, key):
        """Median over rounds of a/b, pairing round i of a with round i of b (A B A B)."""
        ra, rb = runs.get((scenario, a)), runs.get((scenario, b))
        if not ra or not rb:
            return None
        pairs = [float(x[key]) / float(y[key]) for x, y in zip(ra, rb) if float(y[key]) > 0]
        return statistics.median(pairs) if pairs else None

    lines = ["# Sluice benchmark", "", f"Raw results: `{os.path.basename(out_md)[:-3]}.txt` beside this file (medians over rounds; rounds alternate systems; produced by `tests/bench/run.sh`).", ""]
    lines += ["| scenario | system | rounds | req/s | MB/s | p50 ms | p99 ms | errors | server peak RSS MiB | server CPU s |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['system']} | {r['rounds']} | {fmt(r['rps'])} | {fmt(r['mbps'])} | {fmt(r['p50'], 2)} | {fmt(r['p99'], 2)} | {r['errors']} | {fmt(r['rss'])} | {fmt(r['cpu'], 2)} |")
    lines += ["", "## Ratios (median of per-round ratios)", "", "| scenario | comparison | metric | ratio | goal |", "| --- | --- | --- | ---: | --- |"]
    # The large-object scenarios' names (their size is the run's); found in the local or the
    # upstream scenarios, whichever ran.
    plain_name = lambda s: s.removeprefix("upstream-").removeprefix("enc-")
    large = lambda op: next((plain_name(s) for s in scenarios
                             if plain_name(s).startswith(op + "-") and "4KiB" not in s), "")
    big_get, big_put = large("get"), large("put")
    goals = [
        ("get-4KiB-c64", "sluice", "nginx-proxy", "req_per_s", "≥ 1.0"),
        ("get-4KiB-c64", "sluice-tls", "nginx-proxy-tls", "req_per_s", "≥ 1.0"),
        ("get-4KiB-c64", "nginx-proxy", "nginx-static", "req_per_s", "(reference)"),
        ("get-4KiB-c64", "sluice", "nginx-static", "req_per_s", "(reference)"),
        (big_get, "sluice-tls", "nginx-proxy-tls", "MB_per_s", "≥ 1.0"),
        (big_get, "sluice", "nginx-proxy", "MB_per_s", "(reference)"),
        (big_put, "sluice", "nginx-proxy", "MB_per_s", "(reference)"),
        (big_put, "sluice-tls", "nginx-proxy-tls", "MB_per_s", "(reference)"),
        ("upstream-get-4KiB-c64", "sluice-tls", "nginx-proxy-tls", "req_per_s", "≥ 1.0"),
        ("upstream-get-4KiB-c64", "sluice-tls", "direct-tls", "req_per_s", "(reference)"),
        ("upstream-" + big_get, "sluice-tls", "direct-tls", "MB_per_s", "≥ 0.9"),
        ("upstream-" + big_get, "sluice-tls", "nginx-proxy-tls", "MB_per_s", "(reference)"),
        ("upstream-" + big_put, "sluice-tls", "direct-tls", "MB_per_s", "≥ 0.9"),
        ("upstream-" + big_put, "sluice-tls", "nginx-proxy-tls", "MB_per_s", "(reference)"),
        ("plugins-get-4KiB-c64", "plugins-1", "plugins-0", "req_per_s", "≥ 0.95"),
        ("plugins-get-4KiB-c64", "plugins-3", "plugins-0", "req_per_s", "(reference)"),
        ("plugins-get-4KiB-c64", "plugins-c", "plugins-0", "req_per_s", "(reference)"),
        ("enc-get-4KiB-c64", "encrypted", "plaintext", "req_per_s", "≥ 0.8"),
        ("enc-" + big_get, "encrypted", "plaintext", "MB_per_s", "≥ 0.8"),
        ("enc-" + big_put, "encrypted", "plaintext", "MB_per_s", "≥ 0.8"),
        ("enc-upstream-get-4KiB-c64", "encrypted-up", "plaintext-up", "req_per_s", "≥ 0.8"),
        ("enc-upstream-" + big_get, "encrypted-up", "plaintext-up", "MB_per_s", "≥ 0.8"),
        ("enc-upstream-" + big_put, "encrypted-up", "plaintext-up", "MB_per_s", "≥ 0.8"),
    ]
    for scenario, a, b, key, goal in goals:
        r = ratio(scenario, a, b, key)
        if r is not None:
            lines.append(f"| {scenario} | {a} / {b} | {key} | {r:.2f} | {goal} |")
    for scenario in [s for s in scenarios if s.startswith("enc-range-")]:
        reads = {system: median(rs, "server_read_kib_per_request")
                 for (sc, system), rs in runs.items() if sc == scenario}
        lines.append("")
        lines.append(f"{scenario}: the server read {fmt(reads.get('encrypted'))} KiB per request with "
                     f"encryption, {fmt(reads.get('plaintext'))} KiB without (all read(2) calls: "
                     f"its files and the request itself).")
    idle = [r for r in rows if r["scenario"].startswith("idle")]
    for r in idle:
        lines.append("")
        lines.append(f"Idle keep-alive connections ({r['scenario']}): Sluice peak RSS {fmt(r['rss'])} MiB.")
    open(out_md, "w").write("\n".join(lines) + "\n")
    open(out_svg, "w").write(svg(rows))


def svg(rows):
    """Two bar charts side by side: req/s for small-object scenarios, MB/s for large ones."""
    plain = lambda r: r["scenario"].removeprefix("upstream-")
    groups = [("req/s", [r for r in rows if r["rps"] and plain(r).startswith("get-4KiB")], "rps"),
              ("MB/s", [r for r in rows if r["mbps"] and plain(r).split("-")[0] in ("get", "put") and "MiB" in r["scenario"]], "mbps")]
    width, bar_h, gap, left = 900, 18, 6, 260
    height = 40 + sum(30 + len(g[1]) * (bar_h + gap) for g in groups)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="22" font-size="16" font-weight="bold">Sluice vs nginx (median of rounds)</text>']
    y = 40
    for title, rs, key in groups:
        out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{title}</text>')
        y += 24
        top = max((r[key] for r in rs), default=1) or 1
        for r in rs:
            w = (width - left - 90) * r[key] / top
            color = "#2b6cb0" if r["system"].startswith("sluice") else "#a0aec0"
            out.append(f'<text x="10" y="{y + 13}">{r["scenario"]} · {r["system"]}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{r[key]:,.0f}</text>')
            y += bar_h + gap
        y += 6
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main(*sys.argv[1:4])
