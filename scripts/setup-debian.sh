#!/usr/bin/env bash
# Installs everything PHM Workstation needs to build, run, test and package on Debian 12 (as root).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=0
for pkg in libwebkit2gtk-4.1-dev build-essential dpkg-dev file libxdo-dev libssl-dev libayatana-appindicator3-dev \
  librsvg2-dev xvfb webkit2gtk-driver dbus-x11 gnome-keyring keyutils postgresql-15 libxml2-utils xsltproc \
  python3-lxml pkg-config openssl desktop-file-utils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  echo "== installing Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    libwebkit2gtk-4.1-dev build-essential dpkg-dev curl file libxdo-dev libssl-dev libayatana-appindicator3-dev \
    librsvg2-dev xvfb webkit2gtk-driver dbus-x11 gnome-keyring keyutils postgresql-15 libxml2-utils xsltproc \
    python3-lxml pkg-config openssl desktop-file-utils
fi

if ! command -v cargo >/dev/null; then
  echo "error: no Rust toolchain found; install one with rustup (Rust 1.90 or newer) and run again" >&2
  exit 1
fi
if ! command -v node >/dev/null || ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "error: Node.js 20.19 or newer is needed for the UI build (Vite 7, Svelte 5)" >&2
  exit 1
fi

if ! command -v tauri-driver >/dev/null; then
  echo "== installing tauri-driver"
  cargo install tauri-driver --locked --version '^2' --quiet
fi

echo "== installing UI packages, checking and building the UI"
(cd ui && npm install --no-audit --no-fund --loglevel=error && npm run build --silent)
