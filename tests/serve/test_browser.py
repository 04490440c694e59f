"""The explorer page in Debian's Chromium, driven by playwright-core (tests/browser/page.mjs):
samples, the temperature slider, an upload, an attribute slider, a mix, a screenshot
(build/explorer.png; GLOW_SCREENSHOT names another file)."""
import os
import subprocess

from conftest import ROOT, png_encode

BROWSER = os.path.join(ROOT, "tests", "browser")


def test_page_in_chromium(server, tmp_path):
    assert os.path.exists("/usr/bin/chromium"), "no /usr/bin/chromium: run scripts/setup.sh"
    assert os.path.isdir(os.path.join(BROWSER, "node_modules", "playwright-core")), \
        "no playwright-core: run scripts/setup.sh (npm ci in tests/browser)"
    h, w = 48, 64  # an RGB upload of another size: cropped, resized and made gray
    px = bytes((x * 5 + y * 3 + k * 60) % 256 for y in range(h) for x in range(w) for k in range(3))
    upload = tmp_path / "upload.png"
    upload.write_bytes(png_encode(h, w, 3, px))
    shot = os.environ.get("GLOW_SCREENSHOT", os.path.join(ROOT, "build", "explorer.png"))
    r = subprocess.run(["node", os.path.join(BROWSER, "page.mjs"), server.url, shot, str(upload)],
                       capture_output=True, text=True, timeout=180)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.getsize(shot) > 10000
