//! The SQLite fixture: a database file in a temporary directory per case,
//! read back with a plain `rusqlite` connection.

use std::path::PathBuf;

use cdx::channel_db::{ChannelDb, SqliteChannelDb};
use cdx::package::Value;
use rusqlite::Connection;
use tempfile::TempDir;

use super::harness::{Backend, Fixture};

pub struct Sqlite;

impl Backend for Sqlite {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn fresh(&self, case: &str) -> Box<dyn Fixture> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cdx-contract-{case}-"))
            .tempdir()
            .expect("temporary directory");
        let path = dir.path().join("channel.db");
        Box::new(SqliteFixture { _dir: dir, path })
    }
}

struct SqliteFixture {
    /// Removed with the fixture.
    _dir: TempDir,
    path: PathBuf,
}

impl SqliteFixture {
    /// A plain connection, as the point of sale has one.
    fn pos(&self) -> Connection {
        let conn = Connection::open(&self.path).expect("open the database file");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }
}

/// `name` in double quotes; the cases use plain names only.
fn quoted(name: &str) -> String {
    assert!(
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "fixture given the name {name:?}"
    );
    format!("\"{name}\"")
}

impl Fixture for SqliteFixture {
    fn open(&self) -> Box<dyn ChannelDb> {
        Box::new(SqliteChannelDb::open(&self.path).expect("open the channel database"))
    }

    fn create_upload_table(&self, name: &str, counter: &str) {
        self.pos()
            .execute_batch(&format!(
                "CREATE TABLE {} ({} INTEGER PRIMARY KEY AUTOINCREMENT, \
                 receipt TEXT NOT NULL, amount DECIMAL_TEXT(19,4))",
                quoted(name),
                quoted(counter)
            ))
            .expect("create the upload table");
    }

    fn insert_sales(&self, table: &str, sales: &[(&str, Option<&str>)]) {
        let mut conn = self.pos();
        let tx = conn.transaction().expect("begin");
        {
            let mut stmt = tx
                .prepare(&format!(
                    "INSERT INTO {} (receipt, amount) VALUES (?1, ?2)",
                    quoted(table)
                ))
                .expect("prepare insert");
            for (receipt, amount) in sales {
                stmt.execute(rusqlite::params![receipt, amount])
                    .expect("insert a sale");
            }
        }
        tx.commit().expect("commit");
    }

    fn rows(&self, table: &str, order_by: &[&str]) -> Vec<Vec<Value>> {
        let order: Vec<String> = order_by.iter().map(|c| quoted(c)).collect();
        let conn = self.pos();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT * FROM {} ORDER BY {}",
                quoted(table),
                order.join(", ")
            ))
            .unwrap_or_else(|e| panic!("read the rows of {table}: {e}"));
        // Read as a POS integrator would: decimals held as numbers come
        // back exact through the library's reader.
        let declared: Vec<String> = conn
            .prepare("SELECT type FROM pragma_table_info(?1) ORDER BY cid")
            .and_then(|mut s| s.query_map([table], |r| r.get(0))?.collect())
            .expect("read the declared types");
        let mut rows = stmt.query([]).expect("query");
        let mut out = Vec::new();
        while let Some(row) = rows.next().expect("next row") {
            let values = declared
                .iter()
                .enumerate()
                .map(|(i, ty)| {
                    let value = row.get_ref(i).expect("column value");
                    SqliteChannelDb::exact_value(ty, value).expect("UTF-8 text")
                })
                .collect();
            out.push(values);
        }
        out
    }
}
