#!/usr/bin/env bash
# A screenshot of a run's HTML report (`lionsearch report`), as the README shows one:
#   scripts/report_screenshot.sh RUN OUT.png [HEIGHT]
# Needs Chromium (Debian's `chromium` package).
set -euo pipefail
run=${1:?usage: scripts/report_screenshot.sh RUN OUT.png [HEIGHT]}
out=${2:?usage: scripts/report_screenshot.sh RUN OUT.png [HEIGHT]}
page=$(mktemp --suffix=.html)
python -m lionsearch report "$run" -o "$page" >/dev/null
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,"${3:-2600}" \
    --screenshot="$(realpath -m "$out")" "file://$page" 2>/dev/null
rm -f "$page"
echo "$out"
