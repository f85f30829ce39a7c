//! Storing uploaded channel transactions.
//!
//! Uploads are insert-only and idempotent: each row is stored once per
//! (channel, table, counter), whatever batch or `upload_id` carries it, so
//! re-sending a batch stores nothing new. Per (channel, table) the server
//! keeps the highest counter stored (the high-water mark the agent resumes
//! after) and the number of rows stored.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::error::ServerError;
use super::sessions::record_upload_applied;
use super::store::Store;
use crate::protocol::{HighWater, UploadAck, UploadBatch};

/// Per (channel, table): what the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTableInfo {
    pub channel: String,
    pub table: String,
    pub high_water: i64,
    pub rows: u64,
}

/// Checks a batch; returns the index of the counter column.
pub fn validate_batch(batch: &UploadBatch) -> Result<usize, ServerError> {
    let invalid = |m: String| Err(ServerError::Invalid(m));
    if batch.table.is_empty() {
        return invalid("the table name is empty".into());
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
    if batch.first_counter > batch.last_counter {
        return invalid(format!(
            "first_counter {} is greater than last_counter {}",
            batch.first_counter, batch.last_counter
        ));
    }
    let mut counters = HashSet::with_capacity(batch.rows.len());
    for (i, row) in batch.rows.iter().enumerate() {
        if row.len() != batch.columns.len() {
            return invalid(format!(
                "row {i} has {} values, expected {} (one per column)",
                row.len(),
                batch.columns.len()
            ));
        }
        let value = &row[counter_index];
        let Some(counter) = value.as_i64() else {
            return invalid(format!(
                "row {i}: counter `{}` is not an integer: {value}",
                batch.counter_column
            ));
        };
        if counter < batch.first_counter || counter > batch.last_counter {
            return invalid(format!(
                "row {i}: counter {counter} is outside first_counter..=last_counter ({}..={})",
                batch.first_counter, batch.last_counter
            ));
        }
        if !counters.insert(counter) {
            return invalid(format!(
                "row {i}: counter {counter} appears twice in the batch"
            ));
        }
    }
    Ok(counter_index)
}

impl Store {
    /// Stores `batch` for `channel` in one transaction and records its upload
    /// session as Applied. `body_bytes` is the size of the request, for the
    /// session.
    pub fn store_upload(
        &self,
        channel: &str,
        batch: &UploadBatch,
        body_bytes: u64,
    ) -> Result<UploadAck, ServerError> {
        let counter_index = validate_batch(batch)?;
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mut stored, mut duplicates) = (0u64, 0u64);
            let mut max_counter = None;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO uploaded_rows (channel, table_name, counter, upload_id, row_json)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let upload_id = batch.upload_id.to_string();
                for row in &batch.rows {
                    let counter = row[counter_index].as_i64().expect("validated");
                    let object: serde_json::Map<String, serde_json::Value> =
                        batch.columns.iter().cloned().zip(row.iter().cloned()).collect();
                    let json = serde_json::Value::Object(object).to_string();
                    match insert.execute(params![channel, batch.table, counter, upload_id, json])? {
                        0 => duplicates += 1,
                        _ => stored += 1,
                    }
                    max_counter = max_counter.max(Some(counter));
                }
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
                body_bytes,
            )?;
            let high_water = high_water_in(&tx, channel, &batch.table)?.unwrap_or(0);
            tx.commit()?;
            tracing::info!(
                channel, table = %batch.table, upload = %batch.upload_id, stored, duplicates,
                high_water, "stored upload"
            );
            Ok(UploadAck {
                upload_id: batch.upload_id,
                table: batch.table.clone(),
                stored,
                duplicates,
                high_water,
            })
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
