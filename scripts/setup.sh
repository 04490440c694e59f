#!/usr/bin/env bash
# Install the Debian packages glow-c needs: a compiler, OpenBLAS (its OpenMP build, which
# shares our thread pool), libpng, libjpeg, zlib, the Fashion-MNIST data set, and NumPy for
# the independent checkpoint reader and the Python module (with pytest for its tests),
# clang with libFuzzer for the fuzz harnesses, libmicrohttpd for glow serve, OpenMPI for
# training on many processes (glow train under mpirun, and its tests), and Chromium
# with playwright-core (from npm, at the version of tests/browser/package-lock.json) for the
# test of its page. Run as root (or with sudo available).
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-dev libopenblas-openmp-dev libpng-dev libjpeg-dev
      zlib1g-dev dataset-fashion-mnist python3 python3-numpy python3-pytest
      clang libclang-rt-14-dev libomp-14-dev libmicrohttpd-dev openmpi-bin libopenmpi-dev chromium)
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
cd "$(dirname "$0")/../tests/browser"
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error
