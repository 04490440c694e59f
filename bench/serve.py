#!/usr/bin/python3
"""glow serve's figures on a trained model (docs/PERFORMANCE.md, the README):
  bench/serve.py CHECKPOINT DIRECTIONS.npz [--seconds S] [--batch B] [--screenshot FILE]
- the time of POST /api/manipulate, median and 95th percentile, for 1 client and for 32
  (the round trip as the client sees it, and the server's own time from Server-Timing);
- requests per second with 32 clients;
- what batching would gain: the server's time per image of /api/sample at n = 1 and n = 16
  (one decode pass of a batch of that size);
- the server's peak memory (VmHWM).
With --screenshot, the page test (tests/browser/page.mjs) runs against the same server and
saves its screenshot there. Run it on a quiet machine."""
import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "serve"))
from conftest import FMNIST, Server  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def server_ms(resp):
    return float(re.search(r"dur=([\d.]+)", resp.getheader("Server-Timing")).group(1))


def manipulate_load(port, ids, names, clients, seconds):
    """Each client posts manipulations on its own keep-alive connection for `seconds`:
    (round-trip ms, server ms, requests)."""
    rtt, srv, lock = [], [], threading.Lock()
    stop = time.time() + seconds

    def client(k):
        r = random.Random(k)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine_rtt, mine_srv = [], []
        while time.time() < stop:
            body = json.dumps({"id": r.choice(ids),
                               "alphas": {n: r.uniform(-1.5, 1.5) for n in r.sample(names, 2)}})
            t0 = time.perf_counter()
            c.request("POST", "/api/manipulate", body, {"Content-Type": "application/json"})
            resp = c.getresponse()
            resp.read()
            assert resp.status == 200
            mine_rtt.append((time.perf_counter() - t0) * 1e3)
            mine_srv.append(server_ms(resp))
        with lock:
            rtt.extend(mine_rtt)
            srv.extend(mine_srv)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rtt, srv, len(rtt) / (time.time() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("directions")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--screenshot")
    ap.add_argument("--batch", type=int, default=16, help="glow serve --batch")
    a = ap.parse_args()
    s = Server(["--checkpoint", a.checkpoint, "--attributes", a.directions, "--data", FMNIST,
                "--batch", str(a.batch)], ROOT)
    try:
        info = json.loads(s.request("GET", "/api/info")[2])
        ids = [json.loads(s.post_json("/api/encode", {"gallery": i})[2])["id"] for i in range(32)]
        names = info["attributes"]
        manipulate_load(s.port, ids, names, 1, 2)  # warm up
        out = {"model": "%s: L=%d K=%d width %d, %d parameters, step %d" % (
            info["checkpoint"], info["levels"], info["depth"], info["width"], info["parameters"],
            info["step"]), "threads": info["workers"], "batch": info["batch"]}
        for clients in (1, 32):
            rtt, srv, rps = manipulate_load(s.port, ids, names, clients, a.seconds)
            out["clients_%d" % clients] = {
                "requests": len(rtt), "requests_per_s": round(rps, 1),
                "rtt_ms_median": round(statistics.median(rtt), 2), "rtt_ms_p95": round(pct(rtt, 95), 2),
                "server_ms_median": round(statistics.median(srv), 2), "server_ms_p95": round(pct(srv, 95), 2)}
        per_image = {}
        for n in (1, 16):
            times = []
            for k in range(40):
                c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
                c.request("GET", "/api/sample?n=%d&seed=%d" % (n, k))
                resp = c.getresponse()
                resp.read()
                times.append(server_ms(resp) / n)
            per_image[n] = statistics.median(times)
        out["sample_ms_per_image"] = {"n=1": round(per_image[1], 2), "n=16": round(per_image[16], 2),
                                      "batch_gain": round(per_image[1] / per_image[16], 2)}
        if a.screenshot:
            upload = os.path.join(ROOT, "build", "bench-upload.png")
            with open(upload, "wb") as f:  # a gallery image, as a user would upload it
                f.write(s.request("GET", "/api/gallery/17.png")[2])
            r = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "page.mjs"), s.url,
                                a.screenshot, upload], capture_output=True, text=True, timeout=180)
            print(r.stdout + r.stderr, file=sys.stderr)
        with open("/proc/%d/status" % s.proc.pid) as f:
            out["peak_rss_mib"] = round(int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024, 1)
        info = json.loads(s.request("GET", "/api/info")[2])
        out["decodes_per_batch"] = round(info["decodes"] / max(1, info["decode_batches"]), 2)
        print(json.dumps(out, indent=1))
    finally:
        s.stop()


if __name__ == "__main__":
    main()
