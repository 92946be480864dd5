#!/usr/bin/env bash
# Checks the .deb that scripts/package.sh built: its declared dependencies and contents, the
# desktop entry; then installs it with apt (as root) and runs the installed app: --version,
# and a start under Xvfb far enough to open its cache and write its log.
# Usage: bash scripts/check-package.sh [FILE.deb]   (default: the newest in target/debian/)
set -euo pipefail
cd "$(dirname "$0")/.."

deb=${1:-$(ls -t target/debian/phm-workstation_*.deb 2>/dev/null | head -n 1)}
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
  echo "check-package: no .deb found; run bash scripts/package.sh first" >&2
  exit 1
fi
case "$deb" in /*) ;; *) deb="./$deb" ;; esac
fail() {
  echo "check-package: $*" >&2
  exit 1
}
echo "== checking $deb"

depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for dep in libwebkit2gtk-4.1-0 libgtk-3-0 libdbus-1-3 libssl3 libc6; do
  grep -Eq "(^|, )$dep( |,|$)" <<<"$depends" || fail "Depends lacks $dep"
done
grep -q gnome-keyring <<<"$(dpkg-deb -f "$deb" Recommends)" || fail "Recommends lacks gnome-keyring"

contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/phm-workstation ./usr/share/applications/phm-workstation.desktop \
  ./usr/share/icons/hicolor/32x32/apps/phm-workstation.png; do
  grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
grep -Eq '^-rwxr-xr-x .* \./usr/bin/phm-workstation$' <<<"$contents" || fail "the binary is not executable"

work=$(mktemp -d)
app_pid=
cleanup() {
  if [ -n "$app_pid" ]; then kill -- "-$app_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
dpkg-deb -x "$deb" "$work/root"
entry="$work/root/usr/share/applications/phm-workstation.desktop"
for line in "Name=PHM Workstation" "Exec=phm-workstation" "Icon=phm-workstation" "Type=Application"; do
  grep -qx "$line" "$entry" || fail "the desktop entry lacks $line"
done
grep -Eq '^Categories=.*Office;.*MedicalSoftware;' "$entry" || fail "the desktop entry's Categories"
desktop-file-validate "$entry"
kind=$(file -b "$work/root/usr/bin/phm-workstation")
grep -q "^ELF 64-bit .*, stripped" <<<"$kind" || fail "the binary is not a stripped ELF executable: $kind"

# A clean install each time: the same version already installed would be kept as it is.
if dpkg-query -W -f='${Status}' phm-workstation 2>/dev/null | grep -q "install ok installed"; then
  echo "== removing the installed phm-workstation first"
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -q phm-workstation
fi
echo "== apt-get install $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb"
cmp -s /usr/bin/phm-workstation "$work/root/usr/bin/phm-workstation" || fail "/usr/bin/phm-workstation is not this package's"
version=$(dpkg-deb -f "$deb" Version)
version=${version%-*}
out=$(/usr/bin/phm-workstation --version)
[ "$out" = "phm-workstation $version" ] || fail "--version printed '$out', expected 'phm-workstation $version'"
echo "installed: $out"
status=0
/usr/bin/phm-workstation --no-such-option 2>/dev/null || status=$?
[ "$status" = 2 ] || fail "an unknown option exited $status, expected 2"
# Built without the demo feature: --demo is refused and the synthetic generator is not linked.
status=0
/usr/bin/phm-workstation --demo 2>"$work/demo.err" || status=$?
[ "$status" = 2 ] && grep -q "no demo mode" "$work/demo.err" || fail "--demo exited $status ($(cat "$work/demo.err")), expected 2 and 'no demo mode'"
if /usr/bin/phm-workstation --help | grep -q -- "--demo"; then
  fail "--help offers --demo, which this build refuses"
fi
if grep -q "is not a panel" /usr/bin/phm-workstation; then
  fail "the installed binary links the synthetic generator (synth)"
fi
if ldd /usr/bin/phm-workstation | grep -q "not found"; then
  ldd /usr/bin/phm-workstation | grep "not found" >&2
  fail "the installed binary misses libraries"
fi

echo "== starting the installed app (Xvfb, a throwaway keyring and data folder)"
mkdir -p "$work/data" "$work/xdg"
log="$work/data/logs"
# Its own process group, so the whole tree (xvfb-run, the bus, the keyring, the app) stops at the end.
PHM_DATA_DIR="$work/data" XDG_DATA_HOME="$work/xdg" \
  setsid xvfb-run -a dbus-run-session -- bash scripts/keyring-session.sh check /usr/bin/phm-workstation \
  >"$work/app.out" 2>&1 &
app_pid=$!
for _ in $(seq 120); do
  if grep -qs "cache opened" "$log"/phm-workstation.*.log; then break; fi
  if grep -qs "startup failed" "$log"/phm-workstation.*.log || ! kill -0 "$app_pid" 2>/dev/null; then
    cat "$work/app.out" >&2
    fail "the installed app did not start"
  fi
  sleep 0.5
done
grep -qs "cache opened" "$log"/phm-workstation.*.log || {
  cat "$work/app.out" >&2
  fail "the installed app did not open its cache within 60 s"
}
sleep 2
kill -0 "$app_pid" 2>/dev/null || fail "the installed app exited after starting"
echo "started; its log ($(ls "$log")):"
cat "$log"/phm-workstation.*.log
echo "== package OK: $deb"
