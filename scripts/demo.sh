#!/usr/bin/env bash
# The README's main command: on a fresh Debian machine installs what the build needs, then
# builds and runs `fleet demo` (stack up, seed, fleet up, workload, report). Arguments go to
# `fleet demo` (--rate SESSIONS_PER_S --duration SECS --poison N --stop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/install-broker.sh >/dev/null
exec cargo run --release -- demo "$@"
