#!/usr/bin/env bash
# Web UI checks: install (only when needed), lint + type-check, unit tests, production build to web/dist.
set -euo pipefail

cd "$(dirname "$0")/../web"

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm not found; install Node.js 20 or newer" >&2
  exit 1
fi

# npm ci writes node_modules/.package-lock.json; reinstall when it is missing or older than the lockfile.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# The API types are generated from the server's OpenAPI document; a stale copy fails here.
if [ -f ../api/openapi.json ]; then
  generated="$(mktemp)"
  trap 'rm -f "$generated"' EXIT
  npx --no-install openapi-typescript ../api/openapi.json -o "$generated" >/dev/null 2>&1
  if ! cmp -s "$generated" src/api/schema.d.ts; then
    echo "error: web/src/api/schema.d.ts is out of date with api/openapi.json; run: (cd web && npm run gen:api)" >&2
    exit 1
  fi
fi

npm run lint
npm test
npm run build
