#!/usr/bin/env bash
# The Python virtualenv the image-quality reference runs in (tests/python/images_reference.py,
# scripts/fetch-photos.sh): $STOREFLEET_CACHE/venv-images with
# tests/python/requirements-images.txt (opencv-python-headless, numpy). Kept apart from the
# other venvs so their pin sets cannot conflict. Prints the venv's python interpreter path on
# its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/python-env.sh venv-images tests/python/requirements-images.txt \
  'import cv2, numpy'
