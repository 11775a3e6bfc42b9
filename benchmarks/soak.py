"""Soak: a real ``conveyor serve`` (prediction log and access log on) at a steady open-loop rate; prints JSON.

``SOAK_S`` seconds (default 600) at ``SOAK_RATE`` requests a second (default 150), the server's RSS
sampled every ``SOAK_SAMPLE_S`` seconds. Growth is measured from the end of the warm-up
(``SOAK_WARMUP_S``, default 60 s: first-use allocations, the prediction log's blocks reaching their
steady size) to the end, and also as the largest sample after warm-up. The target is under 5%.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from overload import Load, free_port, rss_bytes, setup, start_server, stop_server, summary

SECONDS = float(os.environ.get("SOAK_S", "600"))
RATE = float(os.environ.get("SOAK_RATE", "150"))
SAMPLE_S = float(os.environ.get("SOAK_SAMPLE_S", "10"))
WARMUP_S = float(os.environ.get("SOAK_WARMUP_S", "60"))


def main() -> None:
    work = Path(tempfile.mkdtemp())
    env, body = setup(work)
    port = free_port()
    proc = start_server(env, port, work / "server.log")
    samples: list[tuple[float, int]] = []
    load = Load(port, "/invocations", body)

    async def sample() -> None:
        start = time.monotonic()
        while time.monotonic() - start < SECONDS:
            samples.append((time.monotonic() - start, rss_bytes(proc.pid)))
            await asyncio.sleep(SAMPLE_S)
        samples.append((time.monotonic() - start, rss_bytes(proc.pid)))

    async def go() -> None:
        await asyncio.gather(load.open_loop(RATE, SECONDS), sample())
        load.close()

    try:
        asyncio.run(go())
        alive = proc.poll() is None
    finally:
        stop_server(proc)
    after = [(t, rss) for t, rss in samples if t >= WARMUP_S]
    base, last = after[0][1], after[-1][1]
    peak = max(rss for _, rss in after)
    logged = 0
    try:
        from conveyor.serving.prediction_log import read_prediction_log

        logged = read_prediction_log(str(work / "home" / "artifacts"), "bench").num_rows
    except Exception:       # the figure is informative; the soak's verdict is the memory
        pass
    print(json.dumps({
        "benchmark": "soak", "seconds": SECONDS, "rate_per_s": RATE, "warmup_s": WARMUP_S,
        "load": summary(load, SECONDS, RATE), "alive": alive,
        "rss_mb_start": round(samples[0][1] / 2**20, 1), "rss_mb_after_warmup": round(base / 2**20, 1),
        "rss_mb_end": round(last / 2**20, 1), "rss_mb_peak_after_warmup": round(peak / 2**20, 1),
        "rss_growth_after_warmup": round((last - base) / base, 4),
        "rss_peak_growth_after_warmup": round((peak - base) / base, 4),
        "rss_mb_samples": [round(rss / 2**20, 1) for _, rss in samples[:: max(1, len(samples) // 20)]],
        "prediction_log_rows": logged,
        "rss_slope_mb_per_min_after_warmup": round(float(np.polyfit([t for t, _ in after],
                                                                     [r / 2**20 for _, r in after], 1)[0]) * 60, 3)
        if len(after) > 2 else None,
    }))


if __name__ == "__main__":
    main()
