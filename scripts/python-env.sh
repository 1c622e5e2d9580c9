#!/usr/bin/env bash
# Creates or updates a Python virtualenv in the cache, outside any clone, and prints its python
# interpreter's path on its last line. Idempotent: pip runs only when the requirements' hash
# differs from the stamp in the venv (or the probe's imports fail). On a fresh Debian machine
# without `python3 -m venv`, installs python3-venv first.
#
#   scripts/python-env.sh                    the interop tests' client and referee
#                                            (tests/registry_interop.rs): venv, requirements.txt
#   scripts/python-env.sh NAME REQS IMPORTS  another venv, e.g. scripts/recs-env.sh's
#
# Wheels preferred: implicit from source would need a C++ toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${STOREFLEET_CACHE:-$HOME/.cache/storefleet}"
venv="$cache/${1:-venv}"
requirements="${2:-tests/python/requirements.txt}"
probe_imports="${3:-import confluent_kafka, fastavro, avro}"
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
  && "$venv/bin/python" -c "$probe_imports" 2>/dev/null; then
  echo "$venv/bin/python"
  exit 0
fi

if ! command -v python3 >/dev/null; then
  echo "== installing python3" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >&2
fi
# Debian splits venv (and ensurepip) into python3-venv; `--help` alone succeeds without it.
probe="$(mktemp -d)"
if ! python3 -m venv "$probe/v" >/dev/null 2>&1; then
  echo "== installing python3-venv" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
fi
rm -rf "$probe"

mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv" >&2
  python3 -m venv --clear "$venv" >&2
fi
echo "== installing $requirements into $venv" >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check --prefer-binary \
  -r "$requirements" >&2
"$venv/bin/python" -c "$probe_imports" >&2
echo "$wanted" >"$stamp"
echo "$venv/bin/python"
