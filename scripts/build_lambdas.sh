#!/usr/bin/env bash
# Build one deployment zip per Lambda function: aws/lambdas/bin/<function>.zip
#
# Each zip holds media_jobs/__init__.py, media_jobs/pipeline/** (no tests, no Django, no
# __pycache__) and the runtime dependencies Pillow, pillow-heif, pyvips, pyvips-binary (libvips),
# requests and zipstream-ng at the versions pinned in requirements.txt (boto3 comes with the
# Lambda runtime). pyvips is published as source only: it is built once into a pure-Python wheel. The handler setting is
# media_jobs.pipeline.handlers.<function>.handler.
#
#   scripts/build_lambdas.sh            # for the Lambda runtime: python3.12, x86_64
#   scripts/build_lambdas.sh --local    # for the current interpreter (tests, local runs)
#
# Environment:
#   LAMBDA_PYTHON_VERSION  target Python (default 3.12)
#   LAMBDA_PLATFORM        wheel platform tags, space separated
#                          (default "manylinux2014_x86_64 manylinux_2_28_x86_64";
#                          use the aarch64 tags for arm64 functions)
#   LAMBDA_OUT_DIR         where the zips go (default aws/lambdas/bin)
#   LAMBDA_FUNCTIONS       which zips (default: every handler module)
#   PYTHON                 the interpreter running pip (default .venv/bin/python, python3)
# Downloaded wheels stay in pip's cache, so a second build needs no network.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=lambda
for arg in "$@"; do
  case "$arg" in
    --local) MODE=local ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "build_lambdas: unknown argument $arg" >&2; exit 2 ;;
  esac
done

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
LAMBDA_PYTHON_VERSION=${LAMBDA_PYTHON_VERSION:-3.12}
LAMBDA_PLATFORM=${LAMBDA_PLATFORM:-manylinux2014_x86_64 manylinux_2_28_x86_64}
OUT_DIR=${LAMBDA_OUT_DIR:-$ROOT/aws/lambdas/bin}
FUNCTIONS=${LAMBDA_FUNCTIONS:-validate thumbnails video_thumbnails video_transcode consolidate callback zip}

# The runtime dependencies, pinned exactly as requirements.txt pins them.
PINS=()
for dist in Pillow pillow-heif pyvips pyvips-binary requests zipstream-ng; do
  pin=$(grep -iE "^${dist}==" "$ROOT/requirements.txt" || true)
  if [ -z "$pin" ]; then echo "build_lambdas: no pin for $dist in requirements.txt" >&2; exit 1; fi
  PINS+=("$pin")
done

STAGE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/toq-lambda-build.XXXXXX")
trap 'rm -rf "$STAGE_DIR"' EXIT

# Source-only distributions (pyvips) become pure-Python wheels first, so the target-platform
# install below can stay --only-binary.
WHEEL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/toq-lambda-wheels.XXXXXX")
trap 'rm -rf "$STAGE_DIR" "$WHEEL_DIR"' EXIT
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WHEEL_DIR" \
  "$(grep -iE '^pyvips==' "$ROOT/requirements.txt")"

PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile --target "$STAGE_DIR"
  --find-links "$WHEEL_DIR")
if [ "$MODE" = lambda ]; then
  for platform in $LAMBDA_PLATFORM; do PIP+=(--platform "$platform"); done
  PIP+=(--python-version "$LAMBDA_PYTHON_VERSION" --implementation cp --only-binary=:all:)
  echo "build_lambdas: dependencies for python$LAMBDA_PYTHON_VERSION ($LAMBDA_PLATFORM): ${PINS[*]}"
else
  echo "build_lambdas: dependencies for the local interpreter ($("$PYTHON" -V 2>&1)): ${PINS[*]}"
fi
"${PIP[@]}" "${PINS[@]}"

# The code: the Django-free pipeline package only.
mkdir -p "$STAGE_DIR/media_jobs"
cp "$ROOT/media_jobs/__init__.py" "$STAGE_DIR/media_jobs/__init__.py"
(cd "$ROOT/media_jobs" && find pipeline -name '*.py' -not -path '*/__pycache__/*' -print0 |
  while IFS= read -r -d '' file; do
    mkdir -p "$STAGE_DIR/media_jobs/$(dirname "$file")"
    cp "$file" "$STAGE_DIR/media_jobs/$file"
  done)
find "$STAGE_DIR" -name '__pycache__' -type d -prune -exec rm -rf {} +
if [ -e "$STAGE_DIR/django" ]; then echo "build_lambdas: django/ in the bundle" >&2; exit 1; fi

# Every function gets the same bundle (one package, one handler module each): zip it once.
BUNDLE="$(dirname "$STAGE_DIR")/$(basename "$STAGE_DIR").zip"
trap 'rm -rf "$STAGE_DIR" "$WHEEL_DIR" "$BUNDLE"' EXIT
# Reproducible zip: sorted entries, fixed timestamps and modes, so unchanged sources give
# byte-identical zips (and the same CodeSha256: redeploying them changes nothing).
"$PYTHON" - "$STAGE_DIR" "$BUNDLE" <<'PY'
import os, stat, sys, zipfile
from pathlib import Path

source, target = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as out:
    for path in files:
        entry = zipfile.ZipInfo(path.relative_to(source).as_posix(), (1980, 1, 1, 0, 0, 0))
        mode = 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644
        entry.external_attr = (mode | stat.S_IFREG) << 16
        entry.compress_type = zipfile.ZIP_DEFLATED
        with path.open("rb") as data, out.open(entry, "w") as sink:
            while chunk := data.read(1 << 20):
                sink.write(chunk)
PY
mkdir -p "$OUT_DIR"
for fn in $FUNCTIONS; do
  if [ ! -f "$STAGE_DIR/media_jobs/pipeline/handlers/$fn.py" ]; then
    echo "build_lambdas: no handler module for $fn" >&2; exit 1
  fi
  cp "$BUNDLE" "$OUT_DIR/$fn.zip.partial" && mv "$OUT_DIR/$fn.zip.partial" "$OUT_DIR/$fn.zip"
  echo "build_lambdas: $OUT_DIR/$fn.zip ($(du -h "$OUT_DIR/$fn.zip" | cut -f1))"
done
