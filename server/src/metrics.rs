//! Headquarters' metrics (`GET /metrics`, Prometheus text format): requests
//! by route and status code, long polls waiting, uploads, and the fleet
//! (channels by state, each channel's applied sequence and last connection)
//! read from `server.db` when `/metrics` is read.

use std::collections::BTreeMap;
use std::sync::Once;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};

use super::fleet::StoreState;
use cdx::metrics::{labels, set_gauge_family};

pub const REQUESTS: &str = "cdx_server_requests_total";
pub const REQUEST_DURATION: &str = "cdx_server_request_duration_seconds";
pub const LONG_POLLS: &str = "cdx_server_long_polls_waiting";
pub const UPLOADS_STORED: &str = "cdx_server_upload_rows_stored_total";
pub const UPLOAD_DUPLICATES: &str = "cdx_server_upload_rows_duplicate_total";
const CHANNELS: &str = "cdx_server_channels";
const APPLIED: &str = "cdx_server_channel_applied_sequence";
const BEHIND: &str = "cdx_server_channel_behind_packages";
const LAST_CONNECTION: &str = "cdx_server_channel_last_connection_timestamp_seconds";

/// Installs the recorder and the help texts (once per process).
pub fn install() {
    static DESCRIBED: Once = Once::new();
    cdx::metrics::handle();
    DESCRIBED.call_once(|| {
        describe_counter!(
            REQUESTS,
            "HTTP requests answered, by route and status code."
        );
        describe_histogram!(
            REQUEST_DURATION,
            Unit::Seconds,
            "Time to answer a request, by route (long polls include their wait)."
        );
        describe_gauge!(
            LONG_POLLS,
            "Package listings waiting for a publication (long polls)."
        );
        describe_counter!(UPLOADS_STORED, "Uploaded sales rows stored.");
        describe_counter!(
            UPLOAD_DUPLICATES,
            "Uploaded sales rows ignored because they were already stored (re-sends)."
        );
        describe_gauge!(
            CHANNELS,
            "Channels by state: failing (a failed, suspended or canceled session), \
             behind (packages not applied), in_sync, or never_connected."
        );
        describe_gauge!(
            APPLIED,
            "The highest sequence each channel reported applied."
        );
        describe_gauge!(
            BEHIND,
            "Packages published for each channel's group and not applied."
        );
        describe_gauge!(
            LAST_CONNECTION,
            Unit::Seconds,
            "Unix time of each channel's last authenticated request (0: never)."
        );
        // Read 0 before their first event, not absent.
        counter!(UPLOADS_STORED).increment(0);
        counter!(UPLOAD_DUPLICATES).increment(0);
        gauge!(LONG_POLLS).increment(0.0);
    });
}

/// Counts one answered request.
pub fn request(route: &str, code: u16, seconds: f64) {
    counter!(REQUESTS, "route" => route.to_owned(), "code" => code.to_string()).increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route.to_owned()).record(seconds);
}

/// Counts a waiting long poll for as long as it lives.
pub struct LongPollGuard(());

impl LongPollGuard {
    #[allow(clippy::new_without_default)] // a guard, made on purpose
    pub fn new() -> Self {
        gauge!(LONG_POLLS).increment(1.0);
        LongPollGuard(())
    }
}

impl Drop for LongPollGuard {
    fn drop(&mut self) {
        gauge!(LONG_POLLS).decrement(1.0);
    }
}

/// A channel's state, as `cdx_server_channels` counts it.
pub fn channel_state(s: &StoreState) -> &'static str {
    if s.last_connection_ms.is_none() {
        "never_connected"
    } else if !s.problems.is_empty() {
        "failing"
    } else if s.behind > 0 {
        "behind"
    } else {
        "in_sync"
    }
}

/// The metrics text, with the fleet's gauges set from `fleet`.
pub fn render(fleet: &[StoreState]) -> String {
    install();
    let mut states: BTreeMap<cdx::metrics::Labels, f64> =
        ["failing", "behind", "in_sync", "never_connected"]
            .iter()
            .map(|s| (labels([("state", s)]), 0.0))
            .collect();
    let (mut applied, mut behind, mut seen) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for s in fleet {
        *states
            .entry(labels([("state", channel_state(s))]))
            .or_default() += 1.0;
        let channel = labels([("channel", &s.channel), ("data_group", &s.data_group)]);
        applied.insert(channel.clone(), s.applied_sequence as f64);
        behind.insert(channel.clone(), s.behind as f64);
        seen.insert(
            channel,
            s.last_connection_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
        );
    }
    set_gauge_family(CHANNELS, states);
    set_gauge_family(APPLIED, applied);
    set_gauge_family(BEHIND, behind);
    set_gauge_family(LAST_CONNECTION, seen);
    cdx::metrics::render()
}
