#!/usr/bin/env bash
# The photo set for crates/imageq's calibration, OpenCV agreement test and benchmark, cached
# outside any clone in ${STOREFLEET_CACHE:-$HOME/.cache/storefleet}/photos. Prints that
# directory on its last line; logs go to stderr. Idempotent: a stamp (hash of this script and
# of the derivation code) makes a second run instant.
#
# Sources, both free to use (see manifest.json): scikit-image's skimage/data/ photos (PyPI
# wheel, `pip download --no-deps`, only the data files unzipped) and Debian opencv-doc's
# samples data (`apt-get download`, `dpkg-deb -x`). If the Debian package cannot be fetched
# (no apt, or no package lists and not root), the set is built from scikit-image alone.
#
# Layout: raw/{skimage,opencv}/ as shipped; sharp/ real photos as-is; blurred/ Gaussian
# sigma 3 PNG copies of them plus photos blurred as taken (clock_motion.png, ...); bench/
# 24 ~1 MP JPEGs (quality 90); manifest.json.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${STOREFLEET_CACHE:-$HOME/.cache/storefleet}"
dir="$cache/photos"
stamp="$dir/.stamp"
wanted="$(cat scripts/fetch-photos.sh tests/python/images_reference.py | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  echo "$dir"
  exit 0
fi

python="$(bash scripts/images-env.sh | tail -n 1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$dir"
rm -rf "$dir/raw" "$dir/sharp" "$dir/blurred" "$dir/bench"
mkdir -p "$dir/raw/skimage" "$dir/raw/opencv"

echo "== scikit-image photos (PyPI wheel)" >&2
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  scikit-image==0.26.0 -d "$work" >&2
unzip -q -o "$work"/scikit_image-*.whl 'skimage/data/*' -d "$work/sk" >&2
find "$work/sk/skimage/data" -maxdepth 1 -type f \( -name '*.png' -o -name '*.jpg' -o -name 'README.txt' \) \
  -exec cp {} "$dir/raw/skimage/" \;

echo "== opencv-doc samples data (Debian)" >&2
fetched=no
if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  if (cd "$work" && apt-get download -q opencv-doc >&2 2>"$work/apt.log"); then
    fetched=yes
  elif [ "$(id -u)" = 0 ] && apt-get update -q >&2 && (cd "$work" && apt-get download -q opencv-doc >&2); then
    fetched=yes
  fi
fi
if [ "$fetched" = yes ]; then
  dpkg-deb -x "$work"/opencv-doc_*.deb "$work/deb"
  find "$work/deb/usr/share/doc/opencv-doc/examples/data" -maxdepth 1 -type f \
    \( -name '*.png' -o -name '*.jpg' \) -exec cp {} "$dir/raw/opencv/" \;
else
  echo "   could not download opencv-doc; continuing with the scikit-image photos only" >&2
  cat "$work/apt.log" >&2 2>/dev/null || true
fi

echo "== deriving sharp/, blurred/, bench/" >&2
"$python" tests/python/images_reference.py derive "$dir/raw" "$dir" 2> >(grep -v 'libpng warning' >&2)
echo "$wanted" >"$stamp"
echo "$dir"
