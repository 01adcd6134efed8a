//! Trace propagation end to end: a request that carries a W3C `traceparent` submits a job to
//! `serve`; a `worker` runs it; both export spans over OTLP/HTTP (configured only by the
//! standard `OTEL_*` variables) to a collector in this test, which decodes the protobuf
//! requests. The worker's spans must continue the request's trace, as children of the API's
//! request span, and its log lines must carry the trace id.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;

mod common;
use common::{free_listen, http, scene, stop, text, wait_healthy, RECIPE};

const BIN: &str = env!("CARGO_BIN_EXE_constellation");

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads HTTP/1.1 requests from one connection and answers each with 200.
fn serve_connection(stream: TcpStream, spans: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if path == "/v1/traces" {
            let request = ExportTraceServiceRequest::decode(body.as_slice())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut got = spans.lock().expect("lock");
            for rs in request.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref()?.value.as_ref())
                    .map(|v| match v {
                        AnyValue::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                    let attributes = span
                        .attributes
                        .iter()
                        .filter_map(|a| {
                            let v = match a.value.as_ref()?.value.as_ref()? {
                                AnyValue::StringValue(s) => s.clone(),
                                AnyValue::IntValue(i) => i.to_string(),
                                other => format!("{other:?}"),
                            };
                            Some((a.key.clone(), v))
                        })
                        .collect();
                    got.push(Received {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes,
                    });
                }
            }
        }
        out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )?;
    }
}

/// An OTLP/HTTP collector on a free port: its endpoint and what it received.
fn collector() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let shared = spans.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let spans = shared.clone();
            std::thread::spawn(move || serve_connection(stream, &spans));
        }
    });
    (endpoint, spans)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requests_trace_continues_through_the_queue_into_the_worker() {
    let db = scheduler::testdb::TestDb::new().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = scene(&tmp.path().join("scene"), 384, 5);
    let (endpoint, spans) = collector();
    let listen = free_listen();
    let data = tmp.path().join("data").display().to_string();
    let cmd = |service: &str, args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("DATABASE_URL", db.url())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_SERVICE_NAME", service)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let serve = cmd(
        "constellation-api",
        &["serve", "--listen", &listen, "--data-dir", &data],
    )
    .spawn()
    .expect("serve starts");
    wait_healthy(&listen);

    // The client's own span: the trace every span below must join.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let client_span = "00f067aa0ba902b7";
    let body = serde_json::json!({
        "recipe": RECIPE,
        "inputs": inputs.iter().map(|p| serde_json::json!({"path": p})).collect::<Vec<_>>(),
        "tile_px": 128,
    })
    .to_string();
    let (status, reply) = http(
        &listen,
        "POST",
        "/v1/jobs",
        &format!(
            "content-type: application/json\r\ntraceparent: 00-{trace_id}-{client_span}-01\r\n"
        ),
        &body,
    )
    .expect("the job is submitted");
    assert_eq!(status, 201, "{reply}");

    // The running server's /metrics: the request just answered, in its latency histogram,
    // and the queue it stored.
    let (status, metrics) = http(&listen, "GET", "/metrics", "", "").expect("metrics");
    assert_eq!(status, 200);
    for line in [
        "constellation_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/jobs\"} 1\n",
        "constellation_tasks{state=\"queued\"} 9\n",
        "constellation_tasks{state=\"blocked\"} 1\n",
        "constellation_db_pool_max_connections 16\n",
    ] {
        assert!(metrics.contains(line), "no {line:?} in {metrics}");
    }

    let worker = cmd(
        "constellation-worker",
        &[
            "--log-format",
            "json",
            "worker",
            "--once",
            "--backend",
            "cpu",
        ],
    )
    .spawn()
    .expect("the worker starts")
    .wait_with_output()
    .expect("the worker ends");
    let worker_log = text(&worker.stderr);
    assert!(worker.status.success(), "{worker_log}");
    stop(serve);

    // Both processes flushed their spans on exit.
    let spans = spans.lock().expect("lock").clone();
    let in_trace: Vec<&Received> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let request = in_trace
        .iter()
        .find(|s| s.service == "constellation-api" && s.name == "request")
        .unwrap_or_else(|| panic!("no request span in the trace: {spans:#?}"));
    assert_eq!(
        request.parent_span_id, client_span,
        "the API continues the client's span"
    );
    assert_eq!(
        request.attributes.get("route").map(String::as_str),
        Some("/v1/jobs")
    );
    let worker_spans: Vec<&&Received> = in_trace
        .iter()
        .filter(|s| s.service == "constellation-worker")
        .collect();
    for name in ["tiles", "finalize", "queue complete"] {
        let span = worker_spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in the trace: {spans:#?}"));
        assert_eq!(
            span.parent_span_id, request.span_id,
            "{name} continues the request that submitted the job"
        );
    }
    // The worker's log lines of the job's tasks name the trace.
    let done: Vec<serde_json::Value> = worker_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "task done")
        .collect();
    assert!(!done.is_empty(), "{worker_log}");
    assert!(
        done.iter().all(|l| l["trace_id"] == trace_id.as_str()),
        "{worker_log}"
    );
}
