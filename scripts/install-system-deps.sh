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
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
# Optional: tcmalloc keeps a long training run's memory from growing step after step, and ran faster than
# glibc's malloc (r2ta/jobs.py, allocator_env). Where apt-get is: with the packages above when there are any,
# else alone without asking for a password (sudo -n); without it a run uses glibc's malloc, so that failure
# only says so.
if command -v apt-get >/dev/null 2>&1 \
    && [ -z "$(ls /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4 2>/dev/null)" ]; then
  if [ ${#need[@]} -gt 0 ]; then
    need+=(libtcmalloc-minimal4)
  else
    echo "installing Debian package libtcmalloc-minimal4 (optional)"
    { ${SUDO:+sudo -n} apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive ${SUDO:+sudo -n} apt-get install -y -qq libtcmalloc-minimal4 >/dev/null; } \
      || echo "could not install libtcmalloc-minimal4: training runs on glibc's malloc (r2ta/jobs.py)" >&2
  fi
fi
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get not found: install ${need[*]} with your system's package manager" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
