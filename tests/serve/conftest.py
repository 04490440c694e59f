"""glow serve on a small model trained on the spot: the fixtures the API, abuse and
browser tests share. The server is the real binary on a free port; requests are real HTTP
(http.client, which never goes through a proxy)."""
import http.client
import json
import os
import re
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GLOW = os.path.join(ROOT, "glow")
FMNIST = "/usr/share/datasets/fashion-mnist"


def run(*args):
    subprocess.run([GLOW, *args], check=True, capture_output=True, cwd=ROOT)


@pytest.fixture(scope="session")
def model(tmp_path_factory):
    """A 2-level, 2-step model after 30 steps, and its class directions."""
    d = tmp_path_factory.mktemp("serve")
    run("train", "--depth", "2", "--width", "16", "--batch", "16", "--init-batch", "32",
        "--eval-n", "64", "--sample-every", "0", "--steps", "30", "--threads", "1",
        "--out", str(d))
    run("attributes", "--checkpoint", str(d / "checkpoint.glow"), "--n", "2000",
        "--out", str(d / "dirs.npz"))
    return {"checkpoint": str(d / "checkpoint.glow"), "attributes": str(d / "dirs.npz"),
            "dir": d}


class Server:
    """A running glow serve: its process, port, and a request helper."""

    def __init__(self, args, cwd):
        self.proc = subprocess.Popen([GLOW, "serve", "--port", "0", *args], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("glow serve did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d/" % self.port

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers dict with lower-case names, body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def post_json(self, path, obj):
        return self.request("POST", path, json.dumps(obj), {"Content-Type": "application/json"})

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(model):
    s = Server(["--checkpoint", model["checkpoint"], "--attributes", model["attributes"],
                "--data", FMNIST, "--gallery", "100", "--threads", "2"], ROOT)
    yield s
    assert s.stop() == 0, "glow serve did not stop cleanly on SIGTERM"


def wait_until(pred, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def png_decode(data):
    """(height, width, channels, pixel bytes) of an 8-bit gray or RGB PNG, not interlaced."""
    import struct
    import zlib
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, head = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, color, _, _, interlace = head
    assert depth == 8 and color in (0, 2) and interlace == 0
    c = 1 if color == 0 else 3
    raw, stride, out, prev = zlib.decompress(idat), w * c, bytearray(), bytearray(w * c)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - c] if i >= c else 0
            b, cc = prev[i], prev[i - c] if i >= c else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else cc)) & 255
        out += line
        prev = line
    return h, w, c, bytes(out)


def png_encode(h, w, c, pixels):
    """A PNG of (h, w, c) 8-bit pixels, c = 1 or 3."""
    import struct
    import zlib
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\x00" + pixels[y * w * c:(y + 1) * w * c] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def fmnist_test_images(n):
    """The first n Fashion-MNIST test images, 784 bytes each."""
    import gzip
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        data = f.read(16 + 784 * n)
    return [data[16 + 784 * i:16 + 784 * (i + 1)] for i in range(n)]
