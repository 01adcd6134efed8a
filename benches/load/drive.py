#!/usr/bin/env python3
"""Drives the API load benchmark against a running `constellation serve`: seeds jobs over
synthetic scenes (a worker finishes them), runs fixed-rate reads with oha per endpoint and as
a mix, runs the WebSocket fan-out with wsfan, samples CPU and load while each run lasts, and
writes benches/results/load-<machine>.json and .md.

Started by scripts/load-bench.sh, which builds the binaries, creates the database and starts
the server; everything it needs comes in through the environment (see `Env`).
"""

import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def log(msg):
    print(f"load-bench: {msg}", file=sys.stderr, flush=True)


class Env:
    """The settings scripts/load-bench.sh passes."""

    def __init__(self):
        e = os.environ
        self.base = e["LB_BASE_URL"].rstrip("/")
        self.bin = e["LB_BIN"]
        self.oha = e["LB_OHA"]
        self.wsfan = e["LB_WSFAN"]
        self.db_url = e["DATABASE_URL"]
        self.work = Path(e["LB_WORK"])
        self.results = Path(e["LB_RESULTS"])
        self.machine = e["LB_MACHINE"]
        self.server_pid = int(e["LB_SERVER_PID"])
        self.server_log = Path(e["LB_SERVER_LOG"])
        self.rate = float(e.get("LB_RATE", "1000"))
        self.duration_secs = float(e.get("LB_DURATION_SECS", "30"))
        self.connections = int(e.get("LB_CONNECTIONS", "32"))
        self.subscribers = int(e.get("LB_SUBSCRIBERS", "1000"))
        self.ws_rates = [float(r) for r in e.get("LB_WS_RATES", "20,100").split(",") if r]
        self.ws_secs = float(e.get("LB_WS_SECS", "30"))
        self.ws_jobs = int(e.get("LB_WS_JOBS", "8"))
        self.small_jobs = int(e.get("LB_SMALL_JOBS", "60"))
        self.client_cpus = e.get("LB_CLIENT_CPUS", "1")
        self.rustc_wait_secs = float(e.get("LB_RUSTC_WAIT_SECS", "600"))
        self.source = e.get("LB_SOURCE", "")
        self.only = set(filter(None, e.get("LB_ONLY", "").split(",")))
        self.idle_busy_pct = float(e.get("LB_IDLE_BUSY_PCT", "25"))
        self.disturbed_cpu_pct = float(e.get("LB_DISTURBED_CPU_PCT", "30"))
        self.retries = int(e.get("LB_RETRIES", "2"))
        self.profile = e.get("LB_PROFILE", "") == "1"
        self.profile_rate = float(e.get("LB_PROFILE_RATE", "300"))


ENV = None
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- HTTP and the database


def http(method, path, body=None, timeout=60):
    """(status, headers, body bytes) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(ENV.base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(path):
    status, _, body = http("GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
    return json.loads(body)


def psql(sql):
    out = subprocess.run(
        ["psql", ENV.db_url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def head_seq():
    return int(psql("SELECT coalesce(max(seq), 0) FROM event") or 0)


def write_expected(after_seq, path):
    """The stored events after `after_seq` as `seq<TAB>kind` lines; returns how many."""
    rows = psql(f"SELECT seq || E'\\t' || kind FROM event WHERE seq > {after_seq} ORDER BY seq")
    lines = [l for l in rows.splitlines() if l.strip()]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


# ---------------------------------------------------------------- seeding


def fixtures(kind, size_px, seed, out):
    res = subprocess.run(
        [ENV.bin, "fixtures", "--kind", kind, "--size-px", str(size_px), "--seed", str(seed),
         "-o", str(out)],
        check=True, capture_output=True, text=True,
    )
    bands = {}
    for line in res.stdout.splitlines():
        role, _, path = line.partition("\t")
        if path:
            bands[role.strip()] = path.strip()
    return bands


def recipe_roles():
    out = subprocess.run([ENV.bin, "recipes", "--json"], check=True, capture_output=True,
                         text=True).stdout
    return {r["name"]: r["roles"] for r in json.loads(out)}


def submit(recipe, bands, roles, tile_px):
    wanted = roles.get(recipe) or list(bands)
    inputs = [{"role": r, "path": bands[r]} for r in wanted if r in bands]
    status, _, body = http("POST", "/v1/jobs",
                           {"recipe": recipe, "inputs": inputs, "tile_px": tile_px})
    if status != 201:
        raise RuntimeError(f"submitting {recipe} answered {status}: {body[:400]!r}")
    return json.loads(body)["id"]


def run_worker(threads=None):
    args = [ENV.bin, "worker", "--once", "--backend", "cpu"]
    if threads:
        args += ["--threads", str(threads)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL,
                            stderr=open(ENV.work / "worker.log", "ab"))


def seed():
    """Synthetic scenes, jobs over them, a worker that finishes them all."""
    roles = recipe_roles()
    big = fixtures("sentinel2", 2048, 7, ENV.work / "scenes" / "s2-2048")
    small = fixtures("sentinel2", 512, 11, ENV.work / "scenes" / "s2-512")
    started = time.time()
    target = submit("ndvi-sentinel2-l2a", big, roles, 256)
    submit("evi-sentinel2-l2a", big, roles, 512)
    for i in range(ENV.small_jobs):
        recipe = "ndvi-sentinel2-l2a" if i % 2 == 0 else "evi-sentinel2-l2a"
        submit(recipe, small, roles, 256)
    w = run_worker()
    if w.wait() != 0:
        raise RuntimeError(f"the seeding worker failed (see {ENV.work / 'worker.log'})")
    jobs = get_json("/v1/jobs?limit=500")["items"]
    states = {}
    for j in jobs:
        states[j["state"]] = states.get(j["state"], 0) + 1
    if states != {"succeeded": len(jobs)}:
        raise RuntimeError(f"seeded jobs did not all succeed: {states}")
    job = get_json(f"/v1/jobs/{target}")
    # A twin of the target job that no worker runs during the reads: its footprints are read
    # live on every request (a finished job's are kept in memory); cancelled after the reads.
    live = submit("ndvi-sentinel2-l2a", big, roles, 256)
    log(f"seeded {len(jobs)} jobs in {time.time() - started:.1f} s; target job {target}, "
        f"unfinished twin {live}")
    return {
        "jobs": len(jobs),
        "target_job": target,
        "live_job": live,
        "target_tiles": job["tiles_total"],
        "bbox": job["bbox"],
        "scenes": {"s2-2048": 2048, "s2-512": 512},
        "seconds": round(time.time() - started, 1),
    }


# ---------------------------------------------------------------- tiles


def lonlat_to_tile(lon, lat, z):
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def pick_tile(job, bbox):
    """A tile near the centre of the job's extent that has data (200), at the coarsest zoom
    where the extent spans more than one tile; and every tile of the extent one zoom finer."""
    w, s, e, n = bbox
    lon, lat = (w + e) / 2, (s + n) / 2
    for z in range(8, 17):
        x0, y0 = lonlat_to_tile(w, n, z)
        x1, y1 = lonlat_to_tile(e, s, z)
        if (x1 - x0 + 1) * (y1 - y0 + 1) < 4:
            continue
        x, y = lonlat_to_tile(lon, lat, z)
        path = f"/v1/jobs/{job}/tiles/{z}/{x}/{y}.png"
        status, headers, body = http("GET", path)
        if status == 200 and headers.get("Content-Type", headers.get("content-type")) == "image/png":
            zc = z + 1
            cx0, cy0 = lonlat_to_tile(w, n, zc)
            cx1, cy1 = lonlat_to_tile(e, s, zc)
            cold = [f"/v1/jobs/{job}/tiles/{zc}/{cx}/{cy}.png"
                    for cx in range(cx0, cx1 + 1) for cy in range(cy0, cy1 + 1)]
            return path, len(body), cold
    raise RuntimeError(f"no tile with data found for job {job} over {bbox}")


def cold_tiles(paths):
    """Each tile requested once (never rendered before): the render path's latency."""
    ms, statuses = [], {}
    for p in paths:
        t = time.perf_counter()
        status, _, _ = http("GET", p)
        ms.append((time.perf_counter() - t) * 1e3)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ms.sort()
    return {"tiles": len(paths), "statuses": statuses, "latency_ms": summary(ms)}


# ---------------------------------------------------------------- statistics and sampling


def percentile(sorted_values, pct):
    if not sorted_values:
        return None
    rank = math.ceil(pct / 100.0 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def summary(sorted_values):
    if not sorted_values:
        return {"count": 0}
    r = lambda v: round(v, 3)
    return {
        "count": len(sorted_values),
        "p50": r(percentile(sorted_values, 50)),
        "p90": r(percentile(sorted_values, 90)),
        "p99": r(percentile(sorted_values, 99)),
        "max": r(sorted_values[-1]),
    }


def pid_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime are fields 14..17 (1-based); after the comm they
        # start at index 11.
        return sum(int(v) for v in parts[11:15])
    except (OSError, IndexError, ValueError):
        return 0


def db_backends():
    """Pids of the PostgreSQL backends connected to the benchmark's database."""
    out = psql("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
               "AND pid <> pg_backend_pid()")
    return [int(p) for p in out.split()]


def comm_pids(name):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == name:
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class Sampler:
    """CPU time of the server, the load client and every PostgreSQL process, machine CPU use,
    the 1-minute load average and runnable threads, sampled every second while a run lasts."""

    def __init__(self, client_pid=None, extra=None):
        self.client_pid = client_pid
        self.extra = extra or {}
        self.loadavg, self.running, self.rustc = [], [], 0
        self.stop = threading.Event()

    def _pg_ticks(self):
        """CPU ticks of each backend serving the benchmark's database, by pid."""
        return {p: pid_ticks(p) for p in db_backends()}

    def __enter__(self):
        self.t0 = time.time()
        self.server0 = pid_ticks(ENV.server_pid)
        self.client0 = pid_ticks(self.client_pid) if self.client_pid else 0
        self.extra0 = {k: pid_ticks(p) for k, p in self.extra.items()}
        self.client_last, self.extra_last = self.client0, dict(self.extra0)
        self.pg0 = self._pg_ticks()
        self.busy0, self.all0 = cpu_times()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self):
        while not self.stop.wait(1.0):
            # A process that has exited reads as 0: keep the last value seen alive.
            if self.client_pid:
                self.client_last = max(self.client_last, pid_ticks(self.client_pid))
            for k, p in list(self.extra.items()):
                self.extra_last[k] = max(self.extra_last.get(k, 0), pid_ticks(p))
            with open("/proc/loadavg") as f:
                parts = f.read().split()
            self.loadavg.append(float(parts[0]))
            self.running.append(int(parts[3].split("/")[0]))
            if comm_pids("rustc"):
                self.rustc += 1

    def set_client(self, pid):
        self.client_pid = pid
        self.client0 = self.client_last = pid_ticks(pid)

    def add(self, name, pid):
        """Counts the CPU time of another process from now on."""
        self.extra0[name] = self.extra_last[name] = pid_ticks(pid)
        self.extra[name] = pid

    def finish(self):
        """Reads the counters now (call while the client process still exists)."""
        self.stop.set()
        self.thread.join()
        secs = time.time() - self.t0
        busy1, all1 = cpu_times()
        pct = lambda ticks: round(100.0 * ticks / TICKS / secs, 1)
        out = {
            "seconds": round(secs, 1),
            "server_cpu_pct": pct(pid_ticks(ENV.server_pid) - self.server0),
            # Backends that started during the run count from zero; the other databases on
            # the same PostgreSQL (other users) are not counted.
            "postgres_cpu_pct": pct(sum(t - self.pg0.get(p, 0) for p, t in self._pg_ticks().items())),
            "machine_busy_pct": round(100.0 * (busy1 - self.busy0) / max(all1 - self.all0, 1), 1),
            "loadavg_1m_mean": round(sum(self.loadavg) / len(self.loadavg), 2) if self.loadavg else None,
            "loadavg_1m_max": max(self.loadavg) if self.loadavg else None,
            "runnable_threads_mean": round(sum(self.running) / len(self.running), 2) if self.running else None,
            "seconds_with_rustc_running": self.rustc,
        }
        if self.client_pid:
            ticks = max(pid_ticks(self.client_pid), self.client_last)
            out["client_cpu_pct"] = pct(ticks - self.client0)
        for k, p in self.extra.items():
            ticks = max(pid_ticks(p), self.extra_last.get(k, 0))
            out[f"{k}_cpu_pct"] = pct(ticks - self.extra0[k])
        # What the rest of the machine (other users, PostgreSQL's own background work, the
        # kernel's share not charged to a process) took meanwhile, in % of one core.
        ours = sum(v for k, v in out.items() if k.endswith("_cpu_pct"))
        out["other_cpu_pct"] = round(max(out["machine_busy_pct"] * os.cpu_count() - ours, 0), 1)
        return out

    def __exit__(self, *exc):
        self.stop.set()


def machine_busy(secs):
    """The machine's CPU use over `secs`, as a fraction of all its cores."""
    b0, a0 = cpu_times()
    time.sleep(secs)
    b1, a1 = cpu_times()
    return (b1 - b0) / max(a1 - a0, 1)


def wait_for_quiet():
    """Waits (up to LB_RUSTC_WAIT_SECS) until no compiler runs on the machine and the machine
    is mostly idle (under LB_IDLE_BUSY_PCT % busy over 5 s) before a measured run."""
    started = time.time()
    announced = False
    while True:
        rustc = bool(comm_pids("rustc"))
        busy = machine_busy(5)
        quiet = not rustc and busy * 100 < ENV.idle_busy_pct
        if quiet or time.time() - started >= ENV.rustc_wait_secs:
            break
        if not announced:
            log(f"waiting for a quiet machine (rustc running: {rustc}, {busy:.0%} busy)")
            announced = True
        time.sleep(5)
    return {
        "waited_secs": round(time.time() - started, 1),
        "quiet_at_start": quiet,
        "rustc_running_at_start": rustc,
        "machine_busy_pct_before": round(busy * 100, 1),
    }


def server_log_offset():
    return ENV.server_log.stat().st_size


def server_latencies(offset):
    """Server-side handling time (the request middleware's latency_ms) of the requests
    logged after `offset`, by route."""
    by_route = {}
    with open(ENV.server_log, "rb") as f:
        f.seek(offset)
        for raw in f:
            if b"latency_ms" not in raw:
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            fields = line.get("fields", line)
            ms = fields.get("latency_ms")
            span = line.get("span") or {}
            route = span.get("route") or fields.get("route") or line.get("route") or "?"
            if ms is not None:
                by_route.setdefault(route, []).append(float(ms))
    return {r: summary(sorted(v)) for r, v in sorted(by_route.items())}


# ---------------------------------------------------------------- reads


def least_disturbed(run, *args):
    """Runs a measurement; while other work on the machine took more than
    LB_DISTURBED_CPU_PCT % of a core during it, runs it again (at most LB_RETRIES more
    times). Returns the least disturbed attempt, with every attempt's summary."""
    attempts = []
    for i in range(1 + ENV.retries):
        r = run(*args)
        attempts.append(r)
        other = r["load"]["other_cpu_pct"]
        if other <= ENV.disturbed_cpu_pct:
            break
        if i < ENV.retries:
            log(f"other work took {other:g} % of a core during the run: measuring again")
    best = min(attempts, key=lambda a: a["load"]["other_cpu_pct"])
    best["attempts"] = [{
        "other_cpu_pct": a["load"]["other_cpu_pct"],
        "p99_ms": a["latency_ms"].get("p99"),
        "achieved_rate_per_sec": a.get("achieved_rate_per_sec"),
        "kept": a is best,
    } for a in attempts]
    return best


def oha_run(name, urls):
    """A fixed-rate oha run over one URL, or several (picked at random per request)."""
    cmd = ["taskset", "-c", ENV.client_cpus, ENV.oha, "-z", f"{ENV.duration_secs:g}s",
           "-w", "-q", f"{ENV.rate:g}", "-c", str(ENV.connections), "--latency-correction",
           "--no-tui", "--output-format", "json"]
    if len(urls) == 1:
        cmd.append(ENV.base + urls[0])
    else:
        url_file = ENV.work / f"urls-{name}.txt"
        url_file.write_text("".join(ENV.base + u + "\n" for u in urls))
        cmd += ["--urls-from-file", str(url_file)]
    quiet = wait_for_quiet()
    offset = server_log_offset()
    log(f"reads: {name} at {ENV.rate:g} req/s for {ENV.duration_secs:g} s")
    sampler = Sampler()
    with sampler:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler.set_client(p.pid)
        # The client's CPU is read from /proc just before it exits: poll until its
        # duration has passed, then take the counters.
        deadline = time.time() + ENV.duration_secs
        while time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        load = sampler.finish()
        out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"oha failed on {name}: {err.strip()[:500]}")
    o = json.loads(out)
    s = o["summary"]
    pct = o.get("latencyPercentiles", {})
    ms = lambda v: None if v is None else round(v * 1e3, 3)
    statuses = o.get("statusCodeDistribution", {})
    ok = sum(n for c, n in statuses.items() if c.startswith("2") or c == "304")
    total = sum(statuses.values())
    errors = o.get("errorDistribution", {})
    per_request = lambda key: (round(load[key] / 100.0 * load["seconds"] / total * 1e3, 3)
                               if total else None)
    cpu_ms = {"server": per_request("server_cpu_pct"), "postgres": per_request("postgres_cpu_pct")}
    both_ms = (cpu_ms["server"] or 0) + (cpu_ms["postgres"] or 0)
    return {
        "endpoint": name,
        "urls": urls,
        "cpu_ms_per_request": cpu_ms,
        # The most this endpoint could serve if the server and its database had every core
        # to themselves (no client, nothing else running): cores / CPU per request.
        "capacity_bound_per_sec": round(os.cpu_count() * 1e3 / both_ms) if both_ms else None,
        "target_rate_per_sec": ENV.rate,
        "achieved_rate_per_sec": round(s.get("requestsPerSec") or 0, 1),
        "duration_secs": round(s.get("total") or 0, 2),
        "requests": total,
        "ok_requests": ok,
        "success_rate": s.get("successRate"),
        "status_codes": statuses,
        "errors": errors,
        "latency_ms": {
            "p50": ms(pct.get("p50")), "p90": ms(pct.get("p90")), "p99": ms(pct.get("p99")),
            "p99_9": ms(pct.get("p99.9")), "max": ms(s.get("slowest")),
            "mean": ms(s.get("average")),
        },
        "bytes_per_response": round(s.get("sizePerRequest") or 0),
        "server_handling_ms": server_latencies(offset),
        "load": load,
        "quiet": quiet,
    }


# ---------------------------------------------------------------- WebSocket fan-out

EMIT_PROCEDURE = """
CREATE OR REPLACE PROCEDURE loadbench_emit(rate_per_sec float8, secs float8)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n  int := ceil(rate_per_sec * secs);
    i  int := 0;
BEGIN
    -- One event a transaction, on a fixed schedule (never catching up in bursts beyond it),
    -- through the same table and statement trigger (NOTIFY) as the queue's own events;
    -- created_at is the insert's own clock, so ts is when the event was stored.
    WHILE i < n LOOP
        PERFORM pg_sleep(greatest(0, extract(epoch FROM
            (t0 + make_interval(secs => i / rate_per_sec)) - clock_timestamp())));
        INSERT INTO event (kind, payload, created_at)
        VALUES ('loadbench_tick', jsonb_build_object('i', i), clock_timestamp());
        COMMIT;
        i := i + 1;
    END LOOP;
END $$;
"""


class Fan:
    """One wsfan process: N subscribers connected, waiting for the expected events."""

    def __init__(self, name):
        self.name = name
        self.report = ENV.work / f"wsfan-{name}.json"
        self.expected = ENV.work / f"expected-{name}.tsv"
        cmd = ["taskset", "-c", ENV.client_cpus, ENV.wsfan,
               "--url", ENV.base.replace("http://", "ws://") + "/v1/ws",
               "--clients", str(ENV.subscribers), "--threads", "1",
               "--connect-concurrency", "64", "--drain-secs", "20",
               "--out", str(self.report)]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"wsfan did not start: {line} {self.p.stderr.read()[:500]}")
        self.connected, self.failed = int(line[1]), int(line[2])
        log(f"ws {name}: {self.connected} subscribers connected, {self.failed} failed")

    def finish(self, after_seq):
        n = write_expected(after_seq, self.expected)
        self.p.stdin.write(f"expect {self.expected}\n")
        self.p.stdin.flush()

    def result(self):
        out, err = self.p.communicate(timeout=120)
        if self.p.returncode != 0:
            raise RuntimeError(f"wsfan failed: {err.strip()[:500]}")
        return json.loads(self.report.read_text())


def with_delivery_cost(r):
    """Adds the server's CPU time per delivered message."""
    n = r["events"]["deliveries"]
    ld = r["load"]
    r["server_cpu_us_per_delivery"] = (
        round(ld["server_cpu_pct"] / 100.0 * ld["seconds"] / n * 1e6, 2) if n else None)
    return r


def ws_steady(rate):
    """A fixed rate of events (one a transaction) for LB_WS_SECS to every subscriber."""
    name = f"steady-{rate:g}"
    quiet = wait_for_quiet()
    fan = Fan(name)
    time.sleep(2)
    after = head_seq()
    sampler = Sampler(client_pid=fan.p.pid)
    with sampler:
        log(f"ws {name}: {rate:g} events/s for {ENV.ws_secs:g} s")
        psql(f"CALL loadbench_emit({rate}, {ENV.ws_secs})")
        time.sleep(1)
        fan.finish(after)
        # The client is still running while it drains: read the counters when it is done
        # delivering (it exits right after).
        while fan.p.poll() is None and not fan.report.exists():
            time.sleep(0.2)
            if time.time() - sampler.t0 > ENV.ws_secs + 60:
                break
        load = sampler.finish()
    r = fan.result()
    r["load"] = load
    r["quiet"] = quiet
    r["generator"] = {"kind": "loadbench_tick", "rate_per_sec": rate, "secs": ENV.ws_secs}
    return with_delivery_cost(r)


def ws_jobs(bands, roles):
    """Real job events: jobs submitted over the API while subscribers listen, run by a
    worker; every event they cause (queued, running, progress, finalize, succeeded, logs,
    worker up/down) must reach every subscriber."""
    name = "jobs"
    quiet = wait_for_quiet()
    fan = Fan(name)
    time.sleep(2)
    after = head_seq()
    sampler = Sampler(client_pid=fan.p.pid)
    with sampler:
        log(f"ws {name}: {ENV.ws_jobs} jobs and a worker")
        for i in range(ENV.ws_jobs):
            submit("ndvi-sentinel2-l2a" if i % 2 == 0 else "evi-sentinel2-l2a", bands, roles, 256)
        w = run_worker(threads=1)
        sampler.add("worker", w.pid)
        while w.poll() is None:
            time.sleep(0.2)
        if w.returncode != 0:
            raise RuntimeError("the worker of the ws jobs run failed")
        time.sleep(1)
        fan.finish(after)
        while fan.p.poll() is None and not fan.report.exists():
            time.sleep(0.2)
        load = sampler.finish()
    r = fan.result()
    r["load"] = load
    r["quiet"] = quiet
    r["generator"] = {"jobs": ENV.ws_jobs, "tile_px": 256, "scene_px": 2048,
                      "worker": "worker --once --backend cpu --threads 1"}
    return with_delivery_cost(r)


# ---------------------------------------------------------------- profiles

# Frames whose inclusive share of the server's samples answers "where does the time go".
FRAMES = {
    "websocket read (tungstenite read_in: read buffer resize)": "read_in<",
    "websocket flush (tungstenite flush: one send per message)": "tungstenite::protocol::WebSocketContext::flush",
    "sendto syscalls": "__x64_sys_sendto",
    "event JSON built per socket (api::ws::event_message)": "api::ws::event_message",
    "JSON decoded from the database (serde_json::Value deserialize)": "serde_json::value::de::",
    "JSON written to the response (serde_json serialize)": "serde_json::ser::",
    "database driver (sqlx)": "sqlx_postgres::",
    "request logging (tracing)": "tracing_subscriber::",
}


def perf_report(data, children):
    args = ["perf", "report", "-i", str(data), "--stdio", "-g", "none"]
    args += ["--children", "--sort", "sym"] if children else ["--no-children", "--sort", "dso,sym"]
    return subprocess.run(args, capture_output=True, text=True).stdout


def perf_summary(data, frames=None):
    """Top self-time symbols, and the inclusive share of named frames."""
    top = []
    for line in perf_report(data, False).splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
        if m and len(top) < 15:
            top.append({"self_pct": float(m[1]), "dso": m[2], "symbol": m[3].strip()[:140]})
    out = {"top_self": top}
    if frames:
        shares = {k: 0.0 for k in frames}
        for line in perf_report(data, True).splitlines():
            m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[[.k]\]\s+(.*)$", line)
            if not m:
                continue
            for k, needle in frames.items():
                if needle in m[3]:
                    shares[k] = max(shares[k], float(m[1]))
        out["inclusive_pct"] = shares
    return out


def perf_record(name, pids, secs, call_graph="dwarf,16384"):
    data = ENV.work / f"perf-{name}.data"
    return data, subprocess.Popen(
        ["perf", "record", "-F", "499", "--call-graph", call_graph, "-o", str(data),
         "-p", ",".join(str(p) for p in pids), "--", "sleep", f"{secs:g}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_reads(name, path, rate):
    """perf of the server and of the database's backends while `path` is read at `rate`."""
    wait_for_quiet()
    log(f"profile: {name} at {rate:g} req/s")
    cmd = ["taskset", "-c", ENV.client_cpus, ENV.oha, "-z", "12s", "-w", "-q", f"{rate:g}",
           "-c", str(ENV.connections), "--latency-correction", "--no-tui",
           "--output-format", "json", ENV.base + path]
    oha = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(2)
    srv, p1 = perf_record(f"{name}-server", [ENV.server_pid], 6)
    pg, p2 = perf_record(f"{name}-postgres", db_backends(), 6, call_graph="fp")
    p1.wait()
    p2.wait()
    out, _ = oha.communicate()
    o = json.loads(out)
    return {
        "rate_per_sec": rate,
        "achieved_rate_per_sec": round(o["summary"].get("requestsPerSec") or 0, 1),
        "p99_ms": round((o["latencyPercentiles"].get("p99") or 0) * 1e3, 3),
        "server": perf_summary(srv, FRAMES),
        "postgres": perf_summary(pg),
    }


def profile_ws(rate):
    """perf of the server while `rate` events/s go out to every subscriber."""
    wait_for_quiet()
    log(f"profile: websocket fan-out at {rate:g} events/s")
    fan = Fan(f"profile-{rate:g}")
    time.sleep(2)
    after = head_seq()
    emit = subprocess.Popen(["psql", ENV.db_url, "-qc", f"CALL loadbench_emit({rate}, 10)"],
                            stdout=subprocess.DEVNULL)
    time.sleep(2)
    srv, p = perf_record("ws-server", [ENV.server_pid], 5)
    p.wait()
    emit.wait()
    time.sleep(1)
    fan.finish(after)
    r = fan.result()
    return {
        "rate_per_sec": rate,
        "subscribers": ENV.subscribers,
        "latency_ms_p99": r["latency_ms"].get("p99"),
        "server": perf_summary(srv, FRAMES),
    }


# ---------------------------------------------------------------- report


def versions():
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError:
            return None
    cpu = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem_kib = int(line.split()[1])
    os_name = ""
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2 ** 20, 1),
        "os": os_name,
        "kernel": platform.release(),
        "constellation": out([ENV.bin, "--version"]),
        "source": ENV.source,
        "oha": out([ENV.oha, "--version"]),
        "wsfan": "benches/load/wsfan (tokio-tungstenite 0.28)",
        "rustc": out(["rustc", "--version"]),
        "postgresql": psql("SHOW server_version"),
        "postgis": psql("SELECT postgis_lib_version()"),
    }


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(res):
    s, m = res["settings"], res["machine"]
    lines = [
        f"# API load benchmark — {res['machine_name']}",
        "",
        f"Measured {res['date']} by `scripts/load-bench.sh` on {m['cpu_model']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, {m['os']} (kernel {m['kernel']}); {m['constellation']} "
        f"({m['source']}), PostgreSQL {m['postgresql']} with PostGIS {m['postgis']}, "
        f"{m['oha']}, {m['rustc']}.",
        "",
        "The load clients (oha, wsfan) run on the same 2 cores as the server and PostgreSQL: "
        f"they are pinned to CPU {s['client_cpus']} with `taskset`, the server and PostgreSQL "
        "are not pinned. CPU shares below are % of one core over the run; *other* is what the "
        "rest of the machine took meanwhile (other users of this machine and of its "
        "PostgreSQL, and kernel time not charged to a process). Before each measured run the "
        "script waits (up to 10 minutes) for no compiler to run and the machine to be under "
        f"{s['idle_busy_pct']:g} % busy, and a run during which other work took more than "
        f"{s['disturbed_cpu_pct']:g} % of a core is repeated (up to {s['retries']} times; the "
        "least disturbed attempt is shown, *tries* counts them, every attempt is in the JSON). "
        "*bound req/s* = 2 cores / (server + database CPU per request), the most the endpoint "
        "could serve with the machine to itself.",
        "",
        "## Goals",
        "",
    ]
    for g in res["goals"]:
        lines.append(f"- **{'met' if g['met'] else 'missed'}** — {g['goal']}: {g['measured']}")
    lines += [
        "",
        f"## Reads: {fmt(s['rate_per_sec'], 0)} req/s for {fmt(s['duration_secs'], 0)} s each",
        "",
        f"oha, fixed rate (`-q`), {s['connections']} keep-alive connections, latency measured "
        "from each request's scheduled start (`--latency-correction`, no coordinated "
        "omission). Seeded data: "
        f"{res['seed']['jobs']} succeeded jobs; the job read is a {res['seed']['target_tiles']}-tile "
        "NDVI job over a 2048 px synthetic Sentinel-2 scene. A finished job's footprints are "
        "kept in memory; `footprints-live` reads those of an unfinished twin of that job "
        "(queued, no worker running), so every request reads them from the database. "
        "Server = the server's own handling time (its request log).",
        "",
        "| endpoint | achieved req/s | ok | p50 ms | p90 ms | p99 ms | max ms | server p50 / p99 ms "
        "| bytes | CPU ms/req server + db | bound req/s | server CPU % | db CPU % | oha CPU % "
        "| other CPU % | load avg (mean / max) | tries |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in res["reads"]:
        l, ld = r["latency_ms"], r["load"]
        srv = [v for v in r["server_handling_ms"].values() if v.get("count", 0) > 0]
        if len(srv) == 1:
            srv_text = f"{fmt(srv[0]['p50'], 2)} / {fmt(srv[0]['p99'], 2)}"
        else:
            srv_text = "see JSON"
        lines.append(
            f"| {r['endpoint']} | {fmt(r['achieved_rate_per_sec'])} | "
            f"{r['ok_requests']}/{r['requests']} | {fmt(l['p50'], 2)} | {fmt(l['p90'], 2)} | "
            f"{fmt(l['p99'], 2)} | {fmt(l['max'], 1)} | {srv_text} | {r['bytes_per_response']} | "
            f"{fmt(r['cpu_ms_per_request']['server'], 2)} + "
            f"{fmt(r['cpu_ms_per_request']['postgres'], 2)} | {fmt(r['capacity_bound_per_sec'])} | "
            f"{fmt(ld['server_cpu_pct'])} | {fmt(ld['postgres_cpu_pct'])} | "
            f"{fmt(ld.get('client_cpu_pct'))} | {fmt(ld['other_cpu_pct'])} | "
            f"{fmt(ld['loadavg_1m_mean'], 2)} / {fmt(ld['loadavg_1m_max'], 2)} | "
            f"{len(r.get('attempts', [1]))} |")
    if res.get("cold_tiles"):
        c = res["cold_tiles"]
        l = c["latency_ms"]
        lines += [
            "",
            f"Cold tiles (each rendered once, sequentially, before the fixed-rate runs): {c['tiles']} tiles "
            f"({c['statuses']}), p50 {fmt(l.get('p50'), 1)} ms, p90 {fmt(l.get('p90'), 1)} ms, "
            f"p99 {fmt(l.get('p99'), 1)} ms, max {fmt(l.get('max'), 1)} ms. The tile row above "
            "is one tile served from the in-memory cache.",
        ]
    lines += [
        "",
        f"## WebSocket fan-out: {s['subscribers']} subscribers on `/v1/ws`",
        "",
        "wsfan opens every subscriber (all events), then events are stored; latency = the "
        "subscriber's receive time minus the event's `ts` (when the server stored it; same "
        "clock). Every subscriber must receive every stored event of the window; a `lagged`, "
        "`resync` or `error` message counts as a failure. *last subscriber* = per event, the "
        "time until the last of the subscribers had it.",
        "",
        "| run | events | stored rate /s | deliveries | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| last subscriber p99 ms | missing | lagged / resync / error | complete subscribers "
        "| server CPU % | server CPU µs/delivery | db CPU % | wsfan CPU % | other CPU % "
        "| load avg (mean / max) | tries |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, r in res["websocket"].items():
        l, e, lo, ld = r["latency_ms"], r["events"], r["losses"], r["load"]
        lines.append(
            f"| {name} | {e['expected_per_subscriber']} | {fmt(e['stored_rate_per_sec'])} | "
            f"{e['deliveries']}/{e['deliveries_expected']} | {fmt(l.get('p50'), 2)} | "
            f"{fmt(l.get('p90'), 2)} | {fmt(l.get('p99'), 2)} | {fmt(l.get('p99_9'), 2)} | "
            f"{fmt(l.get('max'), 1)} | {fmt(r['last_subscriber_ms'].get('p99'), 2)} | "
            f"{lo['missing_total']} | {lo['lagged_messages']} / {lo['resync_messages']} / "
            f"{lo['error_messages']} | {r['subscribers']['complete']}/{s['subscribers']} | "
            f"{fmt(ld['server_cpu_pct'])} | {fmt(r.get('server_cpu_us_per_delivery'), 1)} | "
            f"{fmt(ld['postgres_cpu_pct'])} | "
            f"{fmt(ld.get('client_cpu_pct'))} | {fmt(ld['other_cpu_pct'])} | "
            f"{fmt(ld['loadavg_1m_mean'], 2)} / {fmt(ld['loadavg_1m_max'], 2)} | "
            f"{len(r.get('attempts', [1]))} |")
    for name, r in res["websocket"].items():
        kinds = r.get("latency_ms_by_kind", {})
        if len(kinds) > 1:
            first = r.get("first_subscriber_ms_by_kind", {})
            lines += ["", f"Latency by event kind ({name}); *first subscriber* = per event, "
                      "the time until the first subscriber had it (storage and the hub, "
                      "before the fan-out):", "",
                      "| kind | deliveries | p50 ms | p99 ms | max ms | first subscriber p50 / max ms |",
                      "|---|---:|---:|---:|---:|---|"]
            for k, v in kinds.items():
                f = first.get(k, {})
                lines.append(f"| {k} | {v['count']} | {fmt(v.get('p50'), 2)} | "
                             f"{fmt(v.get('p99'), 2)} | {fmt(v.get('max'), 1)} | "
                             f"{fmt(f.get('p50'), 2)} / {fmt(f.get('max'), 1)} |")
    if res.get("profiles"):
        lines += ["", "## Profiles (perf, separate runs after the measured ones)", ""]
        for name, pr in res["profiles"].items():
            lines.append(f"**{name}** at {pr['rate_per_sec']:g}/s"
                         + (f" (achieved {pr['achieved_rate_per_sec']:g} req/s, p99 {pr['p99_ms']:g} ms)"
                            if "achieved_rate_per_sec" in pr else
                            f" to {pr['subscribers']} subscribers (p99 {fmt(pr['latency_ms_p99'], 1)} ms)")
                         + ": share of the server's samples —")
            lines.append("")
            for k, v in pr["server"].get("inclusive_pct", {}).items():
                if v >= 1.0:
                    lines.append(f"- {k}: {v:.1f} %")
            top = ", ".join(f"{t['symbol'][:60]} ({t['dso']}) {t['self_pct']:.1f} %"
                            for t in pr["server"]["top_self"][:5])
            lines += ["", f"Top self time in the server: {top}."]
            if "postgres" in pr:
                top = ", ".join(f"{t['symbol'][:40]} ({t['dso']}) {t['self_pct']:.1f} %"
                                for t in pr["postgres"]["top_self"][:6])
                lines.append(f"Top self time in the database backends: {top}.")
            lines.append("")
    lines += [
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(s, indent=2),
        "```",
        "",
        "Everything above was measured in the run recorded in "
        f"`load-{res['machine_name']}.json`; rerun with `scripts/load-bench.sh`.",
        "",
    ]
    return "\n".join(lines)


def goals(res):
    out = []
    reads = [r for r in res["reads"] if r["endpoint"] != "mix"]
    mix = [r for r in res["reads"] if r["endpoint"] == "mix"]
    rate = res["settings"]["rate_per_sec"]
    for r in reads + mix:
        p99 = r["latency_ms"]["p99"]
        met = (p99 is not None and p99 < 20.0
               and r["achieved_rate_per_sec"] >= 0.98 * rate and r["ok_requests"] == r["requests"])
        out.append({
            "goal": f"reads `{r['endpoint']}`: p99 < 20 ms at {rate:g} req/s",
            "met": met,
            "measured": f"p99 {fmt(p99, 2)} ms at {fmt(r['achieved_rate_per_sec'])} req/s, "
                        f"{r['ok_requests']}/{r['requests']} ok",
        })
    for name, r in res["websocket"].items():
        p99 = r["latency_ms"].get("p99")
        lossless = r["losses"]["lossless"]
        out.append({
            "goal": f"WebSocket `{name}`: event latency p99 < 100 ms with "
                    f"{res['settings']['subscribers']} subscribers, none lost",
            "met": bool(p99 is not None and p99 < 100.0 and lossless),
            "measured": f"p99 {fmt(p99, 2)} ms, lossless: {lossless} "
                        f"({r['losses']['missing_total']} missing, "
                        f"{r['losses']['lagged_messages']} lagged)",
        })
    return out


def main():
    global ENV
    ENV = Env()
    res = {
        "machine_name": ENV.machine,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": versions(),
        "settings": {
            "rate_per_sec": ENV.rate,
            "duration_secs": ENV.duration_secs,
            "connections": ENV.connections,
            "subscribers": ENV.subscribers,
            "ws_rates_per_sec": ENV.ws_rates,
            "ws_secs": ENV.ws_secs,
            "ws_jobs": ENV.ws_jobs,
            "client_cpus": ENV.client_cpus,
            "idle_busy_pct": ENV.idle_busy_pct,
            "disturbed_cpu_pct": ENV.disturbed_cpu_pct,
            "retries": ENV.retries,
            "quiet_wait_max_secs": ENV.rustc_wait_secs,
            "server": "constellation serve (release build, --log-format json, info logs to a file)",
            "database": "a fresh database on the local PostgreSQL (shared with other users of it)",
        },
        "reads": [],
        "websocket": {},
    }
    seeded = seed()
    res["seed"] = seeded
    job = seeded["target_job"]
    tile, tile_bytes, cold = pick_tile(job, seeded["bbox"])
    endpoints = [
        ("jobs-list", f"/v1/jobs"),
        ("job", f"/v1/jobs/{job}"),
        ("job-tasks", f"/v1/jobs/{job}/tasks"),
        ("footprints", f"/v1/jobs/{job}/footprints"),
        ("footprints-live", f"/v1/jobs/{seeded['live_job']}/footprints"),
        ("stac", f"/v1/jobs/{job}/stac"),
        ("tile-png", tile),
        ("healthz", "/healthz"),
    ]
    for _, path in endpoints:
        for _ in range(3):
            status, _, _ = http("GET", path)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status} before the run")
    if not ENV.only or "cold" in ENV.only:
        res["cold_tiles"] = cold_tiles(cold)
    for name, path in endpoints:
        if not ENV.only or name in ENV.only:
            res["reads"].append(least_disturbed(oha_run, name, [path]))
    if not ENV.only or "mix" in ENV.only:
        # The mix keeps the endpoints it had before the unfinished twin existed.
        mixed = [p for name, p in endpoints if name != "footprints-live"]
        res["reads"].append(least_disturbed(oha_run, "mix", mixed))
    # The twin must not add its events to the WebSocket runs (their worker would run it).
    status, _, body = http("POST", f"/v1/jobs/{seeded['live_job']}/cancel", {})
    if status != 200:
        raise RuntimeError(f"cancelling the unfinished twin answered {status}: {body[:400]!r}")
    psql(EMIT_PROCEDURE)
    for rate in ENV.ws_rates:
        if not ENV.only or "ws" in ENV.only:
            r = least_disturbed(ws_steady, rate)
            name = f"steady-{rate:g}"
            res["websocket"][name] = r
    if ENV.ws_jobs > 0 and (not ENV.only or "ws" in ENV.only or "ws-jobs" in ENV.only):
        roles = recipe_roles()
        bands = fixtures("sentinel2", 2048, 7, ENV.work / "scenes" / "s2-2048")
        r = least_disturbed(ws_jobs, bands, roles)
        name = "jobs"
        res["websocket"][name] = r
    if ENV.profile:
        res["profiles"] = {
            "footprints-live": profile_reads("footprints-live", dict(endpoints)["footprints-live"], ENV.profile_rate),
            "jobs-list": profile_reads("jobs-list", dict(endpoints)["jobs-list"], ENV.profile_rate),
            f"ws-{max(ENV.ws_rates):g}": profile_ws(max(ENV.ws_rates)),
        }
    res["goals"] = goals(res)
    ENV.results.mkdir(parents=True, exist_ok=True)
    base = ENV.results / f"load-{ENV.machine}"
    base.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(res))
    log(f"results in {base}.json and {base}.md")
    print(markdown(res))


if __name__ == "__main__":
    main()
