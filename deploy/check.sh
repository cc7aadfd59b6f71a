#!/usr/bin/env bash
# check.sh: checks deploy/ without a running systemd and without touching the host
# (.ci/run calls it; needs systemd-analyze, from Debian's `systemd` package).
#
# 1. install.sh parses (bash -n) and its --dry-run changes nothing.
# 2. install.sh --destdir installs into a temporary root, with a stub executable
#    standing in for the rill binary; running it again changes nothing.
# 3. `systemd-analyze verify --root` checks the unit installed there, unchanged from
#    deploy/rill.service: the stub makes ExecStart=/usr/local/bin/rill resolve inside
#    the root, and a copy of systemd's own units lets the targets it names resolve.
#    verify only warns (exit 0) about unknown keys or bad values, so any line that
#    names rill.service fails the check too.
# 4. The generated rill.toml holds the install's values; sysctl.conf names only keys
#    this kernel has.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { printf 'deploy check: %s\n' "$*" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

echo "-- bash -n deploy/install.sh deploy/check.sh deploy/local-cluster.sh"
bash -n deploy/install.sh
bash -n deploy/check.sh
bash -n deploy/local-cluster.sh

stub="$root/stub/rill"
mkdir -p "$root/stub"
printf '#!/bin/sh\n# stands in for rill in deploy/check.sh\nexit 0\n' >"$stub"
chmod 755 "$stub"

echo "-- install.sh --dry-run into an empty root changes nothing"
dry="$root/dry"
bash deploy/install.sh --dry-run --destdir "$dry" --binary "$stub" \
  --advertise rill-1.example.com:9092 --sysctl </dev/null >"$root/dry.log"
[ ! -e "$dry" ] || fail "--dry-run wrote files: $(find "$dry" | head)"
grep -q "+ install -D -m 0755 $stub $dry/usr/local/bin/rill" "$root/dry.log" \
  || fail "--dry-run did not print the binary install: $(cat "$root/dry.log")"

echo "-- install.sh --destdir"
dest="$root/dest"
bash deploy/install.sh --destdir "$dest" --binary "$stub" \
  --advertise rill-1.example.com:9092 --sysctl </dev/null >"$root/install.log" \
  || fail "install.sh --destdir failed: $(cat "$root/install.log")"
for f in usr/local/bin/rill etc/rill/rill.toml etc/systemd/system/rill.service \
  etc/sysctl.d/60-rill.conf; do
  [ -f "$dest/$f" ] || fail "install.sh did not install /$f"
done
[ -d "$dest/var/lib/rill" ] || fail "install.sh did not create /var/lib/rill"
cmp -s deploy/rill.service "$dest/etc/systemd/system/rill.service" \
  || fail "installed unit differs from deploy/rill.service"

echo "-- install.sh --destdir again: nothing to do"
bash deploy/install.sh --destdir "$dest" --binary "$stub" \
  --advertise rill-1.example.com:9092 --sysctl </dev/null >"$root/again.log"
if grep -q '^    + ' "$root/again.log" || [ -e "$dest/etc/rill/rill.toml.new" ]; then
  fail "second install changed something: $(cat "$root/again.log")"
fi

echo "-- generated rill.toml"
python3 - "$dest/etc/rill/rill.toml" deploy/rill.toml <<'PY'
import sys, tomllib
new = tomllib.load(open(sys.argv[1], "rb"))
example = tomllib.load(open(sys.argv[2], "rb"))
want = {"data_dir": "/var/lib/rill", "listen": "0.0.0.0:9092",
        "advertise": "rill-1.example.com:9092"}
for key, value in want.items():
    assert new.get(key) == value, f"{key} = {new.get(key)!r}, want {value!r}"
    example[key] = value
assert new == example, "fields other than data_dir, listen, advertise changed"
PY

echo "-- systemd-analyze verify --root (the installed rill.service)"
mkdir -p "$dest/usr/lib/systemd"
units=/usr/lib/systemd/system
[ -d "$units" ] || units=/lib/systemd/system
[ -f "$units/multi-user.target" ] || fail "systemd's units not found (install the systemd package)"
cp -a "$units" "$dest/usr/lib/systemd/system"
set +e
out=$(systemd-analyze verify --root="$dest" --man=no rill.service 2>&1)
status=$?
set -e
[ -n "$out" ] && printf '%s\n' "$out"
[ "$status" -eq 0 ] || fail "systemd-analyze verify exited $status"
if printf '%s\n' "$out" | grep -q 'rill\.service'; then
  fail "systemd-analyze verify warned about rill.service"
fi

echo "-- sysctl.conf keys exist"
while read -r key _; do
  [ -e "/proc/sys/${key//.//}" ] || fail "deploy/sysctl.conf: no such kernel setting $key"
done < <(grep -Ev '^[[:space:]]*(#|$)' deploy/sysctl.conf | sed 's/=.*//')

echo "deploy: ok"
