"""Offline checks of everything under deploy/: the Kubernetes manifests against the Kubernetes
schemas, the KEDA objects against KEDA's CRD schema, the compose files against the compose
specification, the Dockerfiles with hadolint, the Grafana dashboards against the series that
/metrics exposes, and the references between all of these and the code (subcommands, flags,
features, routes, tables). Run by scripts/deploy-check.sh, which installs the tools.

Every problem is printed on one line as `deploy-check: <file>: <reason>`; the exit status is 1
when there is any.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# the oldest kubernetes we claim (keda 2.17 and later need 1.30) and the newest schemas we have
K8S_VERSIONS = ("1.30.0", "1.37.0")
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
# a worker drains the batch in hand before it exits; a finalize task assembles a whole cog
MIN_WORKER_GRACE_SECS = 120

problems: list[str] = []


def problem(path: Path | str, reason: str) -> None:
    where = path.relative_to(ROOT) if isinstance(path, Path) else path
    problems.append(f"deploy-check: {where}: {reason}")


def load_yaml_docs(path: Path) -> list[dict]:
    try:
        with path.open() as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        problem(path, f"not valid yaml: {str(e).splitlines()[0]}")
        return []
    for d in docs:
        if not isinstance(d, dict):
            problem(path, "a document is not a mapping")
            return []
    return docs


# ---------------------------------------------------------------------------- the code's facts


def cli_commands() -> dict[str, set[str]]:
    """Each subcommand of the full build with the long flags it takes, read from cli/src."""
    src = {p.name: p.read_text() for p in (ROOT / "cli" / "src").glob("*.rs")}
    text = "\n".join(src.values())
    structs: dict[str, tuple[set[str], set[str]]] = {}
    for m in re.finditer(r"struct (\w+) \{(.*?)\n\}", text, re.S):
        flags, flattened = set(), set()
        pending = None
        for line in m.group(2).splitlines():
            line = line.strip()
            if line.startswith("#[arg(") and re.search(r"\blong\b", line):
                named = re.search(r'long = "([^"]+)"', line)
                pending = named.group(1) if named else ""
            elif line.startswith("#[command(flatten)]"):
                pending = None
                flattened.add("next")
            elif re.match(r"(pub(\(crate\))? )?\w+: ", line):
                field, ty = re.match(r"(?:pub(?:\(crate\))? )?(\w+): ([\w:<>]+)", line).groups()
                if "next" in flattened:
                    flattened.discard("next")
                    flattened.add(ty.split("::")[-1])
                elif pending is not None:
                    flags.add(pending or field.replace("_", "-"))
                pending = None
        structs[m.group(1)] = (flags, flattened)

    def flags_of(name: str) -> set[str]:
        own, nested = structs.get(name, (set(), set()))
        out = set(own)
        for n in nested:
            out |= flags_of(n)
        return out

    full = src.get("full.rs", "")
    enum = re.search(r"enum FullCommand \{(.*?)\n\}", full, re.S)
    commands: dict[str, set[str]] = {}
    for m in re.finditer(r"^\s{4}(\w+)(?:\((?:\w+::)*(\w+)\)|\s*\{|,)", enum.group(1) if enum else "", re.M):
        variant, args = m.group(1), m.group(2)
        name = re.sub(r"(?<!^)([A-Z])", r"-\1", variant).lower()
        commands[name] = flags_of(args) if args else set()
    return commands


def cli_features() -> set[str]:
    text = (ROOT / "cli" / "Cargo.toml").read_text()
    section = re.search(r"^\[features\]\n(.*?)(?=^\[)", text, re.S | re.M)
    return set(re.findall(r"^(\w+) =", section.group(1), re.M)) if section else set()


def api_routes() -> set[str]:
    text = (ROOT / "api" / "src" / "lib.rs").read_text()
    return set(re.findall(r'\.route\("([^"]+)"', text))


def exposed_series() -> set[str]:
    """Series names that the code writes into /metrics (api and scheduler sources): the API's
    and the workers' (`worker --metrics-listen`), and the GPU samples under DCGM's names."""
    names: set[str] = set()
    for crate in ("api", "scheduler"):
        for p in (ROOT / crate / "src").rglob("*.rs"):
            text = p.read_text()
            names |= set(re.findall(r"# TYPE (\w+) ", text))
            # sample lines: "name{labels} value" or "name value" inside format strings
            names |= set(re.findall(r'"(constellation_\w+)(?:\{|\s)', text))
            # families declared through api::prom (histograms also expose _bucket/_sum/_count)
            for kind, name in re.findall(r'(Histograms|Counters)::new\(\s*"(\w+)"', text):
                names.add(name)
                if kind == "Histograms":
                    names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            # the GPU samples under the DCGM exporter's names
            names |= set(re.findall(r'"(DCGM_FI_\w+)"', text))
    return names


def task_table() -> tuple[set[str], set[str]]:
    """The hot task table's columns and states, from the migrations."""
    sql = "\n".join(p.read_text() for p in sorted((ROOT / "scheduler" / "migrations").glob("*.sql")))
    m = re.search(r"CREATE TABLE task \((.*?)\n\)", sql, re.S)
    if not m:
        return set(), set()
    body = m.group(1)
    columns = set(re.findall(r"^\s{4}([a-z_]+)\s+[a-z]", body, re.M))
    states = re.search(r"state\s+text NOT NULL CHECK \(state IN \(([^)]*)\)\)", body)
    return columns, set(re.findall(r"'(\w+)'", states.group(1))) if states else set()


def check_command(path: Path, what: str, args: list, commands: dict[str, set[str]]) -> None:
    """A `constellation` command line: a known subcommand and only its flags."""
    if not args:
        problem(path, f"{what}: no subcommand given to constellation")
        return
    sub = str(args[0])
    if sub not in commands:
        problem(path, f"{what}: constellation has no subcommand {sub!r}")
        return
    for a in args[1:]:
        a = str(a)
        if a.startswith("--"):
            flag = a[2:].split("=", 1)[0]
            if flag not in commands[sub]:
                problem(path, f"{what}: constellation {sub} has no flag --{flag}")


# ---------------------------------------------------------------------------- kubernetes


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in WORKLOADS:
        return doc.get("spec", {}).get("template", {}).get("spec")
    return None


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s(commands: dict[str, set[str]]) -> tuple[int, list[tuple[Path, dict]]]:
    kustomization = K8S / "kustomization.yaml"
    files = sorted(p for p in K8S.glob("*.yaml") if p != kustomization)
    listed: list[str] = []
    for k in load_yaml_docs(kustomization):
        listed = k.get("resources", [])
    for name in listed:
        if not (K8S / name).is_file():
            problem(kustomization, f"lists {name}, which does not exist")
    for p in files:
        if p.name not in listed and not p.name.endswith(".example.yaml"):
            problem(kustomization, f"does not list {p.name} (list it, or name it *.example.yaml)")

    docs: list[tuple[Path, dict]] = []
    for p in files:
        docs += [(p, d) for d in load_yaml_docs(p)]

    keda: list[tuple[Path, dict]] = []
    for p, d in docs:
        name = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        if d.get("kind") in KEDA_KINDS:
            keda.append((p, d))
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                at = "/".join(str(x) for x in e.path) or "(top)"
                problem(p, f"{name} invalid for kubernetes {version} at {at}: {e.message}")
                break
            except kubernetes_validate.SchemaNotFoundError:
                problem(p, f"{name}: no kubernetes {version} schema for {d.get('apiVersion')} {d.get('kind')}")
                break

    by_kind: dict[str, dict[str, dict]] = {}
    for _, d in docs:
        by_kind.setdefault(d.get("kind", ""), {})[d.get("metadata", {}).get("name", "")] = d
        ns = d.get("metadata", {}).get("namespace")
        if d.get("kind") != "Namespace" and ns != "constellation":
            problem(K8S, f"{d.get('kind')}/{d.get('metadata', {}).get('name')} is not in namespace constellation")
    config = {n: set(d.get("data", {})) for n, d in by_kind.get("ConfigMap", {}).items()}
    secrets = {
        n: set(d.get("data", {})) | set(d.get("stringData", {})) for n, d in by_kind.get("Secret", {}).items()
    }
    pvcs = set(by_kind.get("PersistentVolumeClaim", {}))
    workloads = [(p, d) for p, d in docs if d.get("kind") in WORKLOADS]

    for p, d in workloads:
        name = f"{d['kind']}/{d['metadata']['name']}"
        spec = pod_spec(d) or {}
        template_labels = d["spec"]["template"].get("metadata", {}).get("labels", {})
        if d["kind"] != "Job" and not labels_match(d["spec"].get("selector", {}).get("matchLabels", {}), template_labels):
            problem(p, f"{name}: selector does not match the pod template's labels")
        security = spec.get("securityContext", {})
        if security.get("runAsNonRoot") is not True:
            problem(p, f"{name}: pods must set runAsNonRoot: true")
        for v in spec.get("volumes", []):
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in pvcs:
                problem(p, f"{name}: volume {v['name']} names claim {claim}, which no manifest defines")
        for c in spec.get("containers", []):
            cname = f"{name} container {c['name']}"
            image = c.get("image", "")
            if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                problem(p, f"{cname}: image {image!r} is not pinned to a tag")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problem(p, f"{cname}: set allowPrivilegeEscalation: false")
            env_names = {e["name"] for e in c.get("env", [])}
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef", {}).get("name")
                if ref and ref not in config:
                    problem(p, f"{cname}: envFrom names configmap {ref}, which no manifest defines")
                env_names |= config.get(ref, set())
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref.get("key") not in secrets.get(ref.get("name"), set()):
                    problem(p, f"{cname}: env {e['name']} reads {ref.get('name')}/{ref.get('key')}, which no secret manifest has")
            for a in c.get("args", []) + c.get("command", []):
                for var in re.findall(r"\$\((\w+)\)", str(a)):
                    if var not in env_names:
                        problem(p, f"{cname}: args use $({var}), which its environment does not define")
            if image.split(":")[0].split("/")[-1].startswith("constellation-"):
                check_command(p, cname, c.get("args", []), commands)

    def workload_for(selector: dict) -> dict | None:
        for _, d in workloads:
            if labels_match(selector, d["spec"]["template"].get("metadata", {}).get("labels", {})):
                return d
        return None

    for p, d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name")
        if kind == "Service":
            target = workload_for(d["spec"].get("selector", {}))
            if target is None:
                problem(p, f"Service/{name}: its selector matches no workload")
                continue
            ports = {
                port.get("name")
                for c in pod_spec(target).get("containers", [])
                for port in c.get("ports", [])
            }
            for port in d["spec"].get("ports", []):
                if isinstance(port.get("targetPort"), str) and port["targetPort"] not in ports:
                    problem(p, f"Service/{name}: targetPort {port['targetPort']} is no container port of {target['metadata']['name']}")
        elif kind == "PodDisruptionBudget":
            if workload_for(d["spec"].get("selector", {}).get("matchLabels", {})) is None:
                problem(p, f"PodDisruptionBudget/{name}: its selector matches no workload")
        elif kind == "Ingress":
            for rule in d["spec"].get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    svc = path["backend"]["service"]
                    defined = by_kind.get("Service", {}).get(svc["name"])
                    if defined is None:
                        problem(p, f"Ingress/{name}: backend service {svc['name']} is not defined")
                    elif svc.get("port", {}).get("name") not in {x.get("name") for x in defined["spec"]["ports"]}:
                        problem(p, f"Ingress/{name}: service {svc['name']} has no port {svc.get('port')}")

    # what the issue asks of the api and the workers in particular
    routes = api_routes()
    api = by_kind.get("Deployment", {}).get("constellation-api")
    if api is None:
        problem(K8S, "no Deployment/constellation-api")
    else:
        c = pod_spec(api)["containers"][0]
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got = c.get(probe, {}).get("httpGet", {}).get("path")
            if got != path:
                problem(K8S / "api.yaml", f"constellation-api {probe} must get {path}, not {got}")
        for path in ("/healthz", "/readyz", "/metrics"):
            if path not in routes:
                problem(ROOT / "api/src/lib.rs", f"the api has no route {path}, which the manifests use")
        if not any(d["kind"] == "PodDisruptionBudget" for _, d in docs):
            problem(K8S, "no PodDisruptionBudget for the api")
    worker = by_kind.get("Deployment", {}).get("constellation-worker")
    if worker is None:
        problem(K8S, "no Deployment/constellation-worker")
    else:
        spec = pod_spec(worker)
        c = spec["containers"][0]
        if str(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")) != "1":
            problem(K8S / "worker.yaml", "the worker must have a limit of one nvidia.com/gpu")
        if not any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])):
            problem(K8S / "worker.yaml", "the worker must tolerate the nvidia.com/gpu taint")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace < MIN_WORKER_GRACE_SECS:
            problem(K8S / "worker.yaml", f"terminationGracePeriodSeconds {grace} leaves too little time to drain (at least {MIN_WORKER_GRACE_SECS})")
    job = by_kind.get("Job", {}).get("constellation-migrate")
    if job is None or pod_spec(job)["containers"][0].get("args", [None])[0] != "migrate":
        problem(K8S, "no Job/constellation-migrate running constellation migrate")

    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True)
        if r.returncode != 0:
            problem(kustomization, f"kubectl kustomize fails: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        else:
            rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
            expected = sum(1 for p, _ in docs if p.name in listed)
            if len(rendered) != expected:
                problem(kustomization, f"renders {len(rendered)} objects, the listed files hold {expected}")
    return len(docs) - len(keda), keda


# ---------------------------------------------------------------------------- keda

SCALED_OBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}
POSTGRESQL_METADATA = {
    "query", "targetQueryValue", "activationTargetQueryValue", "connectionFromEnv", "host", "port",
    "userName", "dbName", "sslmode", "passwordFromEnv",
}
POSTGRESQL_AUTH = {"connection", "password", "host", "port", "userName", "dbName", "sslmode"}


def check_keda(keda: list[tuple[Path, dict]], node_dir: Path, by_name: dict) -> None:
    columns, states = task_table()
    if not columns or not states:
        problem(ROOT / "scheduler/migrations", "cannot find the task table and its states")
    auths = {d["metadata"]["name"]: d for _, d in keda if d["kind"] == "TriggerAuthentication"}
    for p, d in keda:
        name = f"{d['kind']}/{d['metadata'].get('name')}"
        if d.get("apiVersion") != "keda.sh/v1alpha1":
            problem(p, f"{name}: apiVersion must be keda.sh/v1alpha1")
        if d["kind"] == "TriggerAuthentication":
            for ref in d.get("spec", {}).get("secretTargetRef", []):
                if ref.get("parameter") not in POSTGRESQL_AUTH:
                    problem(p, f"{name}: {ref.get('parameter')!r} is no parameter of the postgresql scaler")
                if ref.get("key") not in by_name.get(("Secret", ref.get("name")), set()):
                    problem(p, f"{name}: reads {ref.get('name')}/{ref.get('key')}, which no secret manifest has")
            continue
        spec = d.get("spec", {})
        for key in set(spec) - SCALED_OBJECT_SPEC:
            problem(p, f"{name}: unknown field spec.{key}")
        target = spec.get("scaleTargetRef", {}).get("name")
        if ("Deployment", target) not in by_name:
            problem(p, f"{name}: scaleTargetRef {target} is no Deployment of the manifests")
        for t in spec.get("triggers", []):
            if t.get("type") != "postgresql":
                continue
            meta = t.get("metadata", {})
            for key in set(meta) - POSTGRESQL_METADATA:
                problem(p, f"{name}: unknown postgresql trigger field {key}")
            for key in ("targetQueryValue", "activationTargetQueryValue"):
                if key in meta and not re.fullmatch(r"\d+(\.\d+)?", str(meta[key])):
                    problem(p, f"{name}: {key} must be a number in a string, not {meta[key]!r}")
            auth = t.get("authenticationRef", {}).get("name")
            if auth and auth not in auths:
                problem(p, f"{name}: authenticationRef {auth} is not defined")
            query = meta.get("query", "")
            tables = re.findall(r"\bFROM\s+(\w+)", query, re.I)
            if tables != ["task"]:
                problem(p, f"{name}: the query must count rows of the task table, it reads {tables}")
            for literal in re.findall(r"'(\w+)'", query):
                if literal not in states:
                    problem(p, f"{name}: the query names task state {literal!r}; the migrations allow {sorted(states)}")
            for ident in re.findall(r"\b([a-z_]+)\s*(?:=|<=|>=|<|>|IN)", query):
                if ident not in columns:
                    problem(p, f"{name}: the query compares {ident}, which is no column of task")

    # the crd schema itself, through the compiled validators of @kubernetes-models/keda
    script = DEPLOY / "checks" / "keda_validate.mjs"
    r = subprocess.run(
        ["node", str(script), str(node_dir)],
        input=json.dumps([{"file": str(p.relative_to(ROOT)), "doc": d} for p, d in keda]),
        capture_output=True,
        text=True,
    )
    for line in r.stdout.splitlines():
        problems.append(f"deploy-check: {line}")
    if r.returncode != 0 and not r.stdout.strip():
        problem(script, f"failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


# ---------------------------------------------------------------------------- compose


def check_compose(venv_bin: Path, commands: dict[str, set[str]]) -> int:
    files = [DEPLOY / "compose.yaml", DEPLOY / "compose.gpu.yaml"]
    r = subprocess.run(
        [str(venv_bin / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "-o", "text"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        lines = [l.strip() for l in (r.stdout + r.stderr).splitlines() if l.strip()]
        detail = next((l for l in lines if "::" in l or "is not" in l or "Additional" in l), lines[-1] if lines else "")
        problem(DEPLOY / "compose.yaml", f"not a valid compose file: {detail.replace(str(ROOT) + '/', '')}")
    base = (load_yaml_docs(files[0]) or [{}])[0]
    services = base.get("services", {})
    volumes = set(base.get("volumes", {}) or {})
    for f in files[1:]:
        for name in (load_yaml_docs(f) or [{}])[0].get("services", {}):
            if name not in services:
                problem(f, f"overrides service {name}, which compose.yaml does not define")
    wanted = {"postgres", "nats", "migrate", "api", "worker", "prometheus", "grafana"}
    for name in sorted(wanted - set(services)):
        problem(files[0], f"no {name} service")
    for name, s in services.items():
        deps = s.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                problem(files[0], f"service {name} depends on {dep}, which is not defined")
        build = s.get("build")
        if isinstance(build, dict):
            context = (files[0].parent / build.get("context", ".")).resolve()
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problem(files[0], f"service {name}: {build.get('dockerfile')} is not in its build context")
        for v in s.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("."):
                if not (files[0].parent / src).exists():
                    problem(files[0], f"service {name} mounts {src}, which does not exist")
            elif src not in volumes and not src.startswith("/"):
                problem(files[0], f"service {name} mounts volume {src}, which is not declared")
        if str(s.get("image", "")).startswith("constellation-") and isinstance(s.get("command"), list):
            check_command(files[0], f"service {name}", s["command"], commands)
    for f in files[1:]:
        for name, s in (load_yaml_docs(f) or [{}])[0].get("services", {}).items():
            if isinstance(s.get("command"), list):
                check_command(f, f"service {name}", s["command"], commands)
    return len(services)


# ---------------------------------------------------------------------------- dockerfiles


def check_dockerfiles(venv_bin: Path, features: set[str]) -> int:
    files = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
    config = DEPLOY / "docker" / "hadolint.yaml"
    r = subprocess.run(
        [str(venv_bin / "hadolint"), "--no-color", "--config", str(config)] + [str(f) for f in files],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        for line in (r.stdout + r.stderr).strip().splitlines():
            problems.append(f"deploy-check: hadolint: {line.replace(str(ROOT) + '/', '')}")
    for f in files:
        text = f.read_text()
        if not (f.parent / (f.name + ".dockerignore")).is_file():
            problem(f, "has no .dockerignore beside it (the context would carry target/ and node_modules/)")
        lines = re.sub(r"\\\n", " ", text).splitlines()
        stages = [l for l in lines if l.startswith("FROM ")]
        last = lines[lines.index(stages[-1]):] if stages else []
        users = [l.split()[1] for l in last if l.startswith("USER ")]
        if not users or users[-1].split(":")[0] in ("0", "root"):
            problem(f, "the final stage must run as a non-root USER")
        if not any(l.startswith("ENTRYPOINT") and "constellation" in l for l in last):
            problem(f, "the final stage's ENTRYPOINT is not the constellation binary")
        for l in lines:
            if l.startswith("COPY ") and "--from=" not in l:
                parts = [x for x in l.split()[1:] if not x.startswith("--")]
                for src in parts[:-1]:
                    if src != "." and not (ROOT / src).exists():
                        problem(f, f"COPY {src}: no such path in the repository")
            m = re.search(r"--features\s+([\w,-]+)", l)
            if m:
                for feat in m.group(1).split(","):
                    if feat not in features:
                        problem(f, f"cargo feature {feat} is not a feature of cli/Cargo.toml")
    return len(files)


# ---------------------------------------------------------------------------- grafana, prometheus


def check_grafana() -> int:
    series = exposed_series()
    if not series:
        problem(ROOT / "api/src", "found no series written to /metrics")
    boards = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    uids: set[str] = set()
    for b in boards:
        try:
            d = json.loads(b.read_text())
        except json.JSONDecodeError as e:
            problem(b, f"not valid json: {e}")
            continue
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in d:
                problem(b, f"no {key}")
        if d.get("uid") in uids:
            problem(b, f"uid {d.get('uid')} is used twice")
        uids.add(d.get("uid"))
        ids = [p.get("id") for p in d.get("panels", [])]
        if len(ids) != len(set(ids)):
            problem(b, "panel ids repeat")
        for panel in d.get("panels", []):
            if not panel.get("targets"):
                problem(b, f"panel {panel.get('title')!r} has no query")
            for t in panel.get("targets", []):
                expr = t.get("expr", "")
                used = set(re.findall(r"\b(constellation_\w+|DCGM_FI_\w+)", expr))
                if not used:
                    problem(b, f"panel {panel.get('title')!r}: query {expr!r} reads no constellation series")
                for name in sorted(used - series):
                    problem(b, f"panel {panel.get('title')!r}: {name} is not exposed by /metrics")
                if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                    problem(b, f"panel {panel.get('title')!r}: unbalanced brackets in {expr!r}")
    sources = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
    uids_ds = {ds.get("uid") for doc in load_yaml_docs(sources) for ds in doc.get("datasources", [])}
    if "prometheus" not in uids_ds:
        problem(sources, "no datasource with uid prometheus, which the dashboards default to")
    load_yaml_docs(DEPLOY / "grafana" / "provisioning" / "dashboards" / "constellation.yaml")
    prom = DEPLOY / "prometheus" / "prometheus.yml"
    for doc in load_yaml_docs(prom):
        jobs = doc.get("scrape_configs", [])
        if not any(j.get("metrics_path") == "/metrics" for j in jobs):
            problem(prom, "no scrape of /metrics")
    return len(boards)


def main() -> int:
    venv_bin = Path(sys.argv[1])
    node_dir = Path(sys.argv[2])
    commands = cli_commands()
    if not {"serve", "worker", "migrate"} <= set(commands):
        problem(ROOT / "cli/src/full.rs", f"cannot find the serve, worker and migrate subcommands (found {sorted(commands)})")
    n_k8s, keda = check_k8s(commands)
    by_name: dict = {}
    for p in K8S.glob("*.yaml"):
        for d in load_yaml_docs(p):
            fields = set(d.get("data", {}) or {}) | set(d.get("stringData", {}) or {})
            by_name[(d.get("kind"), d.get("metadata", {}).get("name"))] = fields
    check_keda(keda, node_dir, by_name)
    n_compose = check_compose(venv_bin, commands)
    n_docker = check_dockerfiles(venv_bin, cli_features())
    n_boards = check_grafana()
    if problems:
        for p in problems:
            print(p)
        return 1
    print(
        f"deploy-check: ok: {n_k8s} kubernetes objects (kubernetes {' and '.join(K8S_VERSIONS)}, strict), "
        f"{len(keda)} keda objects, {n_compose} compose services, {n_docker} dockerfiles, {n_boards} dashboards"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
