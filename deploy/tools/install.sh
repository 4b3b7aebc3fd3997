#!/usr/bin/env bash
# Installs the tools of the chart checks (tests/test_helm_chart.py) from the package
# registries, cached between runs under $TWOWAY_TOOLS_DIR (default ~/.cache/twoway/tools):
#   helm     built from its Go module (go install), as `bin/helm`
#   checkov  the policy scanner, from PyPI into a virtual environment of its own
#   the CRD schemas of Strimzi, KEDA, the Prometheus Operator and External Secrets, from npm
#            (deploy/helm/crd-check, npm ci from its lock file)
# Nothing is fetched when the cached versions are already there.
set -euo pipefail

HELM_VERSION=v3.22.0
CHECKOV_VERSION=3.3.30
PYTHON=${PYTHON:-python3}

root=$(cd "$(dirname "$0")/../.." && pwd)
tools=${TWOWAY_TOOLS_DIR:-$HOME/.cache/twoway/tools}
mkdir -p "$tools/bin"

helm_bin="$tools/helm-$HELM_VERSION/helm"
if [ ! -x "$helm_bin" ]; then
  echo "installing helm $HELM_VERSION (go install, a few minutes the first time)" >&2
  GOBIN="$tools/helm-$HELM_VERSION" GOFLAGS=-buildvcs=false \
    go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
ln -sfn "$helm_bin" "$tools/bin/helm"

checkov_env="$tools/checkov-$CHECKOV_VERSION"
if [ ! -x "$checkov_env/bin/checkov" ]; then
  echo "installing checkov $CHECKOV_VERSION" >&2
  rm -rf "$checkov_env"
  "$PYTHON" -m uv venv -q --python 3.11 "$checkov_env"
  "$PYTHON" -m uv pip install -q --python "$checkov_env/bin/python" "checkov==$CHECKOV_VERSION"
fi
ln -sfn "$checkov_env/bin/checkov" "$tools/bin/checkov"

crd_check="$root/deploy/helm/crd-check"
stamp="$crd_check/node_modules/.installed-lock"
if ! cmp -s "$crd_check/package-lock.json" "$stamp" 2>/dev/null \
  || [ ! -f "$crd_check/node_modules/typescript/package.json" ]; then
  echo "installing the CRD schemas (npm ci)" >&2
  (cd "$crd_check" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$crd_check/package-lock.json" "$stamp"
fi
