//! OpenTelemetry traces (feature `otel`): an OTLP/HTTP exporter switched on by the standard
//! `OTEL_*` environment variables, W3C trace-context propagation from a request's headers to
//! the job it submits and from the job to the worker spans that run its tasks.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Whether the environment asks for traces: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise.
pub(crate) fn wanted() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let is = |k: &str, v: &str| std::env::var(k).is_ok_and(|x| x.trim().eq_ignore_ascii_case(v));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The exporter's lifetime: spans still buffered are sent when it is dropped.
#[derive(Debug)]
pub(crate) struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: traces not all exported: {e}");
        }
    }
}

/// Starts the exporter (endpoint, headers, timeout and protocol from `OTEL_EXPORTER_OTLP_*`;
/// service name from `OTEL_SERVICE_NAME`, else `constellation`) and returns the tracing layer
/// that feeds it.
pub(crate) fn start<S>() -> anyhow::Result<(Telemetry, impl tracing_subscriber::Layer<S>)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the otlp exporter: {e}"))?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("constellation");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("constellation");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((Telemetry { provider }, layer))
}

struct Headers<'a>(&'a api::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A job's stored context: a JSON object of W3C headers.
struct Stored<'a>(&'a serde_json::Map<String, Value>);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[derive(Default)]
struct Collect(HashMap<String, String>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// `span`'s trace id, when it belongs to a sampled trace.
fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Makes `span` (created, not yet entered) continue the trace of a job's stored context; a job
/// without a valid one leaves it a root span.
pub(crate) fn continue_job(span: &tracing::Span, context: Option<&Value>) {
    let Some(map) = context.and_then(Value::as_object) else {
        return;
    };
    let parent = TraceContextPropagator::new().extract(&Stored(map));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// W3C propagation for the API (see `api::Propagation`).
#[derive(Debug)]
pub(crate) struct W3c;

impl W3c {
    pub(crate) fn shared() -> Arc<dyn api::Propagation> {
        Arc::new(Self)
    }
}

impl api::Propagation for W3c {
    fn continue_request(&self, headers: &api::HeaderMap, span: &tracing::Span) -> Option<String> {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        if parent.span().span_context().is_valid() {
            span.set_parent(parent).ok()?;
        }
        trace_id(span)
    }

    fn job_context(&self, span: &tracing::Span) -> Option<Value> {
        let mut headers = Collect::default();
        TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
        if headers.0.is_empty() {
            return None;
        }
        Some(Value::Object(
            headers
                .0
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        ))
    }
}
