#!/usr/bin/env bash
# Brings a fresh Debian/Ubuntu machine to the state `npm run demo` and `npm test` need:
# system packages (apt-get), node modules (npm ci), the OpenCV binding built against the system
# OpenCV. Quiet and fast when everything is already there. TTAQ_SKIP_BOOTSTRAP=1 skips it.
set -euo pipefail
[ "${TTAQ_SKIP_BOOTSTRAP:-0}" = "1" ] && exit 0
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# --- system packages -----------------------------------------------------------------------
# libopencv-dev: camera/video I/O and image ops; dataset-fashion-mnist: the bundled models' data;
# mosquitto: the real broker the tests run against; ffmpeg: H.264 encoding for stream videos;
# chromium: the headless browser the dashboard test drives.
APT_PACKAGES=(libopencv-dev dataset-fashion-mnist mosquitto ffmpeg chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing system packages: ${missing[*]}, and apt-get is not available."
    say "install them with your package manager (OpenCV >= 4 headers, mosquitto, ffmpeg), point"
    say "TTAQ_FASHION_MNIST at a folder with the Fashion-MNIST IDX files, then rerun with TTAQ_SKIP_BOOTSTRAP=1."
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null 2>&1 || { say "need root or sudo to apt-get install ${missing[*]}"; exit 1; }
    SUDO="sudo"
  fi
  say "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- node modules ----------------------------------------------------------------------------
# The OpenCV binding compiles against the system OpenCV (never its own auto-build, which would
# download and compile OpenCV from source).
export OPENCV4NODEJS_DISABLE_AUTOBUILD=1
export OPENCV_INCLUDE_DIR="${OPENCV_INCLUDE_DIR:-/usr/include/opencv4}"
export OPENCV_LIB_DIR="${OPENCV_LIB_DIR:-/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo "$(uname -m)-linux-gnu")}"
export OPENCV_BIN_DIR="${OPENCV_BIN_DIR:-/usr/bin}"
export JOBS="${JOBS:-$(nproc)}"

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.ttaq-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  say "installing node modules (npm ci; the OpenCV binding compiles, a few minutes on 2 cores)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > "$stamp"
fi
