"""Every route of glow serve's API (docs/API.md) and every error it promises, over real
HTTP on a small model."""
import json
import re
import socket
import subprocess
import time

import pytest

from conftest import FMNIST, GLOW, ROOT, Server, png_decode, png_encode, fmnist_test_images


def error_of(status_headers_body):
    status, headers, body = status_headers_body
    assert headers["content-type"] == "application/json"
    return status, json.loads(body)["error"]


def encode_gallery(server, i):
    status, _, body = server.post_json("/api/encode", {"gallery": i})
    assert status == 200, body
    return json.loads(body)


def test_page(server):
    status, headers, body = server.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"glow explorer" in body and b"/api/manipulate" in body


def test_info(server, model):
    status, headers, body = server.request("GET", "/api/info")
    info = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert info["image"] == {"height": 28, "width": 28, "channels": 1}
    assert (info["levels"], info["depth"], info["width"], info["latent_dim"]) == (2, 2, 16, 784)
    assert info["attributes"][:2] == ["T-shirt/top", "Trouser"] and len(info["attributes"]) == 10
    assert info["gallery"] == 100 and len(info["gallery_labels"]) == 100
    assert info["class_names"][9] == "Ankle boot" and info["max_samples"] == 64


def test_sample(server):
    status, headers, body = server.request("GET", "/api/sample?temperature=0.5&n=4&seed=7")
    assert status == 200 and headers["content-type"] == "image/png"
    assert re.match(r"app;dur=[\d.]+", headers["server-timing"])
    h, w, c, px = png_decode(body)
    assert (h, w, c) == (58, 58, 1)  # a 2x2 grid of 28x28, 2 pixels apart
    again = server.request("GET", "/api/sample?temperature=0.5&n=4&seed=7")[2]
    other = server.request("GET", "/api/sample?temperature=0.5&n=4&seed=8")[2]
    assert png_decode(again)[3] == px and png_decode(other)[3] != px
    cold = png_decode(server.request("GET", "/api/sample?temperature=0&n=4&seed=7")[2])[3]
    assert cold != px
    assert png_decode(server.request("GET", "/api/sample")[2])[:2] == (118, 118)  # 16 by default


@pytest.mark.parametrize("query, what", [
    ("n=0", "n '0'"), ("n=65", "n '65'"), ("n=2.5", "n '2.5'"), ("n=", "n ''"),
    ("temperature=-1", "temperature"), ("temperature=abc", "temperature"),
    ("temperature=nan", "temperature"), ("temperature=3", "temperature"),
    ("seed=1.5", "seed"), ("seed=-1", "seed"), ("colour=red", "unknown query parameter 'colour'"),
    ("n=%zz", "malformed"), ("n", "malformed")])
def test_sample_refuses(server, query, what):
    status, msg = error_of(server.request("GET", "/api/sample?" + query))
    assert status == 400 and what in msg, msg


def test_gallery_is_the_test_set(server):
    images = fmnist_test_images(3)
    for i in range(3):
        status, headers, body = server.request("GET", "/api/gallery/%d.png" % i)
        assert status == 200 and headers["content-type"] == "image/png"
        assert png_decode(body) == (28, 28, 1, images[i])


@pytest.mark.parametrize("name", ["100.png", "-1.png", "01.png", "abc.png", "5.jpg", "5",
                                  "99999999999999999999.png"])
def test_gallery_refuses(server, name):
    status, msg = error_of(server.request("GET", "/api/gallery/" + name))
    assert status == 404 and "gallery" in msg


def test_encode_and_exact_reconstruction(server):
    images = fmnist_test_images(5)
    e = encode_gallery(server, 4)
    assert re.fullmatch(r"[0-9a-f]{16}", e["id"]) and 0 < e["bits_per_dim"] < 9
    assert encode_gallery(server, 4)["id"] == e["id"]  # cached, not encoded again
    status, headers, body = server.request("GET", "/api/image/%s.png" % e["id"])
    assert status == 200 and png_decode(body) == (28, 28, 1, images[4])  # exactly


def test_upload_png_as_the_gallery(server):
    """A PNG of a gallery image encodes to the same bits/dim and reconstructs exactly."""
    png = server.request("GET", "/api/gallery/2.png")[2]
    status, _, body = server.request("POST", "/api/encode", png, {"Content-Type": "image/png"})
    up = json.loads(body)
    assert status == 200 and up["id"] != encode_gallery(server, 2)["id"]
    assert abs(up["bits_per_dim"] - encode_gallery(server, 2)["bits_per_dim"]) < 1e-6
    assert png_decode(server.request("GET", "/api/image/%s.png" % up["id"])[2])[3] == \
        fmnist_test_images(3)[2]


def test_upload_rgb_of_another_size(server):
    """RGB 40x60: cropped to the centred 40x40, resized to 28x28, turned to gray."""
    h, w = 40, 60
    px = bytes((x * 4 + y * 2 + k * 50) % 256 for y in range(h) for x in range(w) for k in range(3))
    status, _, body = server.request("POST", "/api/encode", png_encode(h, w, 3, px),
                                     {"Content-Type": "image/png"})
    assert status == 200, body
    rec = server.request("GET", "/api/image/%s.png" % json.loads(body)["id"])[2]
    assert png_decode(rec)[:3] == (28, 28, 1)


@pytest.mark.parametrize("body, what", [
    (b"not an image", "neither PNG nor JPEG"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image data"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "image data"),
    (b"", "empty body")])
def test_upload_refused_with_the_decoders_reason(server, body, what):
    status, msg = error_of(server.request("POST", "/api/encode", body,
                                          {"Content-Type": "image/png"}))
    assert status == 400 and what in msg, msg


def test_upload_truncated_png(server):
    png = server.request("GET", "/api/gallery/1.png")[2]
    status, msg = error_of(server.request("POST", "/api/encode", png[:len(png) // 2],
                                          {"Content-Type": "image/png"}))
    assert status == 400 and msg.startswith("image data"), msg


@pytest.mark.parametrize("body, status, what", [
    ({"gallery": 100}, 404, "no gallery image 100"), ({"gallery": -1}, 404, "no gallery image"),
    ({"gallery": 1.5}, 400, "whole number"), ({"gallery": "1"}, 400, "whole number"),
    ({}, 400, "gallery"), ([1], 400, "JSON object")])
def test_encode_json_refuses(server, body, status, what):
    got, msg = error_of(server.post_json("/api/encode", body))
    assert got == status and what in msg, msg


def test_manipulate(server):
    e = encode_gallery(server, 0)
    recon = server.request("GET", "/api/image/%s.png" % e["id"])[2]
    status, headers, none = server.post_json("/api/manipulate", {"id": e["id"], "alphas": {}})
    assert status == 200 and png_decode(none) == png_decode(recon)
    status, headers, moved = server.post_json("/api/manipulate",
                                              {"id": e["id"], "alphas": {"Trouser": 1.0}})
    assert status == 200 and headers["content-type"] == "image/png" and "server-timing" in headers
    assert png_decode(moved)[3] != png_decode(recon)[3]
    both = server.post_json("/api/manipulate", {"id": e["id"], "alphas": {"Trouser": 1.0, "Bag": -0.5}})[2]
    assert png_decode(both)[3] not in (png_decode(moved)[3], png_decode(recon)[3])
    assert server.post_json("/api/manipulate", {"id": e["id"]})[0] == 200  # no alphas: as is


@pytest.mark.parametrize("body, status, what", [
    ('{"id": "@", "alphas": {"Nope": 1}}', 400, "unknown attribute 'Nope'"),
    ('{"id": "@", "alphas": {"Trouser": "x"}}', 400, "alpha of 'Trouser'"),
    ('{"id": "@", "alphas": {"Trouser": 11}}', 400, "alpha of 'Trouser'"),
    ('{"id": "@", "alphas": {"Trouser": 1e999}}', 400, "number out of range"),
    ('{"id": "@", "alphas": {"Trouser": NaN}}', 400, "malformed JSON"),
    ('{"id": "@", "alphas": [1]}', 400, "\"alphas\": expected an object"),
    ('{"id": "@", "alphas": {"Trouser": 1,}}', 400, "malformed JSON"),
    ('{"id": "@"', 400, "malformed JSON"), ('', 400, "malformed JSON"),
    ('"just a string"', 400, "JSON object"), ('{"alphas": {}}', 400, "\"id\": expected"),
    ('{"id": 12}', 400, "\"id\": expected"),
    ('{"id": "0123456789abcdef"}', 404, "no encoded image"),
    ('{"id": "not hex at all!"}', 404, "no encoded image")])
def test_manipulate_refuses(server, body, status, what):
    body = body.replace("@", encode_gallery(server, 0)["id"])
    got, msg = error_of(server.request("POST", "/api/manipulate", body,
                                       {"Content-Type": "application/json"}))
    assert got == status and what in msg, msg


def test_mix(server):
    a, b = encode_gallery(server, 5), encode_gallery(server, 6)
    ra, rb = (png_decode(server.request("GET", "/api/image/%s.png" % x["id"])[2]) for x in (a, b))
    at = lambda t: png_decode(server.post_json("/api/mix", {"a": a["id"], "b": b["id"], "t": t})[2])
    assert at(0) == ra and at(1) == rb and at(0.5) not in (ra, rb)


@pytest.mark.parametrize("body, status, what", [
    ({"a": "@", "b": "@", "t": 1.5}, 400, "\"t\""), ({"a": "@", "b": "@"}, 400, "\"t\""),
    ({"a": "@", "b": "@", "t": "0.5"}, 400, "\"t\""), ({"a": "@", "t": 0.5}, 400, "\"b\""),
    ({"a": "@", "b": "ffffffffffffffff", "t": 0.5}, 404, "\"b\": no encoded image")])
def test_mix_refuses(server, body, status, what):
    i = encode_gallery(server, 0)["id"]
    body = {k: (i if v == "@" else v) for k, v in body.items()}
    got, msg = error_of(server.post_json("/api/mix", body))
    assert got == status and what in msg, msg


@pytest.mark.parametrize("method, path, allow", [
    ("POST", "/api/info", "GET"), ("GET", "/api/encode", "POST"), ("DELETE", "/api/mix", "POST"),
    ("PUT", "/api/sample", "GET")])
def test_wrong_method(server, method, path, allow):
    status, headers, body = server.request(method, path)
    assert status == 405 and headers["allow"] == allow


@pytest.mark.parametrize("path", ["/nothing", "/api", "/api/", "/api/images/x.png",
                                  "/api/image/", "/api/image/123.png", "/" + "a" * 300])
def test_unknown_path(server, path):
    assert server.request("GET", path)[0] == 404


def raw_exchange(port, data, wait=5.0):
    """Send bytes, read until the server closes or `wait` passes: (reply, seconds)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(wait)
    t0, out = time.time(), b""
    try:
        s.sendall(data)
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return out, time.time() - t0


def test_upload_over_the_limit_is_refused_unread(server):
    """A Content-Length of 11 MiB gets its 413 before a byte of the body is sent."""
    reply, seconds = raw_exchange(server.port, b"POST /api/encode HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Type: image/png\r\nContent-Length: 11534336\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413") and b"upload limit" in reply and seconds < 2


def test_chunked_upload_over_the_limit_is_cut_off(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /api/encode HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
    sent = 0
    try:
        for _ in range(1024):  # 64 MiB, if the server read it all
            s.sendall(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()
    # 10 MiB read, plus what the two sockets' buffers hold
    assert sent <= 20 << 20, "the server read %d bytes of a body over its limit" % sent
    assert server.request("GET", "/api/info")[0] == 200


def test_cache_is_bounded_lru(model):
    """--cache 1 (MiB) holds about 330 latents of 784: the least recently used goes."""
    s = Server(["--checkpoint", model["checkpoint"], "--data", FMNIST, "--gallery", "10",
                "--cache", "1"], ROOT)
    try:
        cap = json.loads(s.request("GET", "/api/info")[2])["cache_entries"]
        assert 200 < cap < 400
        kept = encode_gallery(s, 0)["id"]
        png = s.request("GET", "/api/gallery/1.png")[2]
        ids = []
        for k in range(cap + 20):
            ids.append(json.loads(s.request("POST", "/api/encode", png, {"Content-Type": "image/png"})[2])["id"])
            if k % 50 == 0:
                assert s.request("GET", "/api/image/%s.png" % kept)[0] == 200  # used: kept
        assert s.request("GET", "/api/image/%s.png" % ids[0])[0] == 404  # evicted
        assert s.request("GET", "/api/image/%s.png" % ids[-1])[0] == 200
        assert s.request("GET", "/api/image/%s.png" % kept)[0] == 200
    finally:
        s.stop()


def test_without_attributes_or_gallery(model):
    s = Server(["--checkpoint", model["checkpoint"]], ROOT)
    try:
        info = json.loads(s.request("GET", "/api/info")[2])
        assert info["attributes"] == [] and info["gallery"] == 0
        png = png_encode(28, 28, 1, bytes(range(256)) * 3 + bytes(16))
        e = json.loads(s.request("POST", "/api/encode", png, {"Content-Type": "image/png"})[2])
        status, msg = error_of(s.post_json("/api/manipulate", {"id": e["id"], "alphas": {"Bag": 1}}))
        assert status == 400 and "no --attributes" in msg
        assert error_of(s.post_json("/api/encode", {"gallery": 0}))[0] == 404
    finally:
        s.stop()


@pytest.mark.parametrize("args, status, what", [
    (["--checkpoint", "/nonexistent.glow"], 1, "/nonexistent.glow"),
    (["--checkpoint", "@ck", "--attributes", "/nonexistent.npz"], 1, "/nonexistent.npz"),
    (["--checkpoint", "@ck", "--port", "70000"], 2, "--port"),
    (["--checkpoint", "@ck", "--host", "not an address"], 1, "--host"),
    ([], 2, "--checkpoint")])
def test_bad_start(model, args, status, what):
    args = [model["checkpoint"] if a == "@ck" else a for a in args]
    r = subprocess.run([GLOW, "serve", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == status and what in r.stderr, r.stderr
    assert r.stderr.startswith("glow serve: ")


def test_port_in_use(server, model):
    r = subprocess.run([GLOW, "serve", "--checkpoint", model["checkpoint"], "--port",
                        str(server.port)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot listen" in r.stderr, r.stderr


def test_attributes_of_another_model(model, tmp_path):
    """Directions whose dimension is not the model's are refused at start."""
    subprocess.run([GLOW, "train", "--depth", "1", "--width", "4", "--steps", "2", "--batch", "8",
                    "--init-batch", "8", "--eval-n", "8", "--sample-every", "0", "--image-size",
                    "16", "--out", str(tmp_path)], check=True, capture_output=True, cwd=ROOT)
    r = subprocess.run([GLOW, "serve", "--checkpoint", str(tmp_path / "checkpoint.glow"),
                        "--attributes", model["attributes"]], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "dimension 784" in r.stderr, r.stderr


def test_concurrent_decodes_are_batched_and_exact(model):
    """32 requests sent at once (on 32 connections opened first) to a server with one
    context: their decodes run in shared batches, and each answer is still its own image's
    exact reconstruction."""
    server = Server(["--checkpoint", model["checkpoint"], "--data", FMNIST, "--gallery", "32",
                     "--threads", "1"], ROOT)
    try:
        batched_and_exact(server)
    finally:
        server.stop()


def batched_and_exact(server):
    import http.client
    images = fmnist_test_images(32)
    ids = [encode_gallery(server, i)["id"] for i in range(32)]
    before = json.loads(server.request("GET", "/api/info")[2])
    for burst in range(5):
        conns = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(32)]
        for c, i in zip(conns, ids):
            c.sendall(b"GET /api/image/%s.png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i.encode())
        for k, c in enumerate(conns):
            r = http.client.HTTPResponse(c)
            r.begin()
            assert r.status == 200 and png_decode(r.read())[3] == images[k], "image %d" % k
            c.close()
        info = json.loads(server.request("GET", "/api/info")[2])
        decodes = info["decodes"] - before["decodes"]
        batches = info["decode_batches"] - before["decode_batches"]
        if batches < decodes:
            break
    assert decodes >= 32 and batches < decodes, "no two decodes ever shared a batch"
