#!/usr/bin/env bash
# Update every Lambda function's code from aws/lambdas/bin/<function>.zip, then both state
# machines from aws/step_functions/*.json with their ${...} placeholders filled.
# Run scripts/build_lambdas.sh first. Options and environment: scripts/deploy_lambdas.py --help
# (STAGE, AWS_REGION, MEDIACONVERT_ROLE_ARN; AWS_ENDPOINT_URL for a local endpoint).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
exec "$PYTHON" "$ROOT/scripts/deploy_lambdas.py" "$@"
