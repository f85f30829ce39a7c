//! Applying a package in one SQL Server transaction.
//!
//! Every table of the header is checked (created, emptied for a full
//! package) before the first row. The rows then go in batches through a
//! staging table (`batch.rs`, `staging.rs`). The package's row in
//! `cdx_applied_packages` commits with its data.

mod batch;

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::pool::{Connection, SqlServerPool};
use super::read::{execute, last_sequence, query, table_columns};
use super::staging;
use super::tsql::{self, Bookkeeping};
use super::types::{alter_refusal, existing_table, widened_type};
use crate::channel_db::frames::{self, Frames};
use crate::channel_db::{ApplyOutcome, ApplyReport, ChannelDbError, PackageSource};
use crate::package::{PackageHeader, PackageKind, TableSchema};
use crate::plan::{self, Family, Limits, SchemaConflict, TableAction};

///
/// `reapply`: the package is applied already and is applied again over
/// itself (its record replaced), in its place in the order.
pub(super) fn apply_package(
    pool: &SqlServerPool,
    mut package: PackageSource<'_>,
    reapply: bool,
) -> Result<ApplyOutcome, ChannelDbError> {
    let header = package.header().clone();
    let pool = &pool.for_apply();
    let result = pool.with_connection(|connection| {
        frames::read_ahead(&mut package, |frames| {
            pool.block_on(in_transaction(pool, connection, &header, frames, reapply))
        })
    });
    match result {
        Err(
            e @ (ChannelDbError::Package { .. }
            | ChannelDbError::OutOfOrder { .. }
            | ChannelDbError::NotApplied { .. }),
        ) => Err(e),
        Err(e) => Err(frames::blame_corruption(&mut package, e)),
        ok => ok,
    }
}

/// Runs the apply between `BEGIN TRANSACTION` and `COMMIT`. On an error
/// the caller drops the connection, which rolls the transaction back on
/// the server whatever state the connection is in.
async fn in_transaction(
    pool: &SqlServerPool,
    connection: &mut Connection,
    header: &PackageHeader,
    frames: &mut Frames,
    reapply: bool,
) -> Result<ApplyOutcome, ChannelDbError> {
    let id = header.package_id;
    batch(
        pool,
        connection,
        || format!("begin transaction for package {id}"),
        "BEGIN TRANSACTION",
    )
    .await?;
    let outcome = Applying::new(pool, header)?
        .run(connection, frames, reapply)
        .await?;
    let end = match outcome {
        ApplyOutcome::Applied(_) => "COMMIT TRANSACTION",
        ApplyOutcome::AlreadyApplied => "ROLLBACK TRANSACTION",
    };
    batch(pool, connection, || format!("commit package {id}"), end).await?;
    Ok(outcome)
}

async fn batch(
    pool: &SqlServerPool,
    connection: &mut Connection,
    context: impl Fn() -> String,
    sql: &str,
) -> Result<(), ChannelDbError> {
    pool.timed(&context, async {
        connection.simple_query(sql).await?.into_results().await
    })
    .await?;
    Ok(())
}

/// One table of the package as the apply writes it.
struct Target {
    schema: TableSchema,
    /// Its staging table, created with its first row.
    stage: String,
    staged: bool,
    /// Columns narrower in the database than in the package.
    checks: Vec<(usize, Limits)>,
    /// The type, as declared, of each package column's column in the database.
    stored: Vec<Option<String>>,
    /// The collation of each package column's column in the database.
    collations: Vec<Option<String>>,
    /// Key columns' positions among the columns, in key order.
    key: Vec<usize>,
}

impl Target {
    fn layout(&self) -> staging::Layout<'_> {
        staging::Layout {
            table: &self.schema,
            stored: &self.stored,
            collations: &self.collations,
        }
    }
}

struct Applying<'p> {
    pool: &'p SqlServerPool,
    header: &'p PackageHeader,
    schema: String,
    sql: Bookkeeping,
    report: ApplyReport,
    /// Rows staged so far, numbering the next one.
    ordinal: i64,
}

impl<'p> Applying<'p> {
    fn new(pool: &'p SqlServerPool, header: &'p PackageHeader) -> Result<Self, ChannelDbError> {
        let schema = pool.config().schema.clone();
        Ok(Applying {
            pool,
            header,
            sql: Bookkeeping::new(&schema)?,
            schema,
            report: ApplyReport::default(),
            ordinal: 0,
        })
    }

    fn id(&self) -> Uuid {
        self.header.package_id
    }

    async fn run(
        mut self,
        connection: &mut Connection,
        frames: &mut Frames,
        reapply: bool,
    ) -> Result<ApplyOutcome, ChannelDbError> {
        let applied = self.is_applied(connection).await?;
        if reapply {
            if !applied {
                return Err(ChannelDbError::NotApplied {
                    package_id: self.id(),
                });
            }
            let id = self.id();
            execute(
                self.pool,
                connection,
                || format!("replace package {id} in cdx_applied_packages"),
                &self.sql.forget,
                &[&id],
            )
            .await?;
        } else if applied {
            return Ok(ApplyOutcome::AlreadyApplied);
        } else {
            self.check_sequence(connection).await?;
        }
        let mut targets = Vec::with_capacity(self.header.tables.len());
        for (index, schema) in self.header.tables.iter().enumerate() {
            targets.push(self.prepare(connection, index, schema).await?);
        }
        self.write_frames(connection, frames, &mut targets).await?;
        self.record(connection).await?;
        for target in targets.iter().filter(|t| t.staged) {
            let drop = format!("DROP TABLE {}", target.stage);
            batch(
                self.pool,
                connection,
                || format!("drop {}", target.stage),
                &drop,
            )
            .await?;
        }
        Ok(ApplyOutcome::Applied(self.report))
    }

    async fn is_applied(&self, connection: &mut Connection) -> Result<bool, ChannelDbError> {
        let id = self.id();
        let rows = query(
            self.pool,
            connection,
            || "read cdx_applied_packages".into(),
            &self.sql.is_applied,
            &[&id],
        )
        .await?;
        Ok(!rows.is_empty())
    }

    async fn check_sequence(&self, connection: &mut Connection) -> Result<(), ChannelDbError> {
        let group = &self.header.data_group;
        let context = || format!("read the last applied sequence of data group {group}");
        let last = last_sequence(
            self.pool,
            connection,
            &self.sql.last_sequence,
            group,
            context,
        )
        .await?;
        if self.header.sequence <= last {
            return Err(ChannelDbError::OutOfOrder {
                package_id: self.id(),
                data_group: group.clone(),
                sequence: self.header.sequence,
                last_applied: last,
            });
        }
        Ok(())
    }

    /// Checks the table against the package's, and creates or empties it.
    async fn prepare(
        &mut self,
        connection: &mut Connection,
        index: usize,
        schema: &TableSchema,
    ) -> Result<Target, ChannelDbError> {
        let name = &schema.name;
        if plan::is_reserved_table(name) {
            return Err(ChannelDbError::ReservedTable {
                package_id: self.id(),
                table: name.clone(),
            });
        }
        let qualified = tsql::qualified(&self.schema, name)?;
        let mut columns = table_columns(self.pool, connection, name).await?;
        let existing = columns.as_deref().map(|c| existing_table(name, c));
        let replace = self.header.replaces_table(name);
        let action = plan::check_table(existing.as_ref(), schema, replace)?;
        let id = self.id();
        let mut statements = Vec::new();
        // A full package empties the table first: what is altered after is
        // an empty table.
        if matches!(action, TableAction::UseExisting | TableAction::Alter { .. })
            && self.header.kind == PackageKind::Full
        {
            statements.push((
                format!("DELETE FROM {qualified}"),
                format!("package {id}: delete all rows of {qualified}"),
            ));
        }
        match &action {
            TableAction::Create | TableAction::Replace => {
                if action == TableAction::Replace {
                    statements.push((
                        format!("DROP TABLE {qualified}"),
                        format!("package {id}: drop table {qualified} to replace its definition"),
                    ));
                }
                statements.push((
                    tsql::create_table(&self.schema, schema)?,
                    format!("package {id}: create table {qualified}"),
                ));
            }
            TableAction::Alter { add, widen } => {
                for &i in add {
                    let column = &schema.columns[i];
                    statements.push((
                        tsql::add_column(&self.schema, schema, i)?,
                        format!(
                            "package {id}: add column {} ({}) to {qualified}",
                            column.name, column.ty
                        ),
                    ));
                }
                let have = |column: &str| {
                    columns
                        .iter()
                        .flatten()
                        .find(|h| h.name.eq_ignore_ascii_case(column))
                };
                for w in widen {
                    let Some(have) = have(&schema.columns[w.index].name) else {
                        continue;
                    };
                    let ty = widened_type(have, w.to);
                    if let Some(why) = alter_refusal(have, &ty) {
                        return Err(SchemaConflict::TypeMismatch {
                            table: name.clone(),
                            column: have.name.clone(),
                            expected: w.to.to_string(),
                            found: have.declared(),
                            why,
                        }
                        .into());
                    }
                    // A full package empties the table first: nothing to keep.
                    let keeps_rows = self.header.kind != PackageKind::Full;
                    let integer = have.stored().map(|s| s.family) == Some(Family::Integer);
                    if keeps_rows && integer {
                        if let Some((bound, _)) = plan::exact_integer_bound(w.to) {
                            let sql = tsql::integer_beyond(&self.schema, name, &have.name)?;
                            let rows = query(
                                self.pool,
                                connection,
                                || format!("package {id}: check {}.{} fits {ty}", name, have.name),
                                &sql,
                                &[&bound],
                            )
                            .await?;
                            if let Some(value) = rows
                                .first()
                                .and_then(|r| r.try_get::<i64, _>(0).ok().flatten())
                            {
                                return Err(ChannelDbError::ValueDoesNotFit {
                                    package_id: id,
                                    table: name.clone(),
                                    column: have.name.clone(),
                                    key: "a row already in the table".into(),
                                    detail: format!(
                                        "the value {value} would not stay exact, so the column \
                                         cannot become {ty} in place. {}",
                                        plan::REPLACE_WAY_OUT
                                    ),
                                });
                            }
                        }
                    }
                    statements.push((
                        tsql::alter_column(&self.schema, name, have, &ty)?,
                        format!(
                            "package {id}: widen column {} of {qualified} from {} to {ty}",
                            have.name,
                            have.declared()
                        ),
                    ));
                }
            }
            TableAction::UseExisting => {}
        }
        for (sql, what) in statements {
            execute(self.pool, connection, || what.clone(), &sql, &[]).await?;
        }
        match &action {
            TableAction::Alter { add, widen } => {
                for &i in add {
                    let column = &schema.columns[i];
                    tracing::info!(package = %id, table = %name, column = %column.name,
                        ty = %column.ty, "added a column the package brings");
                }
                for w in widen {
                    tracing::info!(package = %id, table = %name,
                        column = %schema.columns[w.index].name, to = %w.to,
                        "widened a column the package needs wider");
                }
            }
            TableAction::Replace => {
                tracing::warn!(package = %id, table = %name,
                    "the package replaces the table's definition: dropped and created again");
                self.report.replaced_tables.push(name.clone());
            }
            TableAction::Create | TableAction::UseExisting => {}
        }
        if existing.is_none() {
            self.report.created_tables.push(name.clone());
        }
        if action != TableAction::UseExisting {
            // Read back: a text key may have been created narrower.
            columns = table_columns(self.pool, connection, name).await?;
        }
        let columns = columns.unwrap_or_default();
        let have = |column: &str| columns.iter().find(|h| h.name.eq_ignore_ascii_case(column));
        Ok(Target {
            checks: plan::narrower_columns(&existing_table(name, &columns), schema),
            stored: schema
                .columns
                .iter()
                .map(|c| have(&c.name).map(|h| h.declared()))
                .collect(),
            collations: schema
                .columns
                .iter()
                .map(|c| have(&c.name).and_then(|h| h.collation.clone()))
                .collect(),
            key: schema.key_positions(),
            schema: schema.clone(),
            stage: staging::table(index),
            staged: false,
        })
    }

    /// The package's row in `cdx_applied_packages`, in the same transaction.
    async fn record(&self, connection: &mut Connection) -> Result<(), ChannelDbError> {
        let h = self.header;
        let kind = h.kind.name();
        let rows = i64::try_from(self.report.upserts + self.report.deletes).unwrap_or(i64::MAX);
        let sequence = i64::try_from(h.sequence).unwrap_or(i64::MAX);
        let context = || format!("record package {} in cdx_applied_packages", h.package_id);
        execute(
            self.pool,
            connection,
            context,
            &self.sql.record,
            &[
                &h.package_id,
                &h.data_group.as_str(),
                &h.job.as_str(),
                &sequence,
                &kind,
                &rows,
                &now_ms(),
            ],
        )
        .await?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
