#!/usr/bin/env bash
# Installs the local Kafka-protocol broker (nisshi, Tansu's successor) into a cache outside
# the clone, once. A cold build takes ~20 minutes on 2 cores, so it is never rebuilt per run.
set -euo pipefail
version="${NISSHI_VERSION:-0.8.1}"
cache="${STOREFLEET_CACHE:-$HOME/.cache/storefleet}"
root="$cache/nisshi-$version"
bin="$root/bin/nisshi"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$root"
# --locked keeps the dependency set the release was tested with; one dependency declares a
# newer rustc than the machine's 1.95 but builds with it (FACTS.md), hence --ignore-rust-version.
if ! cargo install nisshi --version "=$version" --ignore-rust-version --locked --root "$root" >&2; then
  echo "locked install failed; retrying without --locked" >&2
  cargo install nisshi --version "=$version" --ignore-rust-version --root "$root" >&2
fi
echo "$bin"
