"""glow serve under abuse: 10,000 malformed or truncated requests, clients that stall, then
32 clients at once for 30 seconds. Afterwards the server is alive, answers correctly, and
its memory is back near where it started. ABUSE_REQUESTS and ABUSE_SECONDS shorten it."""
import json
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FMNIST, ROOT, Server, fmnist_test_images, png_decode

REQUESTS = int(os.environ.get("ABUSE_REQUESTS", "10000"))
SECONDS = float(os.environ.get("ABUSE_SECONDS", "30"))


@pytest.fixture(scope="module")
def abused(model):
    s = Server(["--checkpoint", model["checkpoint"], "--attributes", model["attributes"],
                "--data", FMNIST, "--gallery", "100", "--threads", "2"], ROOT)
    yield s
    assert s.stop() == 0


def malformed(rng, k):
    """Request k of the abuse: bytes no correct client sends, or sends only in part. Kinds
    1, 3 and 6 are cut short: their client hangs up without waiting for an answer."""
    good = b"POST /api/manipulate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    kind = k % 12
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600)))
    if kind == 1:  # a request cut anywhere
        full = good + b"Content-Length: 30\r\n\r\n" + b'{"id": "0123456789abcdef"}    '
        return full[:rng.randint(1, len(full) - 1)]
    if kind == 2:
        return rng.choice([b"Content-Length: 99999999999999999999999\r\n\r\n",
                           b"Content-Length: -5\r\n\r\n", b"Content-Length: abc\r\n\r\n",
                           b"Content-Length: 5\r\nContent-Length: 9\r\n\r\nhello",
                           b"Content-Length: 18446744073709551615\r\n\r\n"]).join([good, b""])
    if kind == 3:  # a body announced longer than sent
        return good + b"Content-Length: 5000\r\n\r\n" + b'{"id": ' * rng.randint(0, 50)
    if kind == 4:
        return b"GET /api/info HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * rng.randint(20000, 200000) + b"\r\n\r\n"
    if kind == 5:
        return rng.choice([b"GET /api/info HTTP/9.9\r\n\r\n", b"GET\r\n\r\n", b"GET /\x00x HTTP/1.1\r\n\r\n",
                           b"\r\n\r\n\r\n", b"GET /api/info HTTP/1.1\r\nNo colon here\r\n\r\n",
                           b"BREW /api/info HTTP/1.1\r\nHost: x\r\n\r\n", b"GET  HTTP/1.1\r\n\r\n"])
    if kind == 6:  # broken chunked bodies
        return good + b"Transfer-Encoding: chunked\r\n\r\n" + rng.choice(
            [b"zz\r\n", b"5\r\nab", b"ffffffffffffffffffff\r\n", b"3\r\nabc\r\n-1\r\n", b"0\r\n"])
    if kind == 7:  # well-formed HTTP, hostile JSON
        body = rng.choice([b"[" * 5000, b'{"id": "' + b"\xff" * 50 + b'"}', b'{"a": 1e999}',
                           b'{"id": "\\ud800"}', b'{"alphas": {"' + b"x" * 100000 + b'": 1}}',
                           bytes(rng.getrandbits(8) for _ in range(200))])
        return good + b"Content-Length: %d\r\n\r\n" % len(body) + body
    if kind == 8:
        q = "".join(rng.choice("%&=?n0t1.-x+") for _ in range(rng.randint(0, 80)))
        return b"GET /api/sample?" + q.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    if kind == 9:  # an upload of random bytes
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000)))
        return b"POST /api/encode HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(body) + b"\x89PNG" + body
    if kind == 10:
        return b"GET /api/gallery/" + str(rng.randint(-10**12, 10**12)).encode() + b".png HTTP/1.1\r\n\r\n"
    return b"GET /" + b"../" * rng.randint(1, 3000) + b" HTTP/1.1\r\nHost: x\r\n\r\n"


def send_raw(port, data, hang_up):
    """Send, half-close, read what comes back within 0.5 s (a request left incomplete gets
    nothing): the reply's first line, or b"".
    hang_up: close at once instead (a client that gives up mid-request)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.5)
    out = b""
    try:
        s.sendall(data)
        if hang_up:
            return b""
        s.shutdown(socket.SHUT_WR)
        while len(out) < 64:
            b = s.recv(4096)
            if not b:
                break
            out += b
    except (socket.timeout, OSError):  # reset, or closed by the server before we were done
        pass
    finally:
        s.close()
    return out.split(b"\r\n", 1)[0]


def check_correct(s):
    """The server still answers every route right: an exact reconstruction, a sample."""
    status, _, body = s.post_json("/api/encode", {"gallery": 7})
    assert status == 200, body
    rec = s.request("GET", "/api/image/%s.png" % json.loads(body)["id"])[2]
    assert png_decode(rec)[3] == fmnist_test_images(8)[7]
    assert s.request("GET", "/api/sample?n=4&seed=3")[0] == 200


def warm(s, n=200):
    ids = [json.loads(s.post_json("/api/encode", {"gallery": i})[2])["id"] for i in range(20)]
    for k in range(n):
        s.post_json("/api/manipulate", {"id": ids[k % 20], "alphas": {"Bag": 0.5}})
    return ids


def test_abuse(abused):
    s = abused
    ids = warm(s)
    check_correct(s)
    rss_start = s.rss_kib()

    # 1. Malformed and truncated requests, 16 at a time.
    rng = random.Random(1)
    batch = [malformed(rng, k) for k in range(REQUESTS)]
    t0 = time.time()
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda k: send_raw(s.port, batch[k], k % 12 in (1, 3, 6)),
                                range(REQUESTS)))
    assert s.proc.poll() is None, "the server died"
    statuses = [r.split(b" ")[1] for r in replies if r.startswith(b"HTTP/1.")]
    assert all(not r or r.startswith(b"HTTP/1.") for r in replies)
    # (505: the HTTP/9.9 requests)
    assert not [x for x in statuses if x.startswith(b"5") and x != b"505"], "5xx answers"
    print("(%d malformed requests in %.1f s: %d answered 4xx, the rest dropped; %.1f MiB) "
          % (REQUESTS, time.time() - t0, len(statuses), s.rss_kib() / 1024), end="")

    # The incomplete requests above linger until the idle timeout (10 s) closes them; let
    # it, so that what follows does not depend on how many connections the file limit allows.
    time.sleep(11)

    # 2. Clients that stall mid-request hold no worker, and are dropped after 10 s.
    stalled = []
    for k in range(40):
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"POST /api/manipulate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{" if k % 2
                  else b"GET /api/info HTTP/1.1\r\nHo")
        stalled.append(c)
    t0 = time.time()
    assert s.request("GET", "/api/info", timeout=5)[0] == 200 and time.time() - t0 < 2
    check_correct(s)

    # 3. 32 clients at once, each on its own keep-alive connection.
    stop = time.time() + SECONDS
    counts, bad, lock = [0], [], threading.Lock()

    def client(k):
        import http.client
        r = random.Random(k)
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        while time.time() < stop:
            what = r.random()
            if what < 0.7:
                body = json.dumps({"id": r.choice(ids), "alphas": {"Bag": r.uniform(-1.5, 1.5),
                                                                  "Trouser": r.uniform(-1.5, 1.5)}})
                c.request("POST", "/api/manipulate", body, {"Content-Type": "application/json"})
            elif what < 0.8:
                c.request("POST", "/api/mix", json.dumps({"a": ids[0], "b": r.choice(ids), "t": r.random()}),
                          {"Content-Type": "application/json"})
            elif what < 0.9:
                c.request("GET", "/api/sample?n=4&seed=%d" % r.randint(0, 1000))
            else:
                c.request("GET", "/api/gallery/%d.png" % r.randint(0, 99))
            resp = c.getresponse()
            resp.read()
            with lock:
                counts[0] += 1
                if resp.status != 200:
                    bad.append(resp.status)
        c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, "answers other than 200 under load: %s" % bad[:10]
    print("(32 clients: %d requests in %.0f s; %.1f MiB) " % (counts[0], SECONDS, s.rss_kib() / 1024),
          end="")

    # The stalled connections were closed by the server's idle timeout (10 s).
    time.sleep(max(0.0, 11 - (time.time() - t0)))
    for c in stalled:
        c.settimeout(5)
        try:
            assert c.recv(4096) is not None
        except (socket.timeout, ConnectionResetError):
            pytest.fail("a stalled connection was still open after %.0f s" % (time.time() - t0))
        c.close()

    # 4. Alive, correct, and its memory back near where it started.
    assert s.proc.poll() is None
    check_correct(s)
    time.sleep(0.5)
    rss_end = s.rss_kib()
    print("(memory %.1f MiB before, %.1f MiB after) " % (rss_start / 1024, rss_end / 1024), end="")
    assert rss_end < rss_start + 16 * 1024, "memory grew from %d to %d KiB" % (rss_start, rss_end)
