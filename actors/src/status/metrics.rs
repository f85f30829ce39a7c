//! The agent's metrics (`GET /metrics`, Prometheus text format). Counters
//! and histograms are recorded where the work happens; the gauges are set
//! from the status document when `/metrics` is read.

use std::collections::BTreeMap;
use std::sync::Once;

use cdx::metrics::{labels, set_gauge_family};
use cdx::protocol::now_ms;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};

use super::StatusDocument;

pub const PACKAGES_APPLIED: &str = "cdx_packages_applied_total";
pub const ROWS_APPLIED: &str = "cdx_rows_applied_total";
pub const DOWNLOADED_BYTES: &str = "cdx_downloaded_bytes_total";
pub const UPLOADED_ROWS: &str = "cdx_uploaded_rows_total";
pub const DOWNLOAD_DURATION: &str = "cdx_download_duration_seconds";
pub const APPLY_DURATION: &str = "cdx_apply_duration_seconds";
const LAST_POLL: &str = "cdx_last_successful_poll_timestamp_seconds";
const LAG_PACKAGES: &str = "cdx_lag_packages";
const LAG_SECONDS: &str = "cdx_lag_seconds";
const SALES_WAITING: &str = "cdx_sales_rows_waiting";
const SESSIONS: &str = "cdx_sessions";
const RESTARTS: &str = "cdx_actor_restarts_total";
const SUSPENDED: &str = "cdx_suspended";
const HEALTHY: &str = "cdx_healthy";
const UP_SINCE: &str = "cdx_start_timestamp_seconds";

/// Installs the recorder and the help texts (once per process).
pub fn install() {
    static DESCRIBED: Once = Once::new();
    cdx::metrics::handle();
    DESCRIBED.call_once(|| {
        describe_counter!(
            PACKAGES_APPLIED,
            "Packages applied to the channel database."
        );
        describe_counter!(
            ROWS_APPLIED,
            "Rows (upserts and deletes) applied by packages."
        );
        describe_counter!(
            DOWNLOADED_BYTES,
            Unit::Bytes,
            "Package bytes downloaded (a resumed download counts the rest only)."
        );
        describe_counter!(
            UPLOADED_ROWS,
            "Sales rows uploaded and acknowledged by headquarters."
        );
        describe_histogram!(
            DOWNLOAD_DURATION,
            Unit::Seconds,
            "Time to download one package, successful tries."
        );
        describe_histogram!(
            APPLY_DURATION,
            Unit::Seconds,
            "Time to apply one package in its transaction, successful tries."
        );
        describe_gauge!(
            LAST_POLL,
            Unit::Seconds,
            "Unix time of the last successful poll of headquarters (0: none yet)."
        );
        describe_gauge!(
            LAG_PACKAGES,
            "Packages listed by headquarters and not applied yet (one listing holds at most 100)."
        );
        describe_gauge!(
            LAG_SECONDS,
            Unit::Seconds,
            "Age of the oldest package listed and not applied yet (0: none)."
        );
        describe_gauge!(
            SALES_WAITING,
            "Sales rows above the upload watermark, by table, as of the last upload pass."
        );
        describe_gauge!(
            SESSIONS,
            "Sessions in the message database, by direction and status."
        );
        describe_counter!(
            RESTARTS,
            "Restarts of each actor after a panic or a failure."
        );
        describe_gauge!(
            SUSPENDED,
            "1 while a package is suspended and waits for an operator."
        );
        describe_gauge!(
            HEALTHY,
            "1 while /health answers 200, 0 while it answers 503."
        );
        describe_gauge!(UP_SINCE, Unit::Seconds, "Unix time the agent started.");
        // Counters read 0 before their first event, not absent.
        for name in [
            PACKAGES_APPLIED,
            ROWS_APPLIED,
            DOWNLOADED_BYTES,
            UPLOADED_ROWS,
        ] {
            counter!(name).increment(0);
        }
    });
}

/// Sessions by direction and status.
pub type SessionCounts = BTreeMap<(&'static str, String), u64>;

/// The metrics text: the gauges set from `doc` and `sessions`, then
/// everything recorded.
pub fn render(doc: &StatusDocument, sessions: &SessionCounts) -> String {
    install();
    let seconds = |ms: i64| ms as f64 / 1000.0;
    gauge!(UP_SINCE).set(seconds(doc.started_at_ms));
    gauge!(LAST_POLL).set(match doc.last_poll.ok {
        Some(true) => doc.last_poll.at_ms.map_or(0.0, seconds),
        _ => doc.last_successful_poll_ms.map_or(0.0, seconds),
    });
    gauge!(LAG_PACKAGES).set(doc.behind.packages as f64);
    gauge!(LAG_SECONDS).set(
        doc.behind
            .oldest_created_at_ms
            .map_or(0.0, |at| seconds(now_ms().saturating_sub(at).max(0))),
    );
    gauge!(SUSPENDED).set(if doc.suspended.is_some() { 1.0 } else { 0.0 });
    gauge!(HEALTHY).set(if doc.healthy { 1.0 } else { 0.0 });
    for (actor, health) in &doc.actors {
        counter!(RESTARTS, "actor" => actor.clone()).absolute(u64::from(health.restarts));
    }
    set_gauge_family(
        SALES_WAITING,
        doc.watermarks
            .iter()
            .filter_map(|(table, w)| Some((labels([("table", table)]), w.waiting? as f64)))
            .collect(),
    );
    set_gauge_family(
        SESSIONS,
        sessions
            .iter()
            .map(|((direction, status), n)| {
                (
                    labels([("direction", direction), ("status", status)]),
                    *n as f64,
                )
            })
            .collect(),
    );
    cdx::metrics::render()
}
