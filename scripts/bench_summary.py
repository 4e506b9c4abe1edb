#!/usr/bin/env python3
"""Summaries of okta-sentinel's end-to-end bench (scripts/bench.sh; BENCHMARKS.md).

  bench_summary.py run JSON LOAD_BEFORE LOAD_AFTER
      one run: records the machine's load average around it in JSON and prints the run's
      figures, with the Python client's CPU over the shipper's in this same run (issue 14);
  bench_summary.py runs OUT JSON [JSON ...]
      several runs: one line each, then the median and range of every figure, also written
      to OUT. A goal is judged on the median and range of the same-run ratio over at least
      three runs, never on one run or on a figure measured in another hour.
"""

import json
import statistics
import sys

# (key, heading, format) of each figure of a run; `ratio` only when the Python client ran.
FIGURES = [
    ("ratio", "python/shipper CPU", "{:.2f}x"),
    ("shipper_cpu_per_100k", "shipper CPU-s/100k", "{:.3f}"),
    ("python_cpu_per_100k", "python CPU-s/100k", "{:.3f}"),
    ("shipper_events_per_sec", "shipper events/s", "{:,.0f}"),
    ("shipper_peak_rss_mib", "shipper RSS MiB", "{:.1f}"),
    ("collector_cpu_per_100k", "collector CPU-s/100k", "{:.3f}"),
    ("collector_events_per_sec", "collector events/s", "{:,.0f}"),
]


def figures(d):
    """The figures of one run's JSON (as okta-sentinel-bench writes it)."""
    s, c, p = d["shipper"], d["collector"], d.get("python")
    f = {
        "shipper_cpu_per_100k": s["cpu_secs_per_100k_events"],
        "shipper_events_per_sec": s["events_per_sec"],
        "shipper_peak_rss_mib": s["peak_rss_mib"],
        "collector_cpu_per_100k": c["cpu_secs_per_100k_events"],
        "collector_events_per_sec": c["events_per_sec"],
    }
    if p:
        pp = p["process"]
        f["python_cpu_per_100k"] = pp["cpu_secs_per_100k_events"]
        # Both processes handled the same events: the ratio of their CPU seconds.
        f["ratio"] = pp["cpu_secs"] / max(s["cpu_secs"], 1e-9)
    return f


def one_run(path, load_before, load_after):
    with open(path, encoding="utf-8") as fh:
        d = json.load(fh)
    d["load_average"] = {"before": load_before, "after": load_after}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(d, fh, indent=2)
    f = figures(d)
    print(f"load average before: {load_before}")
    print(f"load average after:  {load_after}")
    print(
        f"collector: {f['collector_cpu_per_100k']:.3f} CPU s per 100k events, "
        f"{f['collector_events_per_sec']:.0f} events/s, "
        f"peak RSS {d['collector']['peak_rss_mib']:.1f} MiB"
    )
    print(
        f"shipper:   {f['shipper_cpu_per_100k']:.3f} CPU s per 100k events, "
        f"{f['shipper_events_per_sec']:.0f} events/s, "
        f"peak RSS {f['shipper_peak_rss_mib']:.1f} MiB"
    )
    if "ratio" in f:
        print(f"python:    {f['python_cpu_per_100k']:.3f} CPU s per 100k events")
        print(f"python CPU / shipper CPU (same run): {f['ratio']:.2f}x (goal >= 8)")


def many_runs(out, paths):
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
        runs.append({"file": path, "load_average": d.get("load_average"), **figures(d)})
    keys = [k for k, _, _ in FIGURES if all(k in r for r in runs)]
    summary = {}
    for k in keys:
        values = [r[k] for r in runs]
        summary[k] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"runs": runs, "summary": summary}, fh, indent=2)

    fmt = {k: f for k, _, f in FIGURES}
    head = {k: h for k, h, _ in FIGURES}
    widths = {k: max(len(head[k]), 12) for k in keys}
    print("run    " + "  ".join(head[k].rjust(widths[k]) for k in keys) + "  load before → after")
    for i, r in enumerate(runs, 1):
        cells = "  ".join(fmt[k].format(r[k]).rjust(widths[k]) for k in keys)
        load = r["load_average"] or {}
        print(f"{i:<7}{cells}  {load.get('before', '?')} → {load.get('after', '?')}")
    for pick in ("median", "min", "max"):
        cells = "  ".join(fmt[k].format(summary[k][pick]).rjust(widths[k]) for k in keys)
        print(f"{pick:<7}{cells}")
    if "ratio" in summary:
        r = summary["ratio"]
        print(
            f"python CPU / shipper CPU over {len(runs)} runs: median {r['median']:.2f}x "
            f"(range {r['min']:.2f}–{r['max']:.2f}x; goal >= 8)"
        )
        if len(runs) < 3:
            print("note: a goal needs at least three runs")


def main(argv):
    if len(argv) == 5 and argv[1] == "run":
        one_run(argv[2], argv[3], argv[4])
        return 0
    if len(argv) >= 4 and argv[1] == "runs":
        many_runs(argv[2], argv[3:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
