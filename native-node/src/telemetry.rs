//! Where the node's logs and traces go: log lines to stderr as text or JSON (`--log-format`),
//! and, only with `--otlp-endpoint`, the spans of client requests ([`crate::request_trace`])
//! to an OpenTelemetry collector over OTLP/HTTP (protobuf).
//!
//! The core has no exporter and no clock: it only returns what happened, and the node loop
//! turns that into `tracing` spans. Request spans never reach the log (they would flood it):
//! the log layer's filter turns their target off, so without an OTLP layer they are disabled
//! at the call site and cost nothing.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::request_trace;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid --otlp-endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
    #[error("invalid RUST_LOG: {0}")]
    Filter(String),
}

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter thread. Call it outside the async
    /// runtime: the OTLP client is a blocking one.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("keyval: warning: flushing traces failed: {e}");
        }
    }
}

/// The OTLP/HTTP traces URL for an endpoint given as a base (`http://collector:4318`, like
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) or as the full traces URL (`.../v1/traces`).
pub fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let bad = |reason: &str| TelemetryError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| bad("expected http://HOST:PORT (OTLP over HTTP; TLS is not supported)"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let path = path.trim_end_matches('/');
    Ok(if path.is_empty() {
        format!("http://{authority}/v1/traces")
    } else {
        format!("http://{authority}/{path}")
    })
}

/// Installs the global subscriber: the log layer, and the OTLP layer when an endpoint is
/// given. Call it before starting the async runtime (the OTLP client is a blocking one).
pub fn init(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
    node_id: u64,
) -> Result<Telemetry, TelemetryError> {
    let provider = match otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(&traces_url(endpoint)?, node_id)?),
        None => None,
    };
    // `try_init` fails only when a subscriber is already set (tests): keep that one.
    let _ = subscriber(format, provider.as_ref())?.try_init();
    Ok(Telemetry { provider })
}

/// The log layer, and the OTLP layer only when there is a provider. Not `Option<Layer>`: a
/// `None` layer answers "always interested" for every call site, so every request span would
/// be built in the registry (six spans and a map entry per request) for nobody to record.
fn subscriber(
    format: LogFormat,
    provider: Option<&SdkTracerProvider>,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, TelemetryError> {
    let log = log_layer(format)?;
    Ok(match provider {
        Some(p) => Box::new(Registry::default().with(log).with(otel_layer(p))),
        None => Box::new(Registry::default().with(log)),
    })
}

pub(crate) fn log_layer<S>(
    format: LogFormat,
) -> Result<Box<dyn Layer<S> + Send + Sync>, TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new("info"),
    };
    let directive = format!("{}=off", request_trace::TARGET).parse().map_err(
        |e: tracing_subscriber::filter::ParseError| TelemetryError::Filter(e.to_string()),
    )?;
    let filter = filter.add_directive(directive);
    let stderr = std::io::stderr;
    Ok(match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(stderr)
            .with_filter(filter)
            .boxed(),
    })
}

fn otlp_provider(url: &str, node_id: u64) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("keyval")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node_id.to_string(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The layer that turns request spans into OpenTelemetry spans of `provider`; only the
/// request target passes its filter.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("keyval"))
        .with_filter(Targets::new().with_target(request_trace::TARGET, Level::TRACE))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without an OTLP endpoint nobody records request spans, so they must be disabled where
    /// they are made: building them cost a measurable share of a loaded leader's CPU.
    #[test]
    fn request_spans_are_disabled_without_an_exporter() {
        let sub = subscriber(LogFormat::Text, None).unwrap();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!(target: request_trace::TARGET, "client_request");
            assert!(span.is_disabled());
            let log = tracing::info_span!("keyval_loop");
            assert!(!log.is_disabled(), "info spans still reach the log");
        });
    }

    #[test]
    fn endpoint_becomes_the_traces_url() {
        assert_eq!(
            traces_url("http://c:4318").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/custom/v1/traces").unwrap(),
            "http://c:4318/custom/v1/traces"
        );
        assert!(traces_url("https://c:4318").is_err());
        assert!(traces_url("c:4318").is_err());
        assert!(traces_url("http:///v1/traces").is_err());
    }
}
