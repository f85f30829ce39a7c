//! Prometheus metrics, shared by the agent and the server: one recorder per
//! process (the `metrics` crate's global one), rendered in the Prometheus
//! text format by `GET /metrics`.
//!
//! Counters and histograms are recorded where things happen (a package
//! applied, a request answered). Gauges that describe a state (lag, health,
//! sessions by status) are set from that state when `/metrics` is read,
//! with [`set_gauge_family`], so a label set that disappeared reads 0
//! instead of its last value.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for durations in seconds: a 1-row package applies in
/// milliseconds, a full one of millions of rows in minutes.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Metrics recorded before
/// it is installed are lost, so binaries call this at start.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".into()),
                DURATION_BUCKETS,
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Only when something else in the process installed one first
            // (an embedding program): its metrics are its own, ours read 0.
            tracing::warn!("another metrics recorder is installed; /metrics shows none of cdx's");
        }
        handle
    })
}

/// Everything recorded so far, in the Prometheus text format (0.0.4).
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// A label set: (name, value) pairs.
pub type Labels = Vec<(String, String)>;

/// The label sets each gauge family was last set with.
static FAMILIES: OnceLock<Mutex<HashMap<&'static str, BTreeSet<Labels>>>> = OnceLock::new();

/// Sets gauge `name` to `values` (one value per label set) and to 0 for
/// every label set it had last time and no longer has.
pub fn set_gauge_family(name: &'static str, values: BTreeMap<Labels, f64>) {
    let families = FAMILIES.get_or_init(Default::default);
    let mut families = families.lock().unwrap_or_else(|p| p.into_inner());
    let seen = families.entry(name).or_default();
    let to_labels = |pairs: &[(String, String)]| -> Vec<metrics::Label> {
        pairs
            .iter()
            .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
            .collect()
    };
    for gone in seen.iter().filter(|labels| !values.contains_key(*labels)) {
        metrics::gauge!(name, to_labels(gone)).set(0.0);
    }
    seen.clear();
    for (labels, value) in values {
        metrics::gauge!(name, to_labels(&labels)).set(value);
        seen.insert(labels);
    }
}

/// A label set from pairs.
pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
