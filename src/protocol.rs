//! The HTTP protocol between agent and server (see `docs/protocol.md`).
//!
//! Every call carries the channel database id and secret as HTTP Basic
//! authentication. Bodies are JSON, except package content, which is the
//! package file itself, served with `Range` support.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::package::{PackageKind, Value};
use crate::status::Direction;

/// `GET /v1/ping`: who the server thinks we are. Used by `test-connection`.
pub const PING: &str = "/v1/ping";
/// `GET /v1/packages?after=SEQ&wait_ms=MS`: packages newer than `after`, in
/// publication order. With `wait_ms`, the server holds the request until a
/// package is published or the wait ends (long poll).
pub const PACKAGES: &str = "/v1/packages";
/// `POST /v1/status`: a session's status changed.
pub const STATUS: &str = "/v1/status";
/// `POST /v1/status/batch`: several status changes, in order, one request
/// and one write at the server (answered with [`StatusBatchAck`]). A server
/// without it answers 404; the agent then sends them one by one.
pub const STATUS_BATCH: &str = "/v1/status/batch";
/// The most reports one `POST /v1/status/batch` carries.
pub const MAX_STATUS_BATCH: usize = 500;
/// `POST /v1/uploads`: a batch of channel transactions.
pub const UPLOADS: &str = "/v1/uploads";
/// `GET /v1/uploads/high-water`: per table, the highest counter stored.
pub const HIGH_WATER: &str = "/v1/uploads/high-water";

/// `GET /v1/groups/{group}/head`: where a data group's listing stands
/// ([`GroupHead`]), for anyone: no credentials, the same answer for every
/// store of the group, cacheable for [`HEAD_MAX_AGE_SECS`] with its version
/// in the `ETag`. A CDN or caching proxy in front of headquarters answers
/// a fleet's "anything new?" with one request a second per group; a store
/// asks for its own (authenticated) listing only when the version moved.
pub fn group_head_path(data_group: &str) -> String {
    format!("/v1/groups/{data_group}/head")
}
/// How long a [`GroupHead`] answer may be kept by a cache
/// (`Cache-Control: public, max-age=1`).
pub const HEAD_MAX_AGE_SECS: u64 = 1;

/// Where a data group's listing stands. Two answers with the same
/// `version` list the same packages the same way (published, withdrawn,
/// superseded); a store that listed at one version has nothing to ask at
/// the same version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHead {
    pub data_group: String,
    /// The newest sequence published (0: none).
    pub newest: u64,
    /// Moves at every change of the group's listing; also the `ETag`.
    /// Opaque: compare for equality only.
    pub version: String,
}

/// The longest long poll a server honours; longer waits are cut to this.
pub const MAX_WAIT_MS: u64 = 60_000;

/// The route of a package's content.
pub fn package_content_path(id: Uuid) -> String {
    format!("/v1/packages/{id}/content")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    pub channel_id: String,
    pub data_group: String,
    pub server_time_ms: i64,
    /// `Content-Encoding`s the server accepts on `POST /v1/uploads`
    /// (`zstd`); empty from a server that takes only plain JSON.
    #[serde(default)]
    pub upload_encodings: Vec<String>,
}

/// One published package, as listed for a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInfo {
    pub id: Uuid,
    pub data_group: String,
    pub job: String,
    pub sequence: u64,
    pub kind: PackageKind,
    /// Size of the package file in bytes.
    pub bytes: u64,
    /// SHA-256 of the package file, lower-case hex; also its `ETag`.
    pub sha256: String,
    /// Row frames in the package (upserts plus deletes).
    pub rows: u64,
    pub created_at_ms: i64,
    /// Uncompressed size of the package body (frames and checksum). The
    /// agent refuses a package that expands beyond it. `None` from a server
    /// that does not say (then the free disk space is the bound).
    #[serde(default)]
    pub content_bytes: Option<u64>,
    /// Where else the file can be downloaded: an absolute `http`/`https`
    /// URL, fetched without the channel's credentials (a CDN or any HTTP
    /// server, docs/protocol.md section 3.3). `None`: only from the API.
    /// (Never `skip_serializing_if`: the journal stores this struct with
    /// bincode, which has no field names to skip by.)
    #[serde(default)]
    pub content_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageList {
    pub data_group: String,
    pub packages: Vec<ListedPackage>,
    /// Set when the channel asks for packages after a sequence below the
    /// highest it applied before: its channel database went back (restored
    /// from a backup, or re-seeded by a full sync). That highest sequence;
    /// absent otherwise, and from a server that does not tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_before: Option<u64>,
}

/// A package as listed, and whether a store that has not applied it must
/// pass over it instead (docs/protocol.md section 3.2, "Withdrawn and
/// superseded packages"). In JSON the package's fields and these sit side
/// by side in one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedPackage {
    #[serde(flatten)]
    pub package: PackageInfo,
    /// Headquarters took the package back: no store should apply it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<Withdrawal>,
    /// A later full package of the same job replaces every table this one
    /// changes: a store that has not applied it goes straight to that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<Supersession>,
}

impl ListedPackage {
    /// A package to apply (neither withdrawn nor superseded).
    pub fn new(package: PackageInfo) -> ListedPackage {
        ListedPackage {
            package,
            withdrawn: None,
            superseded_by: None,
        }
    }

    /// Why a store that has not applied this package passes over it, as one
    /// sentence; `None` when it must apply it.
    pub fn pass_over_reason(&self) -> Option<String> {
        if let Some(w) = &self.withdrawn {
            return Some(format!(
                "withdrawn at headquarters by {} at {}: {}",
                w.by,
                rfc3339_ms(w.at_ms),
                w.reason
            ));
        }
        self.superseded_by.as_ref().map(|s| {
            format!(
                "superseded by full package {} (#{}) of job {}",
                s.id, s.sequence, self.package.job
            )
        })
    }
}

/// Who withdrew a package, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub reason: String,
    pub by: String,
    pub at_ms: i64,
}

/// The full package that supersedes another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supersession {
    pub id: Uuid,
    pub sequence: u64,
}

/// A session's status change, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub session_id: Uuid,
    pub direction: Direction,
    /// The download's package, or the upload's batch id.
    pub subject_id: Uuid,
    /// The job ("1040") for downloads; the table for uploads.
    pub job: String,
    /// The status's name, as in [`crate::status`].
    pub status: String,
    pub message: Option<String>,
    pub bytes: u64,
    pub rows: u64,
    pub attempt: u32,
    pub at_ms: i64,
}

/// The answer to `POST /v1/status/batch`: how many were recorded, and each
/// refused one by its index in the batch, with why. A refused report is
/// refused for good (sending it again changes nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusBatchAck {
    pub recorded: u64,
    #[serde(default)]
    pub refused: Vec<RefusedReport>,
}

/// One report of a batch the server did not record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedReport {
    pub index: usize,
    pub error: String,
}

/// A batch of rows of one channel table, all with counters in
/// `first_counter..=last_counter`. `upload_id` makes a re-sent batch
/// recognisable; the server stores each (table, counter) once regardless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadBatch {
    pub upload_id: Uuid,
    pub table: String,
    pub counter_column: String,
    pub columns: Vec<String>,
    /// Each column's package type (`decimal(19,4)`, `datetime`, ...), as
    /// the store declares it; `None` for a type cdx does not map. Empty
    /// from an agent that does not send types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub column_types: Vec<Option<String>>,
    /// Row values in `columns` order; see [`json_value`] for the mapping.
    pub rows: Vec<Vec<serde_json::Value>>,
    pub first_counter: i64,
    pub last_counter: i64,
}

/// An [`UploadBatch`] borrowing its rows as the channel database read
/// them: serialises to the same JSON, written straight from the values
/// with no `serde_json::Value` built for each (the agent's way to encode
/// a batch; `UploadBatch` is the server's and the tests' way to read one).
#[derive(Serialize)]
pub struct UploadBatchRef<'a> {
    pub upload_id: Uuid,
    pub table: &'a str,
    pub counter_column: &'a str,
    pub columns: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub column_types: &'a [Option<String>],
    #[serde(serialize_with = "rows_as_json")]
    pub rows: &'a [Vec<Value>],
    pub first_counter: i64,
    pub last_counter: i64,
}

fn rows_as_json<S: serde::Serializer>(rows: &[Vec<Value>], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(rows.len()))?;
    for row in rows {
        seq.serialize_element(&JsonRow(row))?;
    }
    seq.end()
}

struct JsonRow<'a>(&'a [Value]);

impl Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for value in self.0 {
            seq.serialize_element(&JsonValue(value))?;
        }
        seq.end()
    }
}

/// A value as [`json_value`] maps it, serialised in place.
struct JsonValue<'a>(&'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::SerializeMap;
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Integer(i) => s.serialize_i64(*i),
            // As `serde_json::Value::from(f64)`: no JSON number is not finite.
            Value::Real(f) if !f.is_finite() => s.serialize_unit(),
            Value::Real(f) => s.serialize_f64(*f),
            Value::Text(t) => s.serialize_str(t),
            Value::Blob(b) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(
                    "base64",
                    &base64::engine::general_purpose::STANDARD.encode(b),
                )?;
                map.end()
            }
        }
    }
}

/// The server stored the batch: `stored` new rows, `duplicates` already held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAck {
    pub upload_id: Uuid,
    pub table: String,
    pub stored: u64,
    /// Rows the server held already under the same counter, unchanged (a
    /// batch sent again).
    pub duplicates: u64,
    /// The highest counter the server now holds for this channel and table.
    pub high_water: i64,
    /// Rows whose counter the server held already with *other* values: the
    /// channel database's counters went back (restored from a backup, say).
    /// The server keeps them apart (`upload_conflicts`), never drops them.
    #[serde(default)]
    pub conflicts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HighWater {
    pub tables: std::collections::BTreeMap<String, i64>,
}

/// An error body: every non-2xx response carries one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// A row value as JSON: null, integer, float, string; blobs as
/// `{"base64": "..."}`.
pub fn json_value(value: &Value) -> serde_json::Value {
    use base64::Engine as _;
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Real(f) => serde_json::Value::from(*f),
        Value::Text(s) => serde_json::Value::from(s.as_str()),
        Value::Blob(b) => serde_json::json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(b)
        }),
    }
}

/// Unix time now in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A `Host` header's name without its port, lower-cased
/// (`[::1]:8090` is `::1`); `None` for a malformed bracket.
pub fn host_name(host: &str) -> Option<String> {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    Some(name.to_ascii_lowercase())
}

/// Whether a host name (from [`host_name`]) names this machine's loopback.
pub fn is_loopback_name(name: &str) -> bool {
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const LAST_RFC3339_MS: i64 = 253_402_300_799_999;

/// Unix milliseconds as a time, clamped to what RFC 3339 can write (a time
/// from the other side may be anything).
pub fn system_time(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.clamp(0, LAST_RFC3339_MS) as u64)
}

/// Unix milliseconds as an RFC 3339 UTC time with milliseconds
/// (`2026-12-02T15:13:38.123Z`), as documents for people show times.
pub fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

/// `GET /v1/sessions`: the channel's own sessions as the server records them,
/// for debugging.
pub const SESSIONS: &str = "/v1/sessions";

/// A session as the server records it: its current status, after the last
/// report (or the server's own transition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub channel_id: String,
    pub direction: Direction,
    /// The package (downloads) or the upload batch (uploads).
    pub subject_id: Uuid,
    /// The agent's session id, once it reported one.
    pub session_id: Option<Uuid>,
    /// The job ("1040") for downloads; the table for uploads.
    pub job: String,
    /// The package's sequence (downloads only).
    pub sequence: Option<u64>,
    /// The status's name, as in [`crate::status`].
    pub status: String,
    /// The original's numeric code of `status`.
    pub status_code: u8,
    pub message: Option<String>,
    pub bytes: u64,
    pub rows: u64,
    /// The highest attempt reported.
    pub attempts: u32,
    pub created_at_ms: i64,
    pub modified_at_ms: i64,
}

/// `GET /v1/sessions`: the calling channel's sessions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionList {
    pub download: Vec<SessionInfo>,
    pub upload: Vec<SessionInfo>,
}

/// Characters of the other side's text kept in a log line or a status
/// document; the rest is cut.
const PRINTABLE_CHARS: usize = 1000;

/// Text from the other side (a server's error message) as it may go into a
/// log line or a status document: control characters escaped (`\n`,
/// `\u{1b}`), so a newline or an escape code cannot forge a log line or
/// colour a terminal, and cut after 1,000 characters.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(PRINTABLE_CHARS));
    for (i, c) in text.chars().enumerate() {
        if i == PRINTABLE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod upload_batch_tests {
    use super::*;

    /// The borrowed batch writes exactly the JSON of the owned one, value
    /// by value (floats, non-finite floats, escapes, blobs, nulls).
    #[test]
    fn borrowed_batch_serialises_as_the_owned_one() {
        let rows = vec![
            vec![
                Value::Integer(-7),
                Value::Real(0.1),
                Value::Real(f64::NAN),
                Value::Real(1e300),
                Value::Text("quote \" back \\ nl \n é".into()),
                Value::Blob(vec![0, 1, 254, 255]),
                Value::Null,
            ],
            vec![
                Value::Integer(i64::MAX),
                Value::Real(-0.0),
                Value::Real(f64::INFINITY),
                Value::Real(12.5),
                Value::Text(String::new()),
                Value::Blob(Vec::new()),
                Value::Null,
            ],
        ];
        let columns: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
        let types = vec![Some("integer".to_string()); 7];
        let id = Uuid::new_v4();
        for types in [types, Vec::new()] {
            let owned = UploadBatch {
                upload_id: id,
                table: "t".into(),
                counter_column: "c0".into(),
                columns: columns.clone(),
                column_types: types.clone(),
                rows: rows
                    .iter()
                    .map(|r| r.iter().map(json_value).collect())
                    .collect(),
                first_counter: -7,
                last_counter: i64::MAX,
            };
            let borrowed = UploadBatchRef {
                upload_id: id,
                table: "t",
                counter_column: "c0",
                columns: &columns,
                column_types: &types,
                rows: &rows,
                first_counter: -7,
                last_counter: i64::MAX,
            };
            assert_eq!(
                serde_json::to_string(&borrowed).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
        }
    }
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    /// Newlines and escape codes are escaped, long text is cut.
    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        assert_eq!(
            printable("bad\nINFO forged line \u{1b}[31mred"),
            "bad\\nINFO forged line \\u{1b}[31mred"
        );
        assert_eq!(printable("plain, ünïcode"), "plain, ünïcode");
        let long = "x".repeat(5000);
        assert_eq!(printable(&long).chars().count(), 1001);
    }
}
