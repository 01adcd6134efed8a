//! `wsfan`: opens many WebSocket subscribers on Constellation's `/v1/ws`, records when each
//! one receives each event, and reports event latency (receive time minus the event's `ts`,
//! the time the server stored it) and, per subscriber, events received against the events
//! expected, with every `lagged`, `resync` and `error` message counted as a failure.
//!
//! Protocol on stdin/stdout, so a driver script can produce events in between:
//! 1. `wsfan` connects every subscriber, then prints `ready <connected> <failed>`.
//! 2. The driver produces events, then writes `expect <file>` on stdin: the file lists the
//!    stored events that every subscriber must receive, one `<seq>\t<kind>` per line.
//! 3. `wsfan` waits until every subscriber has the last of them (or `--drain-secs` pass),
//!    closes the sockets, writes the JSON report to `--out` and prints a summary.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Args {
    url: String,
    clients: usize,
    connect_concurrency: usize,
    threads: usize,
    drain_secs: f64,
    max_secs: f64,
    out: Option<PathBuf>,
}

const USAGE: &str = "usage: wsfan --url ws://HOST:PORT/v1/ws [--clients 1000] \
[--connect-concurrency 64] [--threads 1] [--drain-secs 15] [--max-secs 900] [--out report.json]";

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = Self {
            url: String::new(),
            clients: 1000,
            connect_concurrency: 64,
            threads: 1,
            drain_secs: 15.0,
            max_secs: 900.0,
            out: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.to_owned());
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = |v: &str| -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| format!("{flag} expects a non-negative number, got {v:?}"))
            };
            match flag.as_str() {
                "--url" => args.url = value,
                "--clients" => args.clients = number(&value)? as usize,
                "--connect-concurrency" => {
                    args.connect_concurrency = (number(&value)? as usize).max(1)
                }
                "--threads" => args.threads = (number(&value)? as usize).max(1),
                "--drain-secs" => args.drain_secs = number(&value)?,
                "--max-secs" => args.max_secs = number(&value)?,
                "--out" => args.out = Some(PathBuf::from(value)),
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        if args.url.is_empty() {
            return Err(format!("--url is required\n{USAGE}"));
        }
        Ok(args)
    }
}

/// Microseconds since the Unix epoch, now.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 3339 timestamp (`2025-01-02T03:04:05.678901Z`, or with a `±HH:MM` offset) as
/// microseconds since the Unix epoch.
fn parse_rfc3339_us(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> { text.get(from..to)?.parse().ok() };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, c) in frac.bytes().take(digits).enumerate() {
            if i < 6 {
                micros = micros * 10 + i64::from(c - b'0');
            }
        }
        for _ in digits..6 {
            micros *= 10;
        }
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.get(3..4) == Some(":") => {
            let sign = match rest.get(..1) {
                Some("+") => 1,
                Some("-") => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// The fields of a server message this client reads.
#[derive(Debug, Deserialize)]
struct ServerMessage<'a> {
    #[serde(rename = "type", borrow)]
    message_type: Cow<'a, str>,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default, borrow)]
    ts: Option<Cow<'a, str>>,
}

/// One event as one subscriber received it.
#[derive(Debug, Clone, Copy)]
struct Received {
    seq: i64,
    ts_us: i64,
    recv_us: i64,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct ClientReport {
    connect_ms: Option<f64>,
    connect_error: Option<String>,
    events: Vec<Received>,
    lagged_messages: u64,
    resync_messages: u64,
    error_messages: u64,
    unreadable_messages: u64,
    out_of_order: u64,
    /// The stream ended before the client stopped it.
    closed_early: bool,
}

/// When a subscriber may stop: once it has the event with this sequence number.
type Target = Option<i64>;

async fn subscriber(
    url: String,
    connect_slots: Arc<Semaphore>,
    connected: mpsc::UnboundedSender<bool>,
    mut target: watch::Receiver<Target>,
    mut stop: watch::Receiver<bool>,
) -> ClientReport {
    let mut report = ClientReport::default();
    let started = Instant::now();
    let socket = {
        let _slot = connect_slots.acquire().await;
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
    };
    let mut ws = match socket {
        Ok(Ok((ws, _))) => {
            report.connect_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            let _ = connected.send(true);
            ws
        }
        Ok(Err(e)) => {
            report.connect_error = Some(e.to_string());
            let _ = connected.send(false);
            return report;
        }
        Err(_) => {
            report.connect_error = Some("no handshake within 30 s".to_owned());
            let _ = connected.send(false);
            return report;
        }
    };
    let mut last_seq = i64::MIN;
    let mut goal: Target = *target.borrow();
    loop {
        if goal.is_some_and(|g| last_seq >= g) {
            break;
        }
        tokio::select! {
            msg = ws.next() => {
                let recv_us = now_us();
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        report.closed_early = true;
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(m) = serde_json::from_str::<ServerMessage<'_>>(text.as_str()) else {
                    report.unreadable_messages += 1;
                    continue;
                };
                match m.message_type.as_ref() {
                    "event" => {
                        let (Some(seq), Some(ts_us)) =
                            (m.seq, m.ts.as_deref().and_then(parse_rfc3339_us))
                        else {
                            report.unreadable_messages += 1;
                            continue;
                        };
                        if seq <= last_seq {
                            report.out_of_order += 1;
                        }
                        last_seq = last_seq.max(seq);
                        report.events.push(Received { seq, ts_us, recv_us });
                    }
                    "lagged" => report.lagged_messages += 1,
                    "resync" => report.resync_messages += 1,
                    "error" => report.error_messages += 1,
                    _ => {}
                }
            }
            changed = target.changed() => {
                if changed.is_ok() {
                    goal = *target.borrow();
                }
            }
            _ = stop.changed() => break,
        }
    }
    if !report.closed_early {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    report
}

/// Nearest-rank percentiles of sorted values.
fn percentile(sorted: &[f64], pct: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// Count, mean, p50, p90, p99, p99.9 and max of `values` (sorted in place), in their unit.
fn summary(values: &mut [f64]) -> Value {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return json!({"count": 0});
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let p = |q| percentile(values, q).map(round3);
    json!({
        "count": values.len(),
        "min": round3(values[0]),
        "mean": round3(mean),
        "p50": p(50.0),
        "p90": p(90.0),
        "p99": p(99.0),
        "p99_9": p(99.9),
        "max": round3(values[values.len() - 1]),
    })
}

/// The expected events: `(seq, kind)` in stream order.
fn read_expected(path: &str) -> Result<Vec<(i64, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split('\t');
        let seq = parts
            .next()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| format!("{path}: not a sequence number: {line:?}"))?;
        out.push((seq, parts.next().unwrap_or("").trim().to_owned()));
    }
    out.sort_by_key(|e| e.0);
    out.dedup_by_key(|e| e.0);
    Ok(out)
}

/// The report over every subscriber.
fn aggregate(
    args: &Args,
    reports: &[ClientReport],
    expected: &[(i64, String)],
    timing: Value,
) -> Value {
    let index: HashMap<i64, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, (seq, _))| (*seq, i))
        .collect();
    let mut latency_ms = Vec::new();
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // Per expected event: subscribers that got it, and the first and last arrival.
    let mut per_event: Vec<(u32, f64, f64)> =
        vec![(0, f64::INFINITY, f64::NEG_INFINITY); expected.len()];
    let mut ts_range_us = (i64::MAX, i64::MIN);
    let mut received_counts = Vec::new();
    let (mut missing_total, mut duplicates_total, mut complete) = (0u64, 0u64, 0usize);
    let mut connect_ms = Vec::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for r in reports {
        let Some(ms) = r.connect_ms else {
            let reason = r.connect_error.clone().unwrap_or_default();
            *failures.entry(reason).or_default() += 1;
            continue;
        };
        connect_ms.push(ms);
        let mut seen = vec![false; expected.len()];
        for e in &r.events {
            let Some(&i) = index.get(&e.seq) else {
                continue;
            };
            if seen[i] {
                duplicates_total += 1;
                continue;
            }
            seen[i] = true;
            let ms = (e.recv_us - e.ts_us) as f64 / 1e3;
            latency_ms.push(ms);
            by_kind.entry(expected[i].1.as_str()).or_default().push(ms);
            let slot = &mut per_event[i];
            slot.0 += 1;
            slot.1 = slot.1.min(ms);
            slot.2 = slot.2.max(ms);
            ts_range_us = (ts_range_us.0.min(e.ts_us), ts_range_us.1.max(e.ts_us));
        }
        let got = seen.iter().filter(|s| **s).count();
        received_counts.push(got as f64);
        missing_total += (expected.len() - got) as u64;
        if got == expected.len() {
            complete += 1;
        }
    }
    let connected = connect_ms.len();
    let sum = |f: fn(&ClientReport) -> u64| reports.iter().map(f).sum::<u64>();
    let lagged = sum(|r| r.lagged_messages);
    let resync = sum(|r| r.resync_messages);
    let errors = sum(|r| r.error_messages);
    let closed_early = reports.iter().filter(|r| r.closed_early).count();
    let mut first_by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (e, (_, kind)) in per_event.iter().zip(expected) {
        if e.0 > 0 {
            first_by_kind.entry(kind.as_str()).or_default().push(e.1);
        }
    }
    let mut first_ms: Vec<f64> = per_event.iter().filter(|e| e.0 > 0).map(|e| e.1).collect();
    let mut last_ms: Vec<f64> = per_event.iter().filter(|e| e.0 > 0).map(|e| e.2).collect();
    let events_span_secs = if ts_range_us.1 > ts_range_us.0 {
        (ts_range_us.1 - ts_range_us.0) as f64 / 1e6
    } else {
        0.0
    };
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, kind) in expected {
        *kinds.entry(kind.as_str()).or_default() += 1;
    }
    let delivered = latency_ms.len();
    let lossless = connected == args.clients
        && missing_total == 0
        && lagged == 0
        && resync == 0
        && errors == 0
        && closed_early == 0;
    json!({
        "settings": {
            "url": args.url,
            "clients": args.clients,
            "connect_concurrency": args.connect_concurrency,
            "client_runtime_threads": args.threads,
            "drain_secs": args.drain_secs,
        },
        "timing": timing,
        "subscribers": {
            "connected": connected,
            "connect_failures": failures,
            "connect_ms": summary(&mut connect_ms),
            "complete": complete,
            "closed_early": closed_early,
        },
        "events": {
            "expected_per_subscriber": expected.len(),
            "first_seq": expected.first().map(|e| e.0),
            "last_seq": expected.last().map(|e| e.0),
            "kinds": kinds,
            "stored_span_secs": round3(events_span_secs),
            "stored_rate_per_sec": if events_span_secs > 0.0 {
                round3(expected.len().saturating_sub(1) as f64 / events_span_secs)
            } else { 0.0 },
            "deliveries": delivered,
            "deliveries_expected": expected.len() * connected,
        },
        "losses": {
            "lossless": lossless,
            "missing_total": missing_total,
            "duplicates_total": duplicates_total,
            "out_of_order_total": sum(|r| r.out_of_order),
            "lagged_messages": lagged,
            "resync_messages": resync,
            "error_messages": errors,
            "unreadable_messages": sum(|r| r.unreadable_messages),
            "received_per_subscriber": summary(&mut received_counts),
        },
        "latency_ms": summary(&mut latency_ms),
        "latency_ms_by_kind": by_kind
            .into_iter()
            .map(|(k, mut v)| (k.to_owned(), summary(&mut v)))
            .collect::<serde_json::Map<_, _>>(),
        "first_subscriber_ms": summary(&mut first_ms),
        "first_subscriber_ms_by_kind": first_by_kind
            .into_iter()
            .map(|(k, mut v)| (k.to_owned(), summary(&mut v)))
            .collect::<serde_json::Map<_, _>>(),
        "last_subscriber_ms": summary(&mut last_ms),
    })
}

async fn run(args: Args) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.max_secs);
    let slots = Arc::new(Semaphore::new(args.connect_concurrency));
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel();
    let (target_tx, target_rx) = watch::channel::<Target>(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let connect_started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            tokio::spawn(subscriber(
                args.url.clone(),
                slots.clone(),
                connected_tx.clone(),
                target_rx.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(connected_tx);
    let (mut ok, mut failed) = (0usize, 0usize);
    while ok + failed < args.clients {
        match connected_rx.recv().await {
            Some(true) => ok += 1,
            Some(false) => failed += 1,
            None => break,
        }
    }
    let connect_all_secs = connect_started.elapsed().as_secs_f64();
    let mut stdout = tokio::io::stdout();
    let _ = stdout
        .write_all(format!("ready {ok} {failed}\n").as_bytes())
        .await;
    let _ = stdout.flush().await;

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let expected = loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .map_err(|_| "no expect line before --max-secs".to_owned())?
            .map_err(|e| format!("cannot read stdin: {e}"))?
            .ok_or_else(|| "stdin closed before an expect line".to_owned())?;
        if let Some(path) = line.trim().strip_prefix("expect ") {
            break read_expected(path.trim())?;
        }
    };
    let expect_at = Instant::now();
    let _ = target_tx.send(Some(expected.last().map_or(i64::MIN, |e| e.0)));
    let drain_until = (expect_at + Duration::from_secs_f64(args.drain_secs)).min(deadline);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep_until(drain_until.into()).await;
        let _ = stop_tx.send(true);
    });
    let mut reports = Vec::with_capacity(tasks.len());
    for t in tasks {
        reports.push(
            t.await
                .map_err(|e| format!("a subscriber task failed: {e}"))?,
        );
    }
    stopper.abort();
    let timing = json!({
        "connect_all_secs": round3(connect_all_secs),
        "drain_after_expect_secs": round3(expect_at.elapsed().as_secs_f64()),
    });
    Ok(aggregate(&args, &reports, &expected, timing))
}

fn main() -> std::process::ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let out = args.out.clone();
    match runtime.block_on(run(args)) {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            if let Some(path) = out {
                if let Err(e) = std::fs::write(&path, &text) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
            println!(
                "done connected={} latency_ms={} losses={}",
                report["subscribers"]["connected"], report["latency_ms"], report["losses"]
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_epoch_microseconds() {
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_us("2024-02-29T12:34:56.789012Z"),
            Some(1_709_210_096_789_012)
        );
        assert_eq!(
            parse_rfc3339_us("2024-02-29T12:34:56.7Z"),
            Some(1_709_210_096_700_000)
        );
        assert_eq!(
            parse_rfc3339_us("2024-02-29T13:34:56.789012345+01:00"),
            Some(1_709_210_096_789_012)
        );
        assert_eq!(parse_rfc3339_us("2024-02-29"), None);
        assert_eq!(parse_rfc3339_us("2024-02-29T12:34:56.Z"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
