#!/usr/bin/env bash
# Renders a study's report.html in headless Chromium (Debian's package `chromium`) and saves a
# full-width screenshot, to check the page as a reader sees it.
# Usage: scripts/report_screenshot.sh STUDY OUT.png [WIDTH,HEIGHT]   (default 1280,3000)
set -euo pipefail
study=${1:?usage: scripts/report_screenshot.sh STUDY OUT.png [WIDTH,HEIGHT]}
out=${2:?usage: scripts/report_screenshot.sh STUDY OUT.png [WIDTH,HEIGHT]}
size=${3:-1280,3000}
command -v chromium >/dev/null || { echo "chromium not found: install Debian's package (apt-get install chromium)" >&2; exit 1; }
[ -f "$study/report.html" ] || { echo "$study/report.html not found: run genseg study first" >&2; exit 1; }
# --no-sandbox: Chromium refuses to run as root otherwise (CI containers).
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$size" \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$study")/report.html" 2>/dev/null
[ -s "$out" ] || { echo "no screenshot written to $out" >&2; exit 1; }
echo "$out"
