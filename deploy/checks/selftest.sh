#!/usr/bin/env bash
# the deploy check's own test: breaks the checked files one way at a time, in a copy, and
# expects scripts/deploy-check.sh's checker to fail on each. run it after changing the checker
# (scripts/deploy-check.sh must have run once, to install the tools):
#   deploy/checks/selftest.sh
set -u
src="$(cd "$(dirname "$0")/../.." && pwd)"
V=$src/target/deploy-check-venv; N=$src/target/deploy-check-node
[ -x "$V/bin/python" ] || { echo "selftest: run scripts/deploy-check.sh first" >&2; exit 1; }
missed=0; total=0
run() {  # name, file, text, replacement (the first occurrence; every one for a series name)
  local t; t=$(mktemp -d)
  total=$((total + 1))
  mkdir -p $t/cli $t/api $t/scheduler $t/web
  cp -r $src/deploy $t/; cp -r $src/cli/src $src/cli/Cargo.toml $t/cli/; cp -r $src/api/src $src/api/openapi.json $t/api/
  cp -r $src/scheduler/src $src/scheduler/migrations $t/scheduler/; cp $src/web/package.json $src/web/package-lock.json $t/web/
  python3 - "$t/$2" "$3" "$4" <<'PY'
import sys
p, old, new = sys.argv[1:]
s = open(p).read()
assert old in s, f"mutation anchor not found in {p}: {old!r}"
open(p, "w").write(s.replace(old, new, -1 if new.startswith("constellation_tile_rate") else 1))
PY
  out=$("$V/bin/python" "$t/deploy/checks/deploy_check.py" "$V/bin" "$N" 2>&1); rc=$?
  if [ $rc -ne 0 ]; then echo "caught: $1: $(echo "$out" | head -n 1)"; else echo "MISSED: $1"; missed=$((missed + 1)); fi
  rm -rf $t
}
run "k8s typo in field"        deploy/k8s/api.yaml "readinessProbe:" "readinesProbe:"
run "k8s wrong type"           deploy/k8s/api.yaml "replicas: 2" "replicas: two"
run "k8s bad yaml"             deploy/k8s/worker.yaml "  revisionHistoryLimit: 5" " revisionHistoryLimit: 5\n  x: [\n"
run "service selector"         deploy/k8s/api.yaml "  selector:
    app.kubernetes.io/name: constellation-api" "  selector:
    app.kubernetes.io/name: constellation-apx"
run "unknown cli flag"         deploy/k8s/worker.yaml "- --lease-secs" "- --lease-seconds"
run "unknown subcommand"       deploy/k8s/migrate-job.yaml 'args: ["migrate"]' 'args: ["migrations"]'
run "undefined \$(VAR)"        deploy/k8s/api.yaml '$(CONSTELLATION_DATA_DIR)' '$(CONSTELLATION_DATADIR)'
run "missing secret key"       deploy/k8s/worker.yaml "key: DATABASE_URL" "key: DB_URL"
run "no gpu"                   deploy/k8s/worker.yaml '              nvidia.com/gpu: "1"
          securityContext' '              cpu: "8"
          securityContext'
run "short grace"              deploy/k8s/worker.yaml "terminationGracePeriodSeconds: 300" "terminationGracePeriodSeconds: 30"
run "wrong probe path"         deploy/k8s/api.yaml "path: /readyz" "path: /ready"
run "unlisted manifest"        deploy/k8s/kustomization.yaml "  - nats.yaml
" ""
run "keda wrong type"          deploy/k8s/keda.yaml "minReplicaCount: 0" "minReplicaCount: none"
run "keda missing target"      deploy/k8s/keda.yaml "  scaleTargetRef:
    name: constellation-worker" "  scaleTargetRef:
    kind: Deployment"
run "keda unknown field"       deploy/k8s/keda.yaml "cooldownPeriod: 300" "cooldownPeriods: 300"
run "keda wrong table"         deploy/k8s/keda.yaml "FROM task WHERE" "FROM tasks WHERE"
run "keda wrong state"         deploy/k8s/keda.yaml "state = 'queued'" "state = 'pending'"
run "keda trigger typo"        deploy/k8s/keda.yaml "targetQueryValue: \"128\"" "targetQueryValu: \"128\""
run "compose unknown key"      deploy/compose.yaml "    stop_grace_period: 5m" "    stop_grace_periods: 5m"
run "compose bad depends"      deploy/compose.yaml "    depends_on:
      - prometheus" "    depends_on:
      - prometheuss"
run "compose missing mount"    deploy/compose.yaml "./prometheus/prometheus.yml:" "./prometheus/prom.yml:"
run "compose gpu bad type"     deploy/compose.gpu.yaml "count: 1" "count: [1]"
run "docker lint (apt no -y)"  deploy/docker/api.Dockerfile "apt-get install -y --no-install-recommends libgdal32" "apt-get install --no-install-recommends libgdal32"
run "docker root user"         deploy/docker/worker.Dockerfile "USER 10001:10001" "USER root"
run "docker bad COPY"          deploy/docker/api.Dockerfile "COPY web/package.json" "COPY web/packages.json"
run "docker bad feature"       deploy/docker/worker.Dockerfile "--features cuda,nvml,wgpu" "--features cuda,nvml,vulkan"
run "dashboard unknown series" deploy/grafana/dashboards/constellation-queue.json "max(constellation_tiles_per_second)" "max(constellation_bytes_per_second)"
run "dashboard bad json"       deploy/grafana/dashboards/constellation-api.json '"panels": [' '"panels": [,'
run "worker series unknown"    deploy/grafana/dashboards/constellation-workers.json "constellation_worker_claim_seconds_bucket" "constellation_worker_claim_secs_bucket"
run "worker flag typo"         deploy/k8s/worker.yaml "- --metrics-listen" "- --metrics-addr"
run "metric removed from code" api/src/ops.rs "constellation_tiles_per_second" "constellation_tile_rate"
echo "selftest: $((total - missed)) of $total broken copies caught"
[ "$missed" -eq 0 ]
