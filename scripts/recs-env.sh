#!/usr/bin/env bash
# The Python virtualenv the recommendation reference runs in (tests/python/recs_reference.py,
# scripts/fetch-movielens.sh): $STOREFLEET_CACHE/venv-recs with
# tests/python/requirements-recs.txt (implicit, numpy, scipy, pyarrow). Kept apart from the
# interop tests' venv so those never pay for numpy/scipy/implicit and the two pin sets cannot
# conflict. Prints the venv's python interpreter path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/python-env.sh venv-recs tests/python/requirements-recs.txt \
  'import implicit, numpy, scipy, threadpoolctl, pyarrow'
