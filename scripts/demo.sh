#!/usr/bin/env bash
# The README's main command: on a fresh Debian machine installs what the build needs, then
# fetches the photos the sellers' image host serves, builds and runs `fleet demo` (stack up, seed, fleet up, workload, report). Arguments go to
# `fleet demo` (--rate SESSIONS_PER_S --duration SECS --poison N --stop --no-faults).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/install-broker.sh >/dev/null
# The photos the stack's seller image host serves (image-quality checks them), cached.
STOREFLEET_PHOTOS="$(bash scripts/fetch-photos.sh 2>/dev/null)"
export STOREFLEET_PHOTOS
exec cargo run --release -- demo "$@"
