#!/usr/bin/env bash
# Debian packages the build needs and a fresh machine may lack (the stack itself installs
# PostgreSQL and Redis when it starts them). Used by the README's two commands.
set -euo pipefail
missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v make >/dev/null || missing+=(make)
command -v runuser >/dev/null || missing+=(util-linux)
# libpq for the CDC connector's replication connection (pg_walstream's libpq feature).
[ -f /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# The catalogue data set comes from the npm registry.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
