//! Spans of one client request as the leader serves it, for `tracing` (and so for OpenTelemetry
//! when `--otlp-endpoint` is set):
//!
//! ```text
//! client_request {client_id, seq, op, node, index, outcome}
//! ├─ propose     handing it to Raft (appending to the in-memory log)
//! ├─ persist     until the leader's own write+fsync of its entry is done
//! ├─ replicate   until a quorum holds it (the commit index passes it)
//! ├─ apply       until the state machine has applied it
//! └─ reply       until the answer is handed to the client connection
//! ```
//!
//! The node loop works in batches, so stages end when the batch that covers a request's log
//! index completes; each request still gets its own spans, with the log index as an attribute.
//! The spans use the target [`TARGET`]: unless a subscriber asks for it (the OTLP layer does),
//! they are disabled at the call site and tracking costs one branch per request.

use std::collections::{HashMap, VecDeque};

use keyval_core::{ClientRequest, KvOp};
use tracing::Span;
use tracing::field::Empty;

/// The `tracing` target of every request span.
pub const TARGET: &str = "keyval::request";

/// Requests tracked at once; beyond this new requests go untraced (they are still served).
pub const MAX_TRACKED: usize = 65_536;

type Key = (u64, u64);

struct Tracked {
    root: Span,
    /// The open stage span; replacing it closes the previous stage.
    stage: Span,
}

/// The open request spans, and per stage the requests in it in log order.
#[derive(Default)]
pub struct RequestTraces {
    tracked: HashMap<Key, Tracked>,
    persisting: VecDeque<(u64, Key)>,
    replicating: VecDeque<(u64, Key)>,
    applying: VecDeque<(u64, Key)>,
}

/// The `propose` stage of a request being handed to Raft; give it back to
/// [`RequestTraces::proposed`].
pub struct Proposing(Option<(Key, Span, Span)>);

fn op_name(op: &KvOp) -> &'static str {
    if matches!(op, KvOp::Put { .. }) {
        "put"
    } else if matches!(op, KvOp::Get { .. }) {
        "get"
    } else if matches!(op, KvOp::Delete { .. }) {
        "delete"
    } else {
        "other"
    }
}

impl RequestTraces {
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// Opens the request's root span and its `propose` stage, if anyone records them.
    pub fn begin(&self, req: &ClientRequest, node: u64) -> Proposing {
        if self.tracked.len() >= MAX_TRACKED {
            return Proposing(None);
        }
        let root = tracing::info_span!(
            target: TARGET,
            parent: None,
            "client_request",
            client_id = req.client_id,
            seq = req.seq,
            op = op_name(&req.op),
            node,
            index = Empty,
            outcome = Empty,
        );
        if root.is_disabled() {
            return Proposing(None);
        }
        let stage = tracing::info_span!(target: TARGET, parent: &root, "propose");
        Proposing(Some(((req.client_id, req.seq), root, stage)))
    }

    /// Ends `propose`. With the log index Raft gave the entry, the request waits for its
    /// fsync; without one (refused or answered from the dedup cache) only the reply is left.
    pub fn proposed(&mut self, p: Proposing, index: Option<u64>) {
        let Some((key, root, propose)) = p.0 else {
            return;
        };
        drop(propose);
        let stage = match index {
            Some(i) => {
                root.record("index", i);
                self.persisting.push_back((i, key));
                tracing::info_span!(target: TARGET, parent: &root, "persist", index = i)
            }
            None => tracing::info_span!(target: TARGET, parent: &root, "reply"),
        };
        self.tracked.insert(key, Tracked { root, stage });
    }

    /// The leader's log is durable through `index`.
    pub fn persisted(&mut self, index: u64) {
        self.advance(Stage::Persisting, index);
    }

    /// The commit index reached `index`.
    pub fn committed(&mut self, index: u64) {
        self.advance(Stage::Replicating, index);
    }

    /// The state machine applied through `index`.
    pub fn applied(&mut self, index: u64) {
        self.advance(Stage::Applying, index);
    }

    /// The answer went to the client: closes every span of the request.
    pub fn replied(&mut self, key: Key, outcome: &'static str) {
        if let Some(t) = self.tracked.remove(&key) {
            t.root.record("outcome", outcome);
        }
    }

    fn advance(&mut self, from: Stage, index: u64) {
        if self.tracked.is_empty() {
            self.persisting.clear();
            self.replicating.clear();
            self.applying.clear();
            return;
        }
        let (queue, next_name) = match from {
            Stage::Persisting => (&mut self.persisting, "replicate"),
            Stage::Replicating => (&mut self.replicating, "apply"),
            Stage::Applying => (&mut self.applying, "reply"),
        };
        let mut moved = Vec::new();
        while let Some(&(i, key)) = queue.front() {
            if i > index {
                break;
            }
            queue.pop_front();
            // A request answered early (its entry truncated, leadership lost) is gone already.
            if let Some(t) = self.tracked.get_mut(&key) {
                t.stage = match next_name {
                    "replicate" => {
                        tracing::info_span!(target: TARGET, parent: &t.root, "replicate", index = i)
                    }
                    "apply" => {
                        tracing::info_span!(target: TARGET, parent: &t.root, "apply", index = i)
                    }
                    _ => tracing::info_span!(target: TARGET, parent: &t.root, "reply", index = i),
                };
                moved.push((i, key));
            }
        }
        match from {
            Stage::Persisting => self.replicating.extend(moved),
            Stage::Replicating => self.applying.extend(moved),
            Stage::Applying => {}
        }
    }
}

#[derive(Clone, Copy)]
enum Stage {
    Persisting,
    Replicating,
    Applying,
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::SpanId;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn req(seq: u64) -> ClientRequest {
        ClientRequest {
            client_id: 7,
            seq,
            op: KvOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
        }
    }

    fn attr(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    /// Drives two requests through the stages as the node loop does (one persisted and
    /// committed in a later batch than the other) and reads back what the SDK exported.
    /// `tracing` caches each callsite's interest process-wide: a test whose subscriber records
    /// request spans, running beside one whose subscriber drops them, changes what the other
    /// sees. These tests take turns.
    static SUBSCRIBERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn each_request_gets_a_root_span_with_one_child_per_stage() {
        let _turn = SUBSCRIBERS.lock().unwrap_or_else(|e| e.into_inner());
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber =
            tracing_subscriber::Registry::default().with(crate::telemetry::otel_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let mut t = RequestTraces::default();
            let p = t.begin(&req(1), 1);
            t.proposed(p, Some(5));
            let p = t.begin(&req(2), 1);
            t.proposed(p, Some(6));
            // A duplicate answered from the cache never enters the log.
            let p = t.begin(&req(3), 1);
            t.proposed(p, None);
            assert_eq!(t.len(), 3);
            t.persisted(5);
            t.committed(5);
            t.applied(5);
            t.replied((7, 1), "ok");
            t.replied((7, 3), "ok");
            t.persisted(6);
            t.committed(6);
            t.applied(6);
            t.replied((7, 2), "error");
            assert!(t.is_empty());
            assert!(t.persisting.is_empty() && t.replicating.is_empty() && t.applying.is_empty());
        });
        provider.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("spans");
        let roots: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.name == "client_request")
            .collect();
        assert_eq!(roots.len(), 3);
        for root in &roots {
            assert_eq!(
                root.parent_span_id,
                SpanId::INVALID,
                "a request is a trace root"
            );
            let seq = attr(root, "seq").expect("seq");
            let children: Vec<&str> = spans
                .iter()
                .filter(|s| s.parent_span_id == root.span_context.span_id())
                .map(|s| s.name.as_ref())
                .collect();
            let (stages, index, outcome): (&[&str], _, _) = match seq.as_str() {
                "1" => (
                    &["propose", "persist", "replicate", "apply", "reply"],
                    Some("5"),
                    "ok",
                ),
                "2" => (
                    &["propose", "persist", "replicate", "apply", "reply"],
                    Some("6"),
                    "error",
                ),
                _ => (&["propose", "reply"], None, "ok"),
            };
            let mut sorted = children.clone();
            sorted.sort_unstable();
            let mut want = stages.to_vec();
            want.sort_unstable();
            assert_eq!(sorted, want, "stages of request {seq}");
            assert_eq!(attr(root, "index").as_deref(), index);
            assert_eq!(attr(root, "outcome").as_deref(), Some(outcome));
            assert_eq!(attr(root, "op").as_deref(), Some("put"));
            for child in spans
                .iter()
                .filter(|s| s.parent_span_id == root.span_context.span_id())
            {
                assert_eq!(child.span_context.trace_id(), root.span_context.trace_id());
                assert!(child.start_time >= root.start_time && child.end_time <= root.end_time);
            }
        }
    }

    /// The node without `--otlp-endpoint`: only the log layer, which turns request spans off.
    #[test]
    fn with_only_the_log_layer_nothing_is_tracked() {
        let _turn = SUBSCRIBERS.lock().unwrap_or_else(|e| e.into_inner());
        let log = crate::telemetry::log_layer(crate::telemetry::LogFormat::Json).expect("layer");
        let subscriber = tracing_subscriber::Registry::default().with(log);
        tracing::subscriber::with_default(subscriber, || {
            // Other tests run subscribers that record these spans; the callsites' cached
            // interest must be recomputed with this one registered, or it is the others'.
            tracing::callsite::rebuild_interest_cache();
            let mut t = RequestTraces::default();
            let p = t.begin(&req(1), 1);
            t.proposed(p, Some(1));
            assert!(t.is_empty());
            t.persisted(1);
            assert!(t.persisting.is_empty());
        });
    }
}
