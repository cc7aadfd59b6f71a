#!/usr/bin/env bash
# install.sh: install Rill as a systemd service on this host.
#
#   sudo deploy/install.sh [--binary PATH] [--advertise HOST:PORT] [--listen ADDR:PORT]
#                          [--sysctl] [--no-start] [--dry-run] [--destdir DIR]
#
# What it does, each step skipped when already done (running it again is safe):
#   1. builds `rill` (cargo build --release -p rill-broker) unless --binary is given
#   2. installs it as /usr/local/bin/rill
#   3. creates the system user and group `rill`
#   4. writes /etc/rill/rill.toml from deploy/rill.toml with data_dir = /var/lib/rill,
#      listen and advertise set; an existing, different file is kept and the new one
#      is written next to it as rill.toml.new
#   5. creates /var/lib/rill (owned by rill)
#   6. installs /etc/systemd/system/rill.service, runs daemon-reload, enables the
#      service and starts it (--no-start: enable only)
#   7. with --sysctl: installs deploy/sysctl.conf as /etc/sysctl.d/60-rill.conf and
#      applies it
#
# --dry-run prints what would be done and changes nothing. --destdir DIR installs the
# files under DIR (for packaging and tests): no user is created, nothing is chowned,
# systemctl and sysctl are not run. Both work without root; a real install needs root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

usage() {
  cat <<'EOF'
usage: sudo deploy/install.sh [--binary PATH] [--advertise HOST:PORT] [--listen ADDR:PORT]
                              [--sysctl] [--no-start] [--dry-run] [--destdir DIR]

  --binary PATH          install this prebuilt rill binary instead of building one
  --advertise HOST:PORT  address clients are told to connect to (asked for when
                         omitted on a terminal; otherwise this host's name and the
                         listen port)
  --listen ADDR:PORT     address the broker listens on [default: 0.0.0.0:9092]
  --sysctl               also install and apply deploy/sysctl.conf
  --no-start             enable the service but do not start it
  --dry-run              print what would be done, change nothing
  --destdir DIR          install under DIR instead of /; no user, systemctl or sysctl
  -h, --help             this help
EOF
}

args=("$@")
binary="" advertise="" listen="0.0.0.0:9092" with_sysctl=0 start=1 dry_run=0 destdir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --advertise) advertise=${2:?--advertise needs HOST:PORT}; shift 2 ;;
    --listen) listen=${2:?--listen needs ADDR:PORT}; shift 2 ;;
    --sysctl) with_sysctl=1; shift ;;
    --no-start) start=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
# Runs a command that changes the system, or only prints it under --dry-run.
run() {
  printf '    +'
  printf ' %q' "$@"
  printf '\n'
  if [ "$dry_run" -eq 0 ]; then "$@"; fi
}

if [ -n "$destdir" ]; then
  destdir=$(realpath -m "$destdir")
  [ ! -e "$destdir" ] || [ -d "$destdir" ] || die "--destdir $destdir is not a directory"
fi
if [ "$dry_run" -eq 0 ] && [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  die "must run as root (try: sudo $0 ${args[*]}), or use --dry-run / --destdir DIR"
fi

# Whether systemctl may be used: a real install on a host booted with systemd.
systemd_up=0
if [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemd_up=1
fi

# Both end up in the config file (through sed), so keep them to address characters.
addr_chars='^[][A-Za-z0-9._:-]+:[0-9]+$'
[[ $listen =~ $addr_chars ]] || die "--listen must be ADDR:PORT (e.g. 0.0.0.0:9092), got '$listen'"
listen_port=${listen##*:}

if [ -z "$advertise" ]; then
  default_host=$(hostname -f 2>/dev/null || hostname)
  case "$listen" in
    0.0.0.0:* | "[::]:"*) ;;
    *) default_host=${listen%:*} ;;
  esac
  default_advertise="$default_host:$listen_port"
  if [ -t 0 ] && [ "$dry_run" -eq 0 ]; then
    read -r -p "Address clients use to reach this broker [$default_advertise]: " advertise
  fi
  advertise=${advertise:-$default_advertise}
fi
[[ $advertise =~ $addr_chars ]] || die "--advertise must be HOST:PORT, got '$advertise'"
case "$advertise" in
  0.0.0.0:* | "[::]:"*) die "--advertise must be an address clients can reach, not $advertise" ;;
esac

bin_dst="$destdir/usr/local/bin/rill"
etc_dir="$destdir/etc/rill"
conf_dst="$etc_dir/rill.toml"
data_dir="$destdir/var/lib/rill"
unit_dst="$destdir/etc/systemd/system/rill.service"
sysctl_dst="$destdir/etc/sysctl.d/60-rill.conf"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Puts $1 at $2 with mode $3 unless $2 already holds the same bytes; sets `changed`
# to 1 when it wrote (or would write) the file, else 0.
changed=0
put() {
  local src=$1 dst=$2 mode=$3
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    echo "    $dst is up to date"
    changed=0
  else
    run install -D -m "$mode" "$src" "$dst"
    changed=1
  fi
}

# The binary.
if [ -z "$binary" ]; then
  say "building rill (cargo build --release -p rill-broker)"
  command -v cargo >/dev/null 2>&1 \
    || die "cargo not found; build as your user first and pass --binary target/release/rill"
  run cargo build --release -p rill-broker --manifest-path "$repo/Cargo.toml"
  binary="${CARGO_TARGET_DIR:-$repo/target}/release/rill"
fi
if [ "$dry_run" -eq 0 ] || [ -e "$binary" ]; then
  [ -x "$binary" ] || die "$binary is not an executable file"
fi

# The config, from the commented example so every field keeps its comment; checked
# before anything is installed.
say "config: data_dir /var/lib/rill, listen $listen, advertise $advertise"
template="$here/rill.toml"
new_conf="$tmp/rill.toml"
{
  echo "# Written by deploy/install.sh from deploy/rill.toml; edit freely, install.sh"
  echo "# keeps an existing file and writes its own version next to it as rill.toml.new."
  echo
  sed -e 's|^data_dir = .*|data_dir = "/var/lib/rill"|' \
      -e "s|^listen = .*|listen = \"$listen\"|" \
      -e "s|^advertise = .*|advertise = \"$advertise\"|" \
      "$template"
} >"$new_conf"
for want in 'data_dir = "/var/lib/rill"' "listen = \"$listen\"" "advertise = \"$advertise\""; do
  grep -qxF "$want" "$new_conf" || die "could not set '$want' in the config ($template changed shape?)"
done
# The broker checks the file the same way it will at start.
if [ -x "$binary" ]; then
  "$binary" broker --config "$new_conf" --print-config >/dev/null \
    || die "the broker refuses the generated config (see above)"
fi

say "installing $binary as $bin_dst"
put "$binary" "$bin_dst" 0755
binary_changed=$changed

# The user.
say "system user rill"
if [ -n "$destdir" ]; then
  echo "    skipped under --destdir"
elif getent passwd rill >/dev/null; then
  echo "    user rill exists"
else
  nologin=$(command -v nologin || echo /usr/sbin/nologin)
  run useradd --system --user-group --home-dir /var/lib/rill --no-create-home \
    --shell "$nologin" --comment "Rill broker" rill
fi
# Files are chowned to rill only for a real install (under --destdir no user exists).
owner_args=()
if [ -z "$destdir" ]; then owner_args=(-o root -g rill); fi

say "config $conf_dst"
if [ ! -e "$conf_dst" ]; then
  run install -D -m 0640 "${owner_args[@]}" "$new_conf" "$conf_dst"
elif cmp -s "$new_conf" "$conf_dst"; then
  echo "    $conf_dst is up to date"
elif [ -f "$conf_dst.new" ] && cmp -s "$new_conf" "$conf_dst.new"; then
  echo "    $conf_dst differs from the generated config, which is in $conf_dst.new"
else
  echo "    $conf_dst exists and differs: kept; the generated one goes to $conf_dst.new"
  run install -D -m 0640 "${owner_args[@]}" "$new_conf" "$conf_dst.new"
fi

# The data directory (systemd's StateDirectory= also creates it at every start).
say "data directory $data_dir"
if [ -d "$data_dir" ] && { [ -n "$destdir" ] || [ "$(stat -c %U "$data_dir")" = rill ]; }; then
  echo "    $data_dir exists"
elif [ -z "$destdir" ]; then
  run install -d -m 0750 -o rill -g rill "$data_dir"
else
  run install -d -m 0750 "$data_dir"
fi

# Kernel settings, when asked for.
if [ "$with_sysctl" -eq 1 ]; then
  say "sysctl settings $sysctl_dst"
  put "$here/sysctl.conf" "$sysctl_dst" 0644
  if [ "$changed" -eq 1 ] && [ -z "$destdir" ]; then
    run sysctl -p "$sysctl_dst"
  fi
fi

# The service.
say "systemd unit $unit_dst"
put "$here/rill.service" "$unit_dst" 0644
unit_changed=$changed
if [ "$systemd_up" -eq 0 ]; then
  if [ -n "$destdir" ]; then
    echo "    systemctl skipped under --destdir"
  else
    echo "    systemd is not running on this host: start the broker yourself with"
    echo "    sudo -u rill /usr/local/bin/rill broker --config /etc/rill/rill.toml"
  fi
else
  run systemctl daemon-reload
  was_active=0
  if systemctl is-active --quiet rill; then was_active=1; fi
  if [ "$start" -eq 1 ]; then
    run systemctl enable --now rill
  else
    run systemctl enable rill
  fi
  if [ "$was_active" -eq 1 ] && [ $((binary_changed + unit_changed)) -gt 0 ]; then
    echo "    rill was already running and is still on the old binary or unit: run"
    echo "    'systemctl restart rill' when convenient (SIGTERM is a clean stop)"
  fi
fi

if [ "$dry_run" -eq 1 ]; then
  say "dry run: nothing was changed"
elif [ -z "$destdir" ]; then
  if [ "$systemd_up" -eq 1 ]; then
    say "done. Check it: systemctl status rill; journalctl -u rill -f;"
  else
    say "done. Once the broker runs, check it:"
  fi
  echo "    rill cluster info --bootstrap $advertise"
else
  say "done: installed under $destdir"
fi
