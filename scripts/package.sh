#!/usr/bin/env bash
# Builds the Debian package of PHM Workstation: the UI, the release binary, and a .deb with a
# desktop entry, the icon and the runtime dependencies declared ([package.metadata.deb] in
# Cargo.toml; cargo-deb). Prints the .deb's path last. Install it with
#   apt install ./target/debian/phm-workstation_<version>-1_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
# Build dependencies (WebKitGTK, dpkg-dev for dpkg-shlibdeps, …) and the UI build (ui/dist,
# which the binary embeds).
bash scripts/setup-debian.sh

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
  echo "== installing cargo-deb $CARGO_DEB_VERSION"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --quiet
fi

echo "== building the release binary"
# Without the demo feature: the package links no synthetic generator and has no --demo.
cargo build --release --bin phm-workstation --no-default-features
echo "== building the .deb"
# --strip: the release profile keeps line tables for backtraces; the package does not need them.
deb=$(cargo deb --no-build --strip | tail -n 1)
test -f "$deb"
echo "== package: $(du -h "$deb" | cut -f1)"
echo "$deb"
