#!/usr/bin/env bash
# Installs the Debian packages R2tA needs beyond Python: graphviz (the `dot`
# binary, for PNG/SVG rendering) and chromium (the real browser of the
# end-to-end test). Skips what is already there; never downloads a browser build.
set -euo pipefail
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
if [ "${R2TA_SKIP_BROWSER:-0}" != "1" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get not found: install ${need[*]} with your system's package manager" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
