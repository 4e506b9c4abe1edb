#!/usr/bin/env python3
"""The Python side of okta-sentinel's end-to-end bench: the official Azure Monitor client
(`azure-monitor-ingestion`, from PyPI) uploads BENCH_EVENTS Okta events to the bench's local
Logs Ingestion fake, page by page (1,000 events per `upload()` call, as a page-at-a-time
connector would), so its CPU cost can be compared with the shipper's.

It is started by `okta-sentinel-bench --python …` (see scripts/bench.sh), never by hand:

  BENCH_ENDPOINT     https origin of the fake (the client refuses a bearer token over http)
  BENCH_DCR          DCR immutable id;  BENCH_STREAM: stream name
  BENCH_TOKEN        a bearer token the fake accepts (issued by the bench)
  BENCH_CA           PEM of the test CA that signed the fake's certificate
  BENCH_EVENTS_FILE  JSON array of template events (the fake org's generator)
  BENCH_EVENTS       how many events to upload;  BENCH_PAGE: events per upload() call

At the end it prints one line `RESULT {json}` and then waits for stdin to close, so the bench
can read this process's CPU time and peak RSS from /proc before it exits.
"""

import json
import os
import resource
import sys
import time
import uuid

from azure.core.credentials import AccessToken
from azure.monitor.ingestion import LogsIngestionClient


class StaticToken:
    """A TokenCredential returning the token the bench issued (no identity round trip, so the
    measurement is the client's upload path only)."""

    def __init__(self, token: str, ttl: int = 3600):
        self._token = AccessToken(token, int(time.time()) + ttl)

    def get_token(self, *scopes, **kwargs):  # noqa: ARG002 - the TokenCredential protocol
        return self._token


def main() -> int:
    env = os.environ
    endpoint = env["BENCH_ENDPOINT"]
    n = int(env["BENCH_EVENTS"])
    page = int(env.get("BENCH_PAGE", "1000"))
    with open(env["BENCH_EVENTS_FILE"], encoding="utf-8") as f:
        template = json.load(f)
    client = LogsIngestionClient(
        endpoint,
        StaticToken(env["BENCH_TOKEN"]),
        connection_verify=env["BENCH_CA"],
        logging_enable=False,
    )
    upload_cpu = 0.0
    sent = 0
    wall0 = time.perf_counter()
    while sent < n:
        k = min(page, n - sent)
        # Building the page (fresh uuids, as distinct events) is not counted as upload CPU.
        batch = []
        for i in range(k):
            event = dict(template[(sent + i) % len(template)])
            event["uuid"] = str(uuid.uuid4())
            batch.append(event)
        c0 = time.process_time()
        client.upload(rule_id=env["BENCH_DCR"], stream_name=env["BENCH_STREAM"], logs=batch)
        upload_cpu += time.process_time() - c0
        sent += k
    wall = time.perf_counter() - wall0
    client.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "events": sent,
        "upload_wall_secs": wall,
        "upload_cpu_secs": upload_cpu,
        "process_cpu_secs": ru.ru_utime + ru.ru_stime,
        "max_rss_kib": ru.ru_maxrss,
        "python": sys.version.split()[0],
    }
    try:
        from importlib.metadata import version

        result["azure_monitor_ingestion"] = version("azure-monitor-ingestion")
        result["azure_core"] = version("azure-core")
    except Exception:  # pylint: disable=broad-except
        pass
    print("RESULT " + json.dumps(result), flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
