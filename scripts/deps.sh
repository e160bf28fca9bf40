#!/bin/sh
# deps.sh — installs what the build and the tests need on a Debian machine, only what is missing.
# Run as root (CI is); otherwise it names the missing packages and stops.
set -e
need=""
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
have_cmd cmake || need="$need cmake"
have_cmd gcc || need="$need gcc"
have_cmd make || need="$need make"
have_cmd pkg-config || need="$need pkg-config"
have_pkg libcmocka-dev || need="$need libcmocka-dev"
for p in $HM_EXTRA_PACKAGES; do have_pkg "$p" || need="$need $p"; done
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages:$need (run as root, or: sudo apt-get install -y$need)" >&2
  exit 1
fi
echo "deps.sh: installing$need"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y $need || { apt-get update && apt-get install -y $need; }
