//! Exact data from headquarters to the store: every column type, written
//! as JSON Lines and as CSV, published by a real `cdx-server publish`,
//! served by a real `cdx-server serve`, downloaded and applied by the
//! agent, and read back from SQLite as a point of sale would.

use std::time::Duration;

use cdx::channel_db::SqliteChannelDb;
use cdx::package::Value;

use super::util::*;

const COLUMNS: &str = "id:integer,i:integer?,r:real?,t:text?,t10:text(10)?,b:blob?,flag:boolean?,\
price:decimal(7,2)?,wide:decimal(18,2)?,factor:decimal(32,16)?,d:date?,dt:datetime?,tm:time?,u:uuid?";

const NAMES: [&str; 14] = [
    "id", "i", "r", "t", "t10", "b", "flag", "price", "wide", "factor", "d", "dt", "tm", "u",
];

/// The values as each file spells them, and what must read back.
struct Case {
    jsonl: &'static str,
    csv: &'static str,
    want: Vec<Value>,
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            jsonl: r#"{"id": 1, "i": -9223372036854775808, "r": 97.86464729942979, "t": "", "t10": "Grüße 😀", "b": {"base64": "AAEC/w=="}, "flag": true, "price": 50.01, "wide": 123456789012345.67, "factor": "0.3333333333333333", "d": "2024-02-29", "dt": "2024-01-02 10:00:00", "tm": "23:59:59.1234567", "u": "6F9619FF-8B86-D011-B42D-00C04FC964FF"}"#,
            csv: "1,-9223372036854775808,97.86464729942979,,Grüße 😀,AAEC/w==,true,50.01,123456789012345.67,0.3333333333333333,2024-02-29,2024-01-02 10:00:00,23:59:59.1234567,6F9619FF-8B86-D011-B42D-00C04FC964FF",
            want: vec![
                Value::Integer(1),
                Value::Integer(i64::MIN),
                Value::Real(97.86464729942979),
                text(""),
                text("Grüße 😀"),
                Value::Blob(vec![0, 1, 2, 255]),
                Value::Integer(1),
                text("50.01"),
                text("123456789012345.67"),
                text("0.3333333333333333"),
                text("2024-02-29"),
                text("2024-01-02T10:00:00"),
                text("23:59:59.1234567"),
                text("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
            ],
        },
        Case {
            jsonl: r#"{"id": 2, "i": 9223372036854775807, "r": 5e-324, "t": "a,\"b\"\nc", "t10": "0123456789", "b": {"base64": ""}, "flag": 0, "price": "-99999.99", "wide": -9999999999999999.99, "factor": -1234567890123456.0000000000000001, "d": "0001-01-01", "dt": "2024-01-02T10:00:00Z", "tm": "00:00:00", "u": "00000000-0000-0000-0000-000000000000"}"#,
            csv: "2,9223372036854775807,5e-324,\"a,\"\"b\"\"\nc\",0123456789,,0,-99999.99,-9999999999999999.99,-1234567890123456.0000000000000001,0001-01-01,2024-01-02T10:00:00Z,00:00:00,00000000-0000-0000-0000-000000000000",
            want: vec![
                Value::Integer(2),
                Value::Integer(i64::MAX),
                Value::Real(5e-324),
                text("a,\"b\"\nc"),
                text("0123456789"),
                Value::Blob(vec![]),
                Value::Integer(0),
                text("-99999.99"),
                text("-9999999999999999.99"),
                text("-1234567890123456.0000000000000001"),
                text("0001-01-01"),
                text("2024-01-02T10:00:00"),
                text("00:00:00"),
                text("00000000-0000-0000-0000-000000000000"),
            ],
        },
        Case {
            jsonl: r#"{"id": 3, "i": null, "r": 1.7976931348623157e308, "t": null, "t10": null, "b": null, "flag": null, "price": 0.1, "wide": null, "factor": 0, "d": null, "dt": null, "tm": null, "u": null}"#,
            csv: "3,\\N,1.7976931348623157e308,\\N,\\N,\\N,\\N,0.1,\\N,0,\\N,\\N,\\N,\\N",
            want: vec![
                Value::Integer(3),
                Value::Null,
                Value::Real(f64::MAX),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                text("0.10"),
                Value::Null,
                text("0.0000000000000000"),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        },
    ]
}

/// The rows of `table` by id, each value read as the library's exact reader
/// returns it (a price held as a number comes back as its decimal).
fn read_back(db: &SqliteChannelDb, table: &str) -> Vec<Vec<Value>> {
    let conn = db.connection();
    let declared: Vec<String> = conn
        .prepare("SELECT type FROM pragma_table_info(?1) ORDER BY cid")
        .unwrap()
        .query_map([table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY id"))
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let values = declared
            .iter()
            .enumerate()
            .map(|(i, ty)| SqliteChannelDb::exact_value(ty, row.get_ref(i).unwrap()).unwrap())
            .collect();
        out.push(values);
    }
    out
}

fn assert_exact(got: &[Vec<Value>], source: &str) {
    let names = NAMES;
    let cases = cases();
    assert_eq!(got.len(), cases.len(), "rows from {source}");
    for (row, case) in got.iter().zip(&cases) {
        for (i, (value, want)) in row.iter().zip(&case.want).enumerate() {
            let same = match (value, want) {
                (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
                _ => value == want,
            };
            assert!(
                same,
                "{source}, row {:?}, column {}: read back {value:?}, published {want:?}",
                row[0], names[i]
            );
        }
    }
}

/// Every column type, from JSON Lines and from CSV (with a NULL marker),
/// arrives at the store exactly as written, in both transfer modes.
#[test]
fn every_type_from_jsonl_and_csv_reads_back_exact() {
    let hq = HqProcess::start();
    let dir = hq.dir.path();
    let header = NAMES;
    let jsonl: String = cases().iter().map(|c| format!("{}\n", c.jsonl)).collect();
    let csv: String = std::iter::once(header.join(","))
        .chain(cases().iter().map(|c| c.csv.to_owned()))
        .map(|l| l + "\n")
        .collect();
    std::fs::write(dir.join("from_json.jsonl"), jsonl).unwrap();
    std::fs::write(dir.join("from_csv.csv"), csv).unwrap();
    let out = std::process::Command::new(server_bin())
        .args(["publish", "--data"])
        .arg(dir.join("hq"))
        .args(["--group", GROUP, "--job", "1040", "--kind", "full"])
        .arg(format!(
            "--table=from_json={}",
            dir.join("from_json.jsonl").display()
        ))
        .arg(format!(
            "--table=from_csv={}",
            dir.join("from_csv.csv").display()
        ))
        .args(["--key", "from_json=id", "--key", "from_csv=id"])
        .arg(format!("--columns=from_json={COLUMNS}"))
        .arg(format!("--columns=from_csv={COLUMNS}"))
        .arg("--null-marker=\\N")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for mode in ["reliable", "streaming"] {
        let store = StoreDir::new();
        let agent = RunningAgent::start(
            store.config(&hq.url(), mode, ""),
            sqlite(store.channel_db()),
        );
        assert!(
            wait_until(Duration::from_secs(60), || store.applied() >= 1),
            "{mode}: the package was not applied: {:?}",
            agent.status_json()
        );
        agent.stop();
        let db = store.db();
        assert_exact(&read_back(&db, "from_json"), &format!("{mode}, JSON Lines"));
        assert_exact(&read_back(&db, "from_csv"), &format!("{mode}, CSV"));
    }
}

/// What a point of sale sold, uploaded and exported by headquarters: every
/// value arrives in its exact form, whatever the store's column holds
/// (a price written as the float 2.8 into `DECIMAL(19,4)` is `2.8000`).
#[test]
fn sales_upload_typed_and_export_exact() {
    let hq = HqProcess::start();
    let store = StoreDir::new();
    {
        let conn = rusqlite::Connection::open(store.channel_db()).unwrap();
        conn.execute_batch(
            "CREATE TABLE sales (counter INTEGER PRIMARY KEY AUTOINCREMENT, \
             receipt VARCHAR(20) NOT NULL, amount DECIMAL(19,4), factor DECIMAL_TEXT(32,16), \
             price NUMERIC(7,2), qty REAL, sold_at DATETIME, day DATE, photo BLOB, \
             ok BOOLEAN, u UUID, note TEXT, memo VARCHAR(9000), \
             doubled REAL GENERATED ALWAYS AS (qty * 2) VIRTUAL);
             INSERT INTO sales (receipt, amount, factor, price, qty, sold_at, day, photo, ok, u, note)
             VALUES ('R-1', 2.8, '0.3333333333333333', 19.99, 97.86464729942979,
                     '2026-12-02T10:00:00.5', '2026-12-02', x'0001ff', 1,
                     '6f9619ff-8b86-d011-b42d-00c04fc964ff', 'Grüße, \"quoted\"'),
                    ('R-2', 0, '12.5', 0.1, 5e-324, NULL, NULL, NULL, 0, NULL, ''),
                    ('R-3', '12345678901.2345', '-1', '-50', -1.5, NULL, NULL, x'', NULL, NULL, NULL);",
        )
        .unwrap();
    }
    let extra = "[upload]\ninterval = \"200ms\"\n\n[[upload.tables]]\nname = \"sales\"\ncounter = \"counter\"\n";
    let agent = RunningAgent::start(
        store.config(&hq.url(), "streaming", extra),
        sqlite(store.channel_db()),
    );
    assert!(
        wait_until(Duration::from_secs(60), || hq.uploaded("sales") == 3),
        "the sales were not uploaded: {:?}",
        agent.status_json()
    );
    agent.stop();
    let export = |format: &str| {
        stdout_of(
            std::process::Command::new(server_bin())
                .args(["uploads", "export", "--data"])
                .arg(hq.dir.path().join("hq"))
                .args(["--channel", CHANNEL, "--table", "sales", "--format", format])
                .args(["--null-marker", "\\N"]),
        )
    };
    let jsonl = export("jsonl");
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = [
        serde_json::json!({"counter": 1, "receipt": "R-1", "amount": "2.8000",
            "factor": "0.3333333333333333", "price": "19.99", "qty": 97.86464729942979,
            "sold_at": "2026-12-02T10:00:00.5", "day": "2026-12-02", "photo": {"base64": "AAH/"},
            "ok": 1, "u": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "note": "Grüße, \"quoted\"",
            "memo": null}),
        serde_json::json!({"counter": 2, "receipt": "R-2", "amount": "0.0000",
            "factor": "12.5000000000000000", "price": "0.10", "qty": 5e-324,
            "sold_at": null, "day": null, "photo": null, "ok": 0, "u": null, "note": "",
            "memo": null}),
        serde_json::json!({"counter": 3, "receipt": "R-3", "amount": "12345678901.2345",
            "factor": "-1.0000000000000000", "price": "-50.00", "qty": -1.5,
            "sold_at": null, "day": null, "photo": {"base64": ""}, "ok": null, "u": null,
            "note": null, "memo": null}),
    ];
    assert_eq!(rows.len(), want.len(), "{jsonl}");
    for (got, want) in rows.iter().zip(&want) {
        assert_eq!(got, want);
    }
    // The reals are bit for bit.
    assert_eq!(
        rows[0]["qty"].as_f64().unwrap().to_bits(),
        97.86464729942979f64.to_bits()
    );
    assert_eq!(
        rows[1]["qty"].as_f64().unwrap().to_bits(),
        5e-324f64.to_bits()
    );
    let csv = export("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "counter,receipt,amount,factor,price,qty,sold_at,day,photo,ok,u,note,memo"
    );
    assert_eq!(
        lines.next().unwrap(),
        "1,R-1,2.8000,0.3333333333333333,19.99,97.86464729942979,2026-12-02T10:00:00.5,\
         2026-12-02,AAH/,1,6f9619ff-8b86-d011-b42d-00c04fc964ff,\"Grüße, \"\"quoted\"\"\",\\N"
    );
    assert_eq!(
        lines.next().unwrap(),
        "2,R-2,0.0000,12.5000000000000000,0.10,5e-324,\\N,\\N,\\N,0,\\N,,\\N"
    );
    // The types the store declared are kept beside the rows.
    let (columns, types) = hq.store.upload_columns(CHANNEL, "sales").unwrap().unwrap();
    assert_eq!(columns[2], "amount");
    assert_eq!(types[2].as_deref(), Some("decimal(19,4)"));
    assert_eq!(types[1].as_deref(), Some("text(20)"));
    // A type beyond what a package type says travels untyped, never refused;
    // a generated column is not sent.
    assert_eq!(columns.last().map(String::as_str), Some("memo"));
    assert_eq!(types.last(), Some(&None));
}
