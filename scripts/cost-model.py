#!/usr/bin/env python3
"""The monthly bill of one org, from what `okta-sentinel-bench --steady RATE --json F` measured.

    target/release/okta-sentinel-bench --steady 5 --measure 180s --json .local/cost/steady-5.json
    scripts/cost-model.py .local/cost/steady-*.json

Prints, per file, the measured figures per day and the monthly bill at the list prices below.
The prices are inputs, not measurements: they vary by region and change; put your region's in
PRICES (BENCHMARKS.md, "Cost model", says where these come from and when).
"""

import json
import sys

DAYS_PER_MONTH = 30.4

# USD. See BENCHMARKS.md "Cost model" for the source and date of each figure.
PRICES = {
    "la_analytics_per_gb": 2.30,
    "la_basic_per_gb": 0.50,
    "blob_write_per_10k": 0.050,  # Put Blob, Put Block, lease, Create; hot tier, LRS
    "blob_read_per_10k": 0.004,  # Get Blob, Get Properties (List Blobs is billed as a write)
    "queue_op_per_10k": 0.004,  # every queue operation, GPv2 LRS
    "aca_vcpu_second": 0.000024,  # Container Apps consumption plan, active rate
    "aca_gib_second": 0.000003,
}

# What infra/ allocates (infra/modules/apps.bicep): one collector replica of 0.25 vCPU and
# 0.5 GiB, and (shipperMinReplicas = 1) one shipper replica of shipperCpu = 0.25 vCPU and 0.5 GiB
# (the default), always on.
ALLOCATED_VCPU = 0.25 + 0.25
ALLOCATED_GIB = 0.5 + 0.5
SECONDS_PER_MONTH = DAYS_PER_MONTH * 86_400
FREE_VCPU_SECONDS = 180_000  # per subscription and month (learn.microsoft.com/azure/container-apps/billing)
FREE_GIB_SECONDS = 360_000


def storage_cost_per_day(kinds):
    """(writes, reads, queue ops, dollars) of one process's storage requests per day."""
    writes = reads = queue = 0.0
    for kind, n in kinds.items():
        if kind.startswith("queue"):
            queue += n
        elif kind.startswith("blob DELETE"):
            reads += n  # deletes are free on the hot tier; counted with the cheap class to be safe
        elif kind.startswith("blob GET comp=list") or kind.startswith("blob PUT") or "lease" in kind:
            writes += n
        else:
            reads += n
    dollars = (
        writes / 1e4 * PRICES["blob_write_per_10k"]
        + reads / 1e4 * PRICES["blob_read_per_10k"]
        + queue / 1e4 * PRICES["queue_op_per_10k"]
    )
    return writes, reads, queue, dollars


def container_apps_per_month():
    vcpu = max(0.0, ALLOCATED_VCPU * SECONDS_PER_MONTH - FREE_VCPU_SECONDS)
    gib = max(0.0, ALLOCATED_GIB * SECONDS_PER_MONTH - FREE_GIB_SECONDS)
    return vcpu * PRICES["aca_vcpu_second"] + gib * PRICES["aca_gib_second"]


def main(paths):
    aca = container_apps_per_month()
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        gb_day = d["la_bytes_uncompressed_per_day"] / 1e9
        c = storage_cost_per_day(d["collector_storage_per_day"])
        s = storage_cost_per_day(d["shipper_storage_per_day"])
        storage_month = (c[3] + s[3]) * DAYS_PER_MONTH
        analytics = gb_day * DAYS_PER_MONTH * PRICES["la_analytics_per_gb"]
        basic = gb_day * DAYS_PER_MONTH * PRICES["la_basic_per_gb"]
        lat = d.get("latency_secs", {})
        print(f"== {d['rate_events_per_sec']:g} events/s ({path})")
        print(
            f"  Okta {d['okta_requests_per_day']:,.0f} requests/day"
            f" ({d['okta_requests_per_min'] / 120 * 100:.1f} % of 120/min)"
        )
        print(
            f"  storage/day: collector {sum(d['collector_storage_per_day'].values()):,.0f},"
            f" shipper {sum(d['shipper_storage_per_day'].values()):,.0f}"
        )
        print(
            f"  Log Analytics {d['la_requests_per_day']:,.0f} requests/day,"
            f" {gb_day:.3f} GB/day"
        )
        print(
            f"  CPU-s/day: collector {d['collector_cpu_secs_per_day']:.0f},"
            f" shipper {d['shipper_cpu_secs_per_day']:.0f}"
        )
        if lat:
            print(f"  latency p50 {lat['p50']:.1f} s, p95 {lat['p95']:.1f} s over {lat['rows']} rows")
        print(
            f"  per month: ingestion ${analytics:,.2f} (Analytics) / ${basic:,.2f} (Basic),"
            f" storage transactions ${storage_month:,.2f}, Container Apps ${aca:,.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
