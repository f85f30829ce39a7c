//! The SQL Server run of the contract: against the server the environment
//! variable `CDX_TEST_SQLSERVER` names, skipped (saying so) without it.

use std::env::{self, VarError};
use std::io::{self, Write};
use std::time::Duration;

use cdx::channel_db::{ChannelDb, SqlServerChannelDb, SqlServerPool};
use cdx::config::{parse_connection_string, ConnectionString, Secret, SqlServerConfig};
use cdx::package::Value;
use uuid::Uuid;

use super::harness::{Backend, Fixture};

/// The environment variable holding the ADO connection string.
pub const ENV: &str = "CDX_TEST_SQLSERVER";

/// The SQL Server backend when `CDX_TEST_SQLSERVER` holds a connection
/// string; else prints one line saying the run is skipped and why, and
/// returns `None`.
///
/// # Panics
/// When the variable is set but not valid UTF-8: it is meant to be used,
/// so it is not a reason to skip.
pub fn backend() -> Option<Box<dyn Backend>> {
    match env::var(ENV) {
        Ok(conn) if !conn.trim().is_empty() => Some(sqlserver_backend(conn)),
        Ok(_) => {
            skipped(&format!("{ENV} is empty"));
            None
        }
        Err(VarError::NotPresent) => {
            skipped(&format!("{ENV} is not set"));
            None
        }
        Err(VarError::NotUnicode(_)) => {
            panic!("contract[sqlserver]: {ENV} is set but is not valid UTF-8")
        }
    }
}

/// Says the run is skipped, in one line on stderr, written to the stream
/// directly rather than with `eprintln!`, which the test harness captures:
/// the skip shows in a plain `cargo test` too.
fn skipped(why: &str) {
    let _ = writeln!(
        io::stderr().lock(),
        "contract[sqlserver]: SKIPPED: {why}; set it to an ADO connection string \
         (see README, \"SQL Server\") to run the contract against a live SQL Server"
    );
}

fn sqlserver_backend(conn: String) -> Box<dyn Backend> {
    let parsed = parse_connection_string(&conn)
        .unwrap_or_else(|e| panic!("contract[sqlserver]: {ENV}: {e}"));
    Box::new(SqlServer { parsed })
}

/// A live SQL Server; each case gets a schema of its own, dropped after.
struct SqlServer {
    parsed: ConnectionString,
}

impl Backend for SqlServer {
    fn name(&self) -> &str {
        "sqlserver"
    }

    fn fresh(&self, _case: &str) -> Box<dyn Fixture> {
        let schema = format!(
            "cdx_contract_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let p = &self.parsed;
        let config = SqlServerConfig {
            host: p.host.clone(),
            port: p.port,
            instance: p.instance.clone(),
            database: p.database.clone(),
            user: p.user.clone(),
            password: p.password.clone().unwrap_or_else(|| Secret::new("")),
            encrypt: p.encrypt,
            trust_server_certificate: p.trust_server_certificate,
            trust_server_certificate_ca: p.trust_server_certificate_ca.clone(),
            application_name: "cdx-contract".into(),
            schema: schema.clone(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(15),
            query_timeout: Duration::from_secs(120),
            apply_timeout: Duration::from_secs(600),
        };
        Box::new(SqlServerFixture { config, schema })
    }
}

struct SqlServerFixture {
    config: SqlServerConfig,
    schema: String,
}

impl SqlServerFixture {
    /// A connection of its own, as another process would have.
    fn connect(&self) -> SqlServerChannelDb {
        let pool = SqlServerPool::new(self.config.clone()).expect("a connection pool");
        SqlServerChannelDb::new(pool)
    }

    fn run(&self, sql: &str) -> Vec<Vec<Value>> {
        self.connect()
            .query_sql(sql)
            .unwrap_or_else(|e| panic!("contract[sqlserver]: {sql}: {e}"))
    }
}

impl Fixture for SqlServerFixture {
    fn open(&self) -> Box<dyn ChannelDb> {
        Box::new(self.connect())
    }

    fn create_upload_table(&self, name: &str, counter: &str) {
        self.run(&format!(
            "CREATE TABLE [{s}].[{name}] ([{counter}] bigint IDENTITY(1,1) NOT NULL PRIMARY KEY, \
             [receipt] nvarchar(64) NOT NULL, [amount] decimal(19,4) NULL)",
            s = self.schema
        ));
    }

    fn insert_sales(&self, table: &str, sales: &[(&str, Option<&str>)]) {
        for (receipt, amount) in sales {
            let amount = amount.map_or("NULL".to_owned(), |a| {
                format!("CAST('{a}' AS decimal(19,4))")
            });
            self.run(&format!(
                "INSERT INTO [{}].[{table}] ([receipt], [amount]) VALUES (N'{}', {amount})",
                self.schema,
                receipt.replace('\'', "''")
            ));
        }
    }

    fn rows(&self, table: &str, order_by: &[&str]) -> Vec<Vec<Value>> {
        let order: Vec<String> = order_by.iter().map(|c| format!("[{c}]")).collect();
        self.run(&format!(
            "SELECT * FROM [{}].[{table}] ORDER BY {}",
            self.schema,
            order.join(", ")
        ))
    }
}

impl Drop for SqlServerFixture {
    fn drop(&mut self) {
        let s = &self.schema;
        let cleanup = format!(
            "DECLARE @drop nvarchar(max) = N''; \
             SELECT @drop += N'DROP TABLE [{s}].' + QUOTENAME(name) + N'; ' FROM sys.tables \
             WHERE schema_id = SCHEMA_ID(N'{s}'); EXEC(@drop); \
             IF SCHEMA_ID(N'{s}') IS NOT NULL EXEC(N'DROP SCHEMA [{s}]')"
        );
        if let Err(e) = self.connect().query_sql(&cleanup) {
            eprintln!("contract[sqlserver]: could not drop schema {s}: {e}");
        }
    }
}
