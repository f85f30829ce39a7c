//! Storing uploaded channel transactions.
//!
//! Uploads are insert-only and idempotent: each row is stored once per
//! (channel, table, counter), whatever batch or `upload_id` carries it, so
//! re-sending a batch stores nothing new. Per (channel, table) the server
//! keeps the highest counter stored (the high-water mark the agent resumes
//! after) and the number of rows stored.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::error::ServerError;
use super::sessions::record_upload_applied;
use super::store::Store;
use cdx::package::{is_identifier, shown, ColumnType, MAX_IDENTIFIER};
use cdx::protocol::{HighWater, UploadAck};

/// Per (channel, table): what the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTableInfo {
    pub channel: String,
    pub table: String,
    pub high_water: i64,
    pub rows: u64,
}

/// An upload batch as it arrives (`protocol::UploadBatch`), its rows left
/// as JSON text borrowed from the body: a 32 MiB body costs 16 bytes a row
/// on top of itself, not a tree of JSON values.
#[derive(Deserialize)]
struct RawBatch<'a> {
    upload_id: Uuid,
    table: String,
    counter_column: String,
    columns: Vec<String>,
    #[serde(default)]
    column_types: Vec<Option<String>>,
    #[serde(borrow)]
    rows: Vec<&'a RawValue>,
    first_counter: i64,
    last_counter: i64,
}

fn invalid<T>(message: String) -> Result<T, ServerError> {
    Err(ServerError::Invalid(message))
}

/// Checks the batch's names and range; returns the index of the counter column.
fn validate_names(batch: &RawBatch<'_>) -> Result<usize, ServerError> {
    for (what, name) in [
        ("table", &batch.table),
        ("counter column", &batch.counter_column),
    ]
    .into_iter()
    .chain(batch.columns.iter().map(|c| ("column", c)))
    {
        if !is_identifier(name) {
            return invalid(format!(
                "{what} name {} is not an identifier (ASCII letters, digits and `_`, \
                 not starting with a digit, 1 to {MAX_IDENTIFIER} bytes)",
                shown(name)
            ));
        }
    }
    let mut seen = HashSet::new();
    for column in &batch.columns {
        if !seen.insert(column.as_str()) {
            return invalid(format!("column `{column}` appears twice in `columns`"));
        }
    }
    let Some(counter_index) = batch
        .columns
        .iter()
        .position(|c| *c == batch.counter_column)
    else {
        return invalid(format!(
            "the counter column `{}` is not among the columns",
            batch.counter_column
        ));
    };
    if !batch.column_types.is_empty() && batch.column_types.len() != batch.columns.len() {
        return invalid(format!(
            "{} column_types for {} columns",
            batch.column_types.len(),
            batch.columns.len()
        ));
    }
    for (column, ty) in batch.columns.iter().zip(&batch.column_types) {
        if let Some(ty) = ty {
            if let Err(why) = ty.parse::<ColumnType>() {
                return invalid(format!("column `{column}`: {why}"));
            }
        }
    }
    if batch.first_counter > batch.last_counter {
        return invalid(format!(
            "first_counter {} is greater than last_counter {}",
            batch.first_counter, batch.last_counter
        ));
    }
    Ok(counter_index)
}

/// One row checked against the batch: its counter, and the row as the
/// JSON object `{"column": value, ...}` the server keeps.
fn row_object<'r>(
    batch: &RawBatch<'_>,
    counter_index: usize,
    i: usize,
    row: &'r RawValue,
    values: &mut Vec<&'r RawValue>,
    object: &mut String,
) -> Result<i64, ServerError> {
    values.clear();
    let mut de = serde_json::Deserializer::from_str(row.get());
    serde::Deserializer::deserialize_seq(&mut de, RawValues(values))
        .and_then(|()| de.end())
        .map_err(|e| ServerError::Invalid(format!("row {i} is not an array of values: {e}")))?;
    if values.len() != batch.columns.len() {
        return invalid(format!(
            "row {i} has {} values, expected {} (one per column)",
            values.len(),
            batch.columns.len()
        ));
    }
    let raw = values[counter_index].get();
    let Ok(counter) = serde_json::from_str::<i64>(raw) else {
        return invalid(format!(
            "row {i}: counter `{}` is not an integer: {}",
            batch.counter_column,
            raw.chars().take(64).collect::<String>()
        ));
    };
    if counter < batch.first_counter || counter > batch.last_counter {
        return invalid(format!(
            "row {i}: counter {counter} is outside first_counter..=last_counter ({}..={})",
            batch.first_counter, batch.last_counter
        ));
    }
    object.clear();
    object.push('{');
    for (n, (column, value)) in batch.columns.iter().zip(values.iter()).enumerate() {
        if n > 0 {
            object.push(',');
        }
        // Identifiers need no escaping.
        object.push('"');
        object.push_str(column);
        object.push_str("\":");
        object.push_str(value.get());
    }
    object.push('}');
    Ok(counter)
}

/// Reads a JSON array's elements as raw values into a reused vector.
struct RawValues<'v, 'r>(&'v mut Vec<&'r RawValue>);

impl<'de: 'r, 'r> serde::de::Visitor<'de> for RawValues<'_, 'r> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of values")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<&'de RawValue>()? {
            self.0.push(value);
        }
        Ok(())
    }
}

/// A row that arrived under a counter the server held with other values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UploadConflict {
    pub channel: String,
    pub table: String,
    pub counter: i64,
    pub upload_id: String,
    /// The row that arrived, as `{"column": value}`.
    pub row_json: String,
    /// The row held under the same counter.
    pub held_json: String,
    pub received_at_ms: i64,
}

impl Store {
    /// Parses an upload body and stores the batch for `channel` in one
    /// transaction, row by row, and records its upload session as Applied.
    /// Memory stays near the body's size whatever its shape. Any invalid
    /// row refuses the whole batch (400) and stores nothing.
    pub fn store_upload(&self, channel: &str, body: &[u8]) -> Result<UploadAck, ServerError> {
        let batch: RawBatch<'_> = serde_json::from_slice(body)
            .map_err(|e| ServerError::Invalid(format!("bad upload batch: {e}")))?;
        let counter_index = validate_names(&batch)?;
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mut stored, mut duplicates, mut conflicts) = (0u64, 0u64, 0u64);
            let mut max_counter = None;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO uploaded_rows (channel, table_name, counter, upload_id, row_json)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut held = tx.prepare_cached(
                    "SELECT row_json FROM uploaded_rows
                     WHERE channel = ?1 AND table_name = ?2 AND counter = ?3",
                )?;
                let mut keep_apart = tx.prepare_cached(
                    "INSERT OR IGNORE INTO upload_conflicts
                         (channel, table_name, counter, upload_id, row_json, received_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let upload_id = batch.upload_id.to_string();
                // What every row shares is bound once.
                insert.raw_bind_parameter(1, channel)?;
                insert.raw_bind_parameter(2, batch.table.as_str())?;
                insert.raw_bind_parameter(4, upload_id.as_str())?;
                let mut counters = HashSet::with_capacity(batch.rows.len());
                let (mut values, mut json) = (Vec::new(), String::new());
                for (i, row) in batch.rows.iter().enumerate() {
                    let counter =
                        row_object(&batch, counter_index, i, row, &mut values, &mut json)?;
                    if !counters.insert(counter) {
                        return invalid(format!(
                            "row {i}: counter {counter} appears twice in the batch"
                        ));
                    }
                    max_counter = max_counter.max(Some(counter));
                    insert.raw_bind_parameter(3, counter)?;
                    insert.raw_bind_parameter(5, json.as_str())?;
                    if insert.raw_execute()? == 1 {
                        stored += 1;
                        continue;
                    }
                    // Held already: the same row sent again, or another row
                    // under a counter that went back. The second is kept apart.
                    let before: String =
                        held.query_row(params![channel, batch.table, counter], |r| r.get(0))?;
                    if before == json {
                        duplicates += 1;
                    } else {
                        conflicts += 1;
                        keep_apart.execute(params![
                            channel,
                            batch.table,
                            counter,
                            upload_id,
                            json,
                            cdx::protocol::now_ms()
                        ])?;
                    }
                }
            }
            if !batch.column_types.is_empty() {
                tx.prepare_cached(
                    "INSERT INTO upload_columns (channel, table_name, columns, types)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (channel, table_name) DO UPDATE SET
                         columns = excluded.columns, types = excluded.types",
                )?
                .execute(params![
                    channel,
                    batch.table,
                    serde_json::to_string(&batch.columns).unwrap_or_default(),
                    serde_json::to_string(&batch.column_types).unwrap_or_default(),
                ])?;
            }
            if let Some(max_counter) = max_counter {
                tx.execute(
                    "INSERT INTO upload_counters (channel, table_name, high_water, rows)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (channel, table_name) DO UPDATE SET
                         high_water = MAX(high_water, excluded.high_water),
                         rows = rows + excluded.rows",
                    params![channel, batch.table, max_counter, stored as i64],
                )?;
            }
            record_upload_applied(
                &tx,
                channel,
                batch.upload_id,
                &batch.table,
                batch.rows.len() as u64,
                body.len() as u64,
            )?;
            let high_water = high_water_in(&tx, channel, &batch.table)?.unwrap_or(0);
            tx.commit()?;
            tracing::info!(
                channel, table = %batch.table, upload = %batch.upload_id, stored, duplicates,
                conflicts, high_water, "stored upload"
            );
            if conflicts > 0 {
                tracing::error!(channel, table = %batch.table, upload = %batch.upload_id,
                    conflicts, "rows arrived under counters held with other values: the \
                    store's counters went back (restored channel database?); kept in \
                    upload_conflicts");
            }
            Ok(UploadAck {
                upload_id: batch.upload_id,
                table: batch.table.clone(),
                stored,
                duplicates,
                high_water,
                conflicts,
            })
        })
    }

    /// Rows kept apart because their counter was held with other values,
    /// with the row held, oldest first; of one channel or all.
    pub fn upload_conflicts(
        &self,
        channel: Option<&str>,
    ) -> Result<Vec<UploadConflict>, ServerError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT c.channel, c.table_name, c.counter, c.upload_id, c.row_json,
                        u.row_json, c.received_at_ms
                 FROM upload_conflicts c
                 LEFT JOIN uploaded_rows u ON u.channel = c.channel
                      AND u.table_name = c.table_name AND u.counter = c.counter
                 WHERE ?1 IS NULL OR c.channel = ?1
                 ORDER BY c.received_at_ms, c.channel, c.table_name, c.counter",
            )?;
            let rows = stmt.query_map([channel], |r| {
                Ok(UploadConflict {
                    channel: r.get(0)?,
                    table: r.get(1)?,
                    counter: r.get(2)?,
                    upload_id: r.get(3)?,
                    row_json: r.get(4)?,
                    held_json: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    received_at_ms: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The highest counter stored for `channel` and `table`, if any row is.
    pub fn high_water(&self, channel: &str, table: &str) -> Result<Option<i64>, ServerError> {
        self.with_conn(|conn| Ok(high_water_in(conn, channel, table)?))
    }

    /// Every table's high-water mark for `channel`.
    pub fn high_waters(&self, channel: &str) -> Result<HighWater, ServerError> {
        let tables = self.upload_tables(Some(channel))?;
        Ok(HighWater {
            tables: tables
                .into_iter()
                .map(|t| (t.table, t.high_water))
                .collect(),
        })
    }

    /// Rows stored for `channel` and `table`.
    pub fn uploaded_row_count(&self, channel: &str, table: &str) -> Result<u64, ServerError> {
        self.with_conn(|conn| {
            let rows: Option<i64> = conn
                .query_row(
                    "SELECT rows FROM upload_counters WHERE channel = ?1 AND table_name = ?2",
                    params![channel, table],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(rows.unwrap_or(0) as u64)
        })
    }

    /// Per channel and table: high-water mark and rows, of one channel or all.
    pub fn upload_tables(
        &self,
        channel: Option<&str>,
    ) -> Result<Vec<UploadTableInfo>, ServerError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT channel, table_name, high_water, rows FROM upload_counters
                 WHERE ?1 IS NULL OR channel = ?1 ORDER BY channel, table_name",
            )?;
            let rows = stmt.query_map([channel], |r| {
                Ok(UploadTableInfo {
                    channel: r.get(0)?,
                    table: r.get(1)?,
                    high_water: r.get(2)?,
                    rows: r.get::<_, i64>(3)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

/// How `cdx-server uploads export` writes rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object a line, as received: decimals as canonical text,
    /// blobs as `{"base64": ...}`.
    JsonLines,
    /// A header row, then one record a row; NULL as `null_marker` (empty by
    /// default), blobs as base64, every other value as its text.
    Csv { null_marker: String },
}

/// An upload table's column names and their package types (`None` for a
/// column whose type the agent did not say).
pub type UploadColumns = (Vec<String>, Vec<Option<String>>);

impl Store {
    /// The columns and types of `table` as `channel` last sent them.
    pub fn upload_columns(
        &self,
        channel: &str,
        table: &str,
    ) -> Result<Option<UploadColumns>, ServerError> {
        self.with_conn(|conn| {
            let found: Option<(String, String)> = conn
                .query_row(
                    "SELECT columns, types FROM upload_columns
                     WHERE channel = ?1 AND table_name = ?2",
                    params![channel, table],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(found.and_then(|(c, t)| {
                Some((
                    serde_json::from_str(&c).ok()?,
                    serde_json::from_str(&t).ok()?,
                ))
            }))
        })
    }

    /// Writes the rows `channel` uploaded for `table`, in counter order, to
    /// `out`; returns how many. Streams: memory does not grow with rows.
    pub fn export_uploads(
        &self,
        channel: &str,
        table: &str,
        format: &ExportFormat,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, ServerError> {
        let columns = self
            .upload_columns(channel, table)?
            .map(|(columns, _)| columns);
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT row_json FROM uploaded_rows
                 WHERE channel = ?1 AND table_name = ?2 ORDER BY counter",
            )?;
            let mut rows = stmt.query(params![channel, table])?;
            let io = |e: std::io::Error| ServerError::io("writing the export", e);
            enum Sink<'w> {
                Csv(Box<csv::Writer<&'w mut dyn std::io::Write>>, &'w str),
                Json(&'w mut dyn std::io::Write),
            }
            let mut sink = match format {
                ExportFormat::Csv { null_marker } => Sink::Csv(
                    Box::new(csv::Writer::from_writer(out)),
                    null_marker.as_str(),
                ),
                ExportFormat::JsonLines => Sink::Json(out),
            };
            let mut header: Option<Vec<String>> = None;
            let mut n = 0u64;
            while let Some(row) = rows.next()? {
                let json: String = row.get(0)?;
                match &mut sink {
                    Sink::Csv(w, null_marker) => {
                        let object: serde_json::Map<String, serde_json::Value> =
                            serde_json::from_str(&json).map_err(|e| {
                                ServerError::Invalid(format!("stored row is not an object: {e}"))
                            })?;
                        let names = header.get_or_insert_with(|| {
                            columns
                                .clone()
                                .unwrap_or_else(|| object.keys().cloned().collect())
                        });
                        if n == 0 {
                            w.write_record(names.iter()).map_err(|e| io(e.into()))?;
                        }
                        let fields = names.iter().map(|c| csv_field(object.get(c), null_marker));
                        w.write_record(fields).map_err(|e| io(e.into()))?;
                    }
                    Sink::Json(out) => {
                        out.write_all(json.as_bytes()).map_err(io)?;
                        out.write_all(b"\n").map_err(io)?;
                    }
                }
                n += 1;
            }
            if let Sink::Csv(mut w, _) = sink {
                w.flush().map_err(io)?;
            }
            Ok(n)
        })
    }
}

/// A stored JSON value as a CSV field.
fn csv_field(value: Option<&serde_json::Value>, null_marker: &str) -> String {
    use serde_json::Value as J;
    match value {
        None | Some(J::Null) => null_marker.to_owned(),
        Some(J::String(s)) => s.clone(),
        Some(J::Object(o)) => match o.get("base64") {
            Some(J::String(b)) => b.clone(),
            _ => J::Object(o.clone()).to_string(),
        },
        Some(other) => other.to_string(),
    }
}

fn high_water_in(
    conn: &rusqlite::Connection,
    channel: &str,
    table: &str,
) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT high_water FROM upload_counters WHERE channel = ?1 AND table_name = ?2",
        params![channel, table],
        |r| r.get(0),
    )
    .optional()
}
