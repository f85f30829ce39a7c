//! What needs no server: names, types, values and the generated T-SQL.

use tiberius::time::{Date as TdsDate, DateTime, DateTime2, SmallDateTime, Time};
use tiberius::ColumnData;

use super::pool;
use super::staging::{self, Layout};
use super::tsql::{self, ReadAs};
use super::types::{self, ServerColumn};
use super::values::{from_column_data, to_column_data};
use crate::package::{Column, ColumnType, TableSchema, Value};
use crate::plan::{self, Family, TableAction};

fn col(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column::new(name, ty, nullable)
}

/// prices(item_id text(20), store integer, amount decimal(32,6), note text?)
/// keyed on (item_id, store).
fn prices() -> TableSchema {
    TableSchema {
        name: "prices".into(),
        columns: vec![
            col("item_id", ColumnType::BoundedText { max_len: 20 }, false),
            col("store", ColumnType::Integer, false),
            col(
                "amount",
                ColumnType::Decimal {
                    precision: 32,
                    scale: 6,
                },
                false,
            ),
            col("note", ColumnType::Text, true),
        ],
        key: vec!["item_id".into(), "store".into()],
    }
}

fn server_column(name: &str, type_name: &str, max_length: i16, key: u32) -> ServerColumn {
    ServerColumn {
        name: name.into(),
        type_name: type_name.into(),
        max_length,
        precision: 0,
        scale: 0,
        nullable: key == 0,
        identity: false,
        computed: false,
        has_default: false,
        key_ordinal: key,
        collation: None,
        indexed: false,
        checked: false,
    }
}

#[test]
fn identifiers_are_bracketed_and_anything_else_refused() {
    assert_eq!(
        tsql::quote("RETAILTRANSACTIONTABLE").unwrap(),
        "[RETAILTRANSACTIONTABLE]"
    );
    assert_eq!(
        tsql::qualified("ax", "INVENTTABLE").unwrap(),
        "[ax].[INVENTTABLE]"
    );
    for hostile in ["a]; DROP TABLE x; --", "a b", "", "[a]", "a.b", "é", "1a"] {
        let err = tsql::quote(hostile).unwrap_err();
        assert_eq!(err.name, hostile);
        assert!(tsql::qualified("dbo", hostile).is_err());
        assert!(tsql::qualified(hostile, "t").is_err());
    }
    let mut t = prices();
    t.columns[3].name = "note]; DROP TABLE prices --".into();
    assert!(tsql::create_table("dbo", &t).is_err());
    assert!(new_table(&t)
        .merge_into_table("dbo", "#cdx_stage_0")
        .is_err());
    assert!(new_table(&t)
        .insert_into_table("dbo", "#cdx_stage_0")
        .is_err());
    let collations = [Some("Latin1_General; DROP TABLE x".to_owned())];
    let p = prices();
    let layout = Layout {
        table: &p,
        stored: &[],
        collations: &collations,
    };
    assert!(layout.create("#cdx_stage_0").is_err());
}

#[test]
fn package_types_map_to_sql_server_types() {
    let cases = [
        (ColumnType::Integer, "bigint"),
        (ColumnType::Real, "float"),
        (ColumnType::Text, "nvarchar(max)"),
        (ColumnType::Blob, "varbinary(max)"),
        (ColumnType::Boolean, "bit"),
        (
            ColumnType::Decimal {
                precision: 32,
                scale: 6,
            },
            "decimal(32,6)",
        ),
        (ColumnType::Date, "date"),
        (ColumnType::DateTime, "datetime2(7)"),
        (ColumnType::Time, "time(7)"),
        (ColumnType::Uuid, "uniqueidentifier"),
        (ColumnType::BoundedText { max_len: 60 }, "nvarchar(60)"),
        (ColumnType::BoundedBlob { max_len: 16 }, "varbinary(16)"),
    ];
    for (ty, sql) in cases {
        assert_eq!(types::sql_type(ty), sql, "{ty}");
        // What the created column reads back as holds every value of the type.
        let created = created_column(ty, sql);
        let stored = created
            .stored()
            .unwrap_or_else(|| panic!("{sql} maps to no family"));
        assert!(stored.family.stores(ty), "{sql} does not store {ty}");
        assert!(stored.limits.hold_all_of(ty), "{sql} is narrower than {ty}");
    }
    let staged = [
        (ColumnType::BoundedText { max_len: 3000 }, "nvarchar(max)"),
        (ColumnType::BoundedBlob { max_len: 16 }, "varbinary(max)"),
        (
            ColumnType::Decimal {
                precision: 38,
                scale: 38,
            },
            "nvarchar(max)",
        ),
        (ColumnType::Date, "datetime2(7)"),
        (ColumnType::Time, "time(7)"),
    ];
    for (ty, sql) in staged {
        assert_eq!(types::staging_type(ty), sql, "{ty}");
    }
}

/// Text and blob key columns share the 900 bytes of an index key with the
/// key's other columns; outside the key they keep their type.
#[test]
fn text_and_blob_keys_share_what_the_index_key_allows() {
    let table = |key: &[&str]| TableSchema {
        name: "t".into(),
        columns: vec![
            col("a", ColumnType::Text, false),
            col("b", ColumnType::Integer, false),
            col("c", ColumnType::BoundedText { max_len: 100 }, false),
            col("d", ColumnType::Blob, false),
            col("e", ColumnType::Text, true),
        ],
        key: key.iter().map(|k| (*k).to_owned()).collect(),
    };
    let created = |key: &[&str]| types::create_types(&table(key));
    assert_eq!(created(&["a"])[0], "nvarchar(450)");
    // 900 - 8 (bigint) = 892 bytes: 446 characters.
    assert_eq!(created(&["a", "b"])[0], "nvarchar(446)");
    // 892 bytes for three: 297 each, so text(100) keeps its own bound.
    assert_eq!(
        created(&["a", "b", "c", "d"]),
        [
            "nvarchar(148)",
            "bigint",
            "nvarchar(100)",
            "varbinary(297)",
            "nvarchar(max)"
        ]
    );
    assert_eq!(created(&["b"])[0], "nvarchar(max)");
}

/// The `sys.columns` row of a column created as `sql`.
fn created_column(ty: ColumnType, sql: &str) -> ServerColumn {
    let type_name = sql.split('(').next().unwrap();
    let mut c = server_column("c", type_name, 8, 0);
    match ty {
        ColumnType::Text | ColumnType::Blob => c.max_length = -1,
        ColumnType::BoundedText { max_len } => c.max_length = (max_len * 2) as i16,
        ColumnType::BoundedBlob { max_len } => c.max_length = max_len as i16,
        ColumnType::Decimal { precision, scale } => (c.precision, c.scale) = (precision, scale),
        _ => {}
    }
    c
}

#[test]
fn existing_columns_map_to_families_and_limits() {
    /// type, max_length, precision, scale; family and max length read.
    type Case = (&'static str, i16, u8, u8, Family, Option<u32>);
    let cases: [Case; 8] = [
        ("nvarchar", 40, 0, 0, Family::Text, Some(20)),
        ("nvarchar", -1, 0, 0, Family::Text, None),
        ("varchar", 10, 0, 0, Family::Text, Some(10)),
        ("nchar", 8, 0, 0, Family::Text, Some(4)),
        ("varbinary", 16, 0, 0, Family::Blob, Some(16)),
        ("datetime", 8, 0, 0, Family::DateTime, None),
        ("int", 4, 10, 0, Family::Integer, None),
        ("numeric", 17, 32, 16, Family::Decimal, None),
    ];
    for (type_name, max_length, precision, scale, family, max_len) in cases {
        let mut c = server_column("c", type_name, max_length, 0);
        (c.precision, c.scale) = (precision, scale);
        let stored = c.stored().unwrap();
        assert_eq!(stored.family, family, "{type_name}");
        assert_eq!(stored.limits.max_len, max_len, "{type_name}({max_length})");
    }
    let int = server_column("c", "int", 4, 0).stored().unwrap();
    assert_eq!(
        int.limits.int_range,
        Some((i32::MIN.into(), i32::MAX.into()))
    );
    let money = server_column("c", "money", 8, 0).stored().unwrap();
    assert_eq!(money.limits.decimal, Some((19, 4)));
    assert_eq!(server_column("c", "sql_variant", 8016, 0).stored(), None);
    assert_eq!(server_column("c", "timestamp", 8, 0).stored(), None);
    let mut identity = server_column("c", "bigint", 8, 0);
    identity.identity = true;
    assert_eq!(identity.stored(), None);
    assert_eq!(identity.declared(), "bigint IDENTITY");
    assert_eq!(
        server_column("c", "nvarchar", 40, 0).declared(),
        "nvarchar(20)"
    );
    assert_eq!(
        server_column("c", "nvarchar", -1, 0).declared(),
        "nvarchar(max)"
    );
}

/// An AX-style table: narrower text, an int store, numeric(32,16), an
/// identity counter and a defaulted column the package leaves out.
fn ax_prices() -> Vec<ServerColumn> {
    let mut amount = server_column("AMOUNT", "numeric", 17, 0);
    (amount.precision, amount.scale) = (32, 16);
    let mut counter = server_column("REPLICATIONCOUNTERFROMORIGIN", "int", 4, 0);
    (counter.identity, counter.nullable) = (true, false);
    let mut modified = server_column("MODIFIEDDATETIME", "datetime", 8, 0);
    (modified.has_default, modified.nullable) = (true, false);
    vec![
        server_column("ITEM_ID", "nvarchar", 20, 1),
        server_column("STORE", "int", 4, 2),
        amount,
        server_column("NOTE", "nvarchar", -1, 0),
        counter,
        modified,
    ]
}

#[test]
fn an_existing_narrower_table_fits_and_its_values_are_checked() {
    let existing = types::existing_table("prices", &ax_prices());
    let wanted = prices();
    assert_eq!(
        plan::check_table(Some(&existing), &wanted, false),
        Ok(TableAction::UseExisting)
    );
    let checks = plan::narrower_columns(&existing, &wanted);
    let checked: Vec<&str> = checks
        .iter()
        .map(|(i, _)| wanted.columns[*i].name.as_str())
        .collect();
    // decimal(32,6) has 26 digits before the point, numeric(32,16) only 16;
    // note is nvarchar(max).
    assert_eq!(checked, ["item_id", "store", "amount"]);
    let id = uuid::Uuid::nil();
    let row = |item: &str, store: i64| {
        vec![
            Value::Text(item.into()),
            Value::Integer(store),
            Value::Text("1.500000".into()),
            Value::Null,
        ]
    };
    plan::check_row(id, &wanted, &checks, &row("0123456789", 12)).unwrap();
    let err = plan::check_row(id, &wanted, &checks, &row("0123456789AB", 12)).unwrap_err();
    let text = err.to_string();
    for needle in [
        "prices",
        "`item_id`",
        "item_id=0123456789AB, store=12",
        "12 characters",
        "at most 10",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let err = plan::check_row(id, &wanted, &checks, &row("A", 1 << 40)).unwrap_err();
    assert!(
        err.to_string().contains("outside the column's range"),
        "{err}"
    );
}

#[test]
fn identity_and_unknown_type_columns_conflict_by_name() {
    let mut columns = ax_prices();
    columns[1].type_name = "sql_variant".into();
    let existing = types::existing_table("prices", &columns);
    let err = plan::check_table(Some(&existing), &prices(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("prices.store") && err.contains("sql_variant"),
        "{err}"
    );
}

#[test]
fn create_table_declares_types_nullability_and_key() {
    let sql = tsql::create_table("ax", &prices()).unwrap();
    assert_eq!(
        sql,
        "CREATE TABLE [ax].[prices] ([item_id] nvarchar(20) NOT NULL, [store] bigint NOT NULL, \
         [amount] decimal(32,6) NOT NULL, [note] nvarchar(max) NULL, \
         PRIMARY KEY ([item_id], [store]))"
    );
}

/// The staging layout of a table the package is about to create: no
/// declared types or collations known yet.
fn new_table(t: &TableSchema) -> Layout<'_> {
    Layout {
        table: t,
        stored: &[],
        collations: &[],
    }
}

#[test]
fn the_staging_table_numbers_columns_by_position_in_the_tables_collation() {
    let t = prices();
    assert_eq!(staging::table(3), "#cdx_stage_3");
    let collations = [
        None,
        None,
        None,
        Some("SQL_Latin1_General_CP1_CI_AS".to_owned()),
    ];
    let layout = Layout {
        table: &t,
        stored: &[],
        collations: &collations,
    };
    assert_eq!(
        layout.create("#cdx_stage_3").unwrap(),
        "CREATE TABLE #cdx_stage_3 ([cdx_ord] bigint NOT NULL, [cdx_del] bit NOT NULL, \
         [c0] nvarchar(max) COLLATE DATABASE_DEFAULT NULL, [c1] bigint NULL, \
         [c2] nvarchar(max) COLLATE DATABASE_DEFAULT NULL, \
         [c3] nvarchar(max) COLLATE SQL_Latin1_General_CP1_CI_AS NULL)"
    );
}

#[test]
fn a_batch_merges_the_keys_whose_last_row_is_an_upsert() {
    let t = prices();
    assert_eq!(
        new_table(&t)
            .merge_into_table("ax", "#cdx_stage_0")
            .unwrap(),
        "MERGE [ax].[prices] WITH (HOLDLOCK) AS t USING (SELECT d.[c0] AS [item_id], \
         d.[c1] AS [store], CAST(d.[c2] AS decimal(32,6)) AS [amount], d.[c3] AS [note] \
         FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY [c0], [c1] ORDER BY \
         [cdx_ord] DESC) AS [cdx_last] FROM #cdx_stage_0) AS l WHERE l.[cdx_last] = 1 AND \
         l.[cdx_del] = 0) AS d) AS s ON t.[item_id] = s.[item_id] AND t.[store] = s.[store] \
         WHEN MATCHED THEN UPDATE SET [amount] = s.[amount], [note] = s.[note] \
         WHEN NOT MATCHED BY TARGET THEN INSERT ([item_id], [store], [amount], [note]) \
         VALUES (s.[item_id], s.[store], s.[amount], s.[note]);"
    );
    let mut key_only = prices();
    key_only.columns.truncate(2);
    let sql = new_table(&key_only)
        .merge_into_table("ax", "#cdx_stage_0")
        .unwrap();
    assert!(!sql.contains("WHEN MATCHED"), "{sql}");
}

#[test]
fn a_full_package_inserts_its_staged_rows() {
    let t = prices();
    assert_eq!(
        new_table(&t)
            .insert_into_table("dbo", "#cdx_stage_1")
            .unwrap(),
        "INSERT INTO [dbo].[prices] ([item_id], [store], [amount], [note]) SELECT [c0], [c1], \
         CAST([c2] AS decimal(32,6)), [c3] FROM #cdx_stage_1"
    );
}

#[test]
fn a_batch_deletes_the_keys_whose_last_row_is_a_delete() {
    let mut t = prices();
    t.key = vec!["item_id".into(), "amount".into()];
    t.columns.push(col("day", ColumnType::Date, false));
    t.key.push("day".into());
    assert_eq!(
        new_table(&t)
            .delete_from_table("dbo", "#cdx_stage_0")
            .unwrap(),
        "DELETE t FROM [dbo].[prices] AS t JOIN (SELECT * FROM (SELECT *, ROW_NUMBER() OVER \
         (PARTITION BY [c0], CAST([c2] AS decimal(32,6)), CAST([c4] AS date) ORDER BY [cdx_ord] \
         DESC) AS [cdx_last] FROM #cdx_stage_0) AS l WHERE l.[cdx_last] = 1 AND l.[cdx_del] = 1) \
         AS d ON t.[item_id] = d.[c0] AND t.[amount] = CAST(d.[c2] AS decimal(32,6)) AND \
         t.[day] = CAST(d.[c4] AS date)"
    );
}

/// Against an existing table, staged values are read as the table stores
/// them: keys partition and compare as `varchar(10)` and `datetime`.
#[test]
fn staged_values_are_read_as_the_existing_columns_types() {
    let mut t = prices();
    t.columns[1] = col("sold", ColumnType::DateTime, false);
    t.key = vec!["item_id".into(), "sold".into()];
    let stored = [
        Some("varchar(10)".to_owned()),
        Some("datetime".to_owned()),
        Some("numeric(32,16)".to_owned()),
        Some("bigint IDENTITY".to_owned()),
    ];
    let layout = Layout {
        table: &t,
        stored: &stored,
        collations: &[],
    };
    let sql = layout.merge_into_table("ax", "#cdx_stage_0").unwrap();
    assert!(
        sql.contains("PARTITION BY CAST([c0] AS varchar(10)), CAST([c1] AS datetime)"),
        "{sql}"
    );
    assert!(
        sql.contains("CAST(d.[c2] AS numeric(32,16)) AS [amount]"),
        "{sql}"
    );
    // Not a type to cast to: read as the package type.
    assert!(sql.contains("d.[c3] AS [note]"), "{sql}");
}

#[test]
fn upload_reads_wait_for_uncommitted_rows_and_respect_rowversion() {
    let columns = [
        ("RECEIPTID", ReadAs::Itself),
        ("AMOUNT", ReadAs::of("money")),
        ("REPLICATIONCOUNTERFROMORIGIN", ReadAs::of("int")),
    ];
    let sql = tsql::select_upload_rows(
        "ax",
        "RETAILTRANSACTIONTABLE",
        &columns,
        "REPLICATIONCOUNTERFROMORIGIN",
    )
    .unwrap();
    assert_eq!(
        sql,
        "SELECT TOP (@P1) src.[RECEIPTID], CAST(src.[AMOUNT] AS decimal(19,4)) AS [AMOUNT], \
         src.[REPLICATIONCOUNTERFROMORIGIN] FROM [ax].[RETAILTRANSACTIONTABLE] AS src \
         WITH (READCOMMITTEDLOCK) WHERE src.[REPLICATIONCOUNTERFROMORIGIN] > @P2 \
         ORDER BY src.[REPLICATIONCOUNTERFROMORIGIN]"
    );
    let columns = [("ID", ReadAs::Itself), ("RV", ReadAs::of("timestamp"))];
    let sql = tsql::select_upload_rows("ax", "SHIFTS", &columns, "RV").unwrap();
    assert!(sql.contains("CAST(src.[RV] AS bigint) AS [RV]"), "{sql}");
    assert!(sql.contains("src.[RV] < MIN_ACTIVE_ROWVERSION()"), "{sql}");
    assert!(
        sql.contains("src.[RV] > CAST(CAST(@P2 AS bigint) AS binary(8))"),
        "{sql}"
    );
    // Ordered by the column, not its cast: an ordered scan, no sort.
    assert!(sql.ends_with("ORDER BY src.[RV]"), "{sql}");
}

/// Types a package value cannot hold are refused by name before a read;
/// tiberius would panic on them.
#[test]
fn only_columns_a_package_value_can_hold_are_uploaded() {
    for ok in [
        "int",
        "nvarchar",
        "numeric",
        "datetime",
        "timestamp",
        "xml",
        "money",
    ] {
        assert!(types::is_uploadable(ok), "{ok}");
    }
    for refused in ["sql_variant", "datetimeoffset", "geography", "hierarchyid"] {
        assert!(!types::is_uploadable(refused), "{refused}");
    }
}

#[test]
fn a_refused_login_is_not_tried_again_but_a_busy_server_is() {
    for busy in [1205, 1222, 40613] {
        assert!(pool::is_transient_code(busy), "{busy}");
    }
    // Login failed, cannot open the database, account locked or expired,
    // a duplicate key: trying again cannot help, and logins may lock out.
    for refused in [18456, 4060, 18486, 18487, 18488, 2627] {
        assert!(!pool::is_transient_code(refused), "{refused}");
    }
}

#[test]
fn bookkeeping_lives_in_the_configured_schema() {
    let ddl = tsql::bookkeeping("ax").unwrap();
    assert!(
        ddl.contains("IF SCHEMA_ID(N'ax') IS NULL EXEC(N'CREATE SCHEMA [ax]')"),
        "{ddl}"
    );
    assert!(
        ddl.contains("CREATE TABLE [ax].[cdx_applied_packages]"),
        "{ddl}"
    );
    assert!(ddl.contains("UNIQUE ([data_group], [sequence])"), "{ddl}");
    assert!(tsql::bookkeeping("ax'; DROP DATABASE x; --").is_err());
    let b = tsql::Bookkeeping::new("ax").unwrap();
    assert!(b.is_applied.contains("WITH (UPDLOCK, HOLDLOCK)"));
    assert!(
        b.advance
            .contains("WHEN MATCHED AND w.[counter] < s.[counter]"),
        "never back"
    );
}

#[test]
fn values_go_to_staging_columns_and_come_back_canonical() {
    let cases = [
        (ColumnType::Integer, Value::Integer(-7)),
        (ColumnType::Real, Value::Real(2.5)),
        (ColumnType::Boolean, Value::Integer(1)),
        (ColumnType::Text, Value::Text("Zürich 😀".into())),
        (ColumnType::Blob, Value::Blob(vec![0, 255])),
        (
            ColumnType::DateTime,
            Value::Text("2026-11-24T13:05:00.1234567".into()),
        ),
        (ColumnType::Time, Value::Text("23:59:59.5".into())),
        (
            ColumnType::Uuid,
            Value::Text("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
        ),
    ];
    for (ty, value) in cases {
        let data = to_column_data(ty, value.clone()).unwrap();
        assert_eq!(from_column_data(data).unwrap(), value, "{ty}");
        assert_eq!(
            from_column_data(to_column_data(ty, Value::Null).unwrap()).unwrap(),
            Value::Null
        );
    }
    let decimal = ColumnType::Decimal {
        precision: 10,
        scale: 2,
    };
    assert!(
        matches!(to_column_data(decimal, Value::Text("-12.50".into())).unwrap(),
        ColumnData::String(Some(s)) if s == "-12.50")
    );
    assert!(
        matches!(to_column_data(ColumnType::Real, Value::Integer(3)).unwrap(), ColumnData::F64(Some(f)) if f == 3.0)
    );
    // A date is staged as datetime2 at midnight (tiberius cannot bulk load
    // `date`); the channel table's date column reads back as a date.
    let staged = to_column_data(ColumnType::Date, Value::Text("2026-11-24".into())).unwrap();
    assert_eq!(
        from_column_data(staged).unwrap(),
        Value::Text("2026-11-24T00:00:00".into())
    );
    assert!(to_column_data(ColumnType::Date, Value::Text("2026-02-30".into())).is_err());
}

#[test]
fn sql_server_values_read_back_as_package_values() {
    let numeric = tiberius::numeric::Numeric::new_with_scale(-1_250_000, 6);
    assert_eq!(
        from_column_data(ColumnData::Numeric(Some(numeric))).unwrap(),
        Value::Text("-1.250000".into())
    );
    assert_eq!(
        from_column_data(ColumnData::I32(Some(5))).unwrap(),
        Value::Integer(5)
    );
    assert_eq!(
        from_column_data(ColumnData::Bit(Some(true))).unwrap(),
        Value::Integer(1)
    );
    // A datetime2(3) column: increments of 1 ms.
    let dt2 = DateTime2::new(TdsDate::new(739_943), Time::new(47_100_250, 3));
    assert_eq!(
        from_column_data(ColumnData::DateTime2(Some(dt2))).unwrap(),
        Value::Text("2026-11-24T13:05:00.25".into())
    );
    // The legacy datetime: days since 1900 and 1/300 s.
    let legacy = DateTime::new(46_348, 300 * 3600 + 1);
    assert_eq!(
        from_column_data(ColumnData::DateTime(Some(legacy))).unwrap(),
        Value::Text("2026-11-24T01:00:00.0033333".into())
    );
    let small = SmallDateTime::new(0, 61);
    assert_eq!(
        from_column_data(ColumnData::SmallDateTime(Some(small))).unwrap(),
        Value::Text("1900-01-01T01:01:00".into())
    );
    assert_eq!(
        from_column_data(ColumnData::Date(Some(TdsDate::new(0)))).unwrap(),
        Value::Text("0001-01-01".into())
    );
}

#[test]
fn a_row_bulk_load_cannot_carry_is_staged_by_a_parameterized_insert() {
    assert_eq!(
        staging::insert_row("#cdx_stage_2", 2),
        "INSERT INTO #cdx_stage_2 ([cdx_ord], [cdx_del], [c0], [c1]) VALUES (@P1, @P2, @P3, @P4)"
    );
}

/// A varchar(20) column, NOT NULL, with a collation of its own.
fn collated_name() -> ServerColumn {
    let mut name = server_column("ITEM_NAME", "varchar", 20, 0);
    name.collation = Some("Latin1_General_CI_AS".into());
    name.nullable = false;
    name
}

/// A widened column keeps its kind of type (varchar stays varchar), its
/// nullability and its collation: `ALTER COLUMN` would reset both.
#[test]
fn a_widened_column_keeps_its_kind_nullability_and_collation() {
    let name = collated_name();
    assert_eq!(
        types::widened_type(&name, ColumnType::BoundedText { max_len: 60 }),
        "varchar(60)"
    );
    assert_eq!(
        tsql::alter_column("ax", "items", &name, "varchar(60)").unwrap(),
        "ALTER TABLE [ax].[items] ALTER COLUMN [ITEM_NAME] varchar(60) \
         COLLATE Latin1_General_CI_AS NOT NULL"
    );
    let note = server_column("NOTE", "nvarchar", 40, 0);
    assert_eq!(
        types::widened_type(&note, ColumnType::Text),
        "nvarchar(max)"
    );
    assert_eq!(
        tsql::alter_column("ax", "items", &note, "nvarchar(max)").unwrap(),
        "ALTER TABLE [ax].[items] ALTER COLUMN [NOTE] nvarchar(max) NULL"
    );
    let store = server_column("STORE", "int", 4, 0);
    assert_eq!(types::widened_type(&store, ColumnType::Real), "float");
    assert_eq!(
        types::widened_type(
            &store,
            ColumnType::Decimal {
                precision: 12,
                scale: 2
            }
        ),
        "decimal(12,2)"
    );
    let code = server_column("CODE", "binary", 4, 0);
    assert_eq!(
        types::widened_type(&code, ColumnType::BoundedBlob { max_len: 10 }),
        "varbinary(10)"
    );
}

/// SQL Server's rules for `ALTER COLUMN`, checked before it is tried: an
/// indexed or CHECKed column only grows as a varchar, nvarchar or
/// varbinary; one with a DEFAULT keeps its type.
#[test]
fn an_alter_sql_server_would_refuse_is_refused_first_saying_why() {
    let mut name = server_column("NAME", "nvarchar", 40, 0);
    assert_eq!(types::alter_refusal(&name, "nvarchar(60)"), None);
    name.indexed = true;
    assert_eq!(types::alter_refusal(&name, "nvarchar(60)"), None);
    let mut amount = server_column("AMOUNT", "decimal", 9, 0);
    (amount.precision, amount.scale) = (10, 2);
    assert_eq!(types::alter_refusal(&amount, "decimal(14,2)"), None);
    amount.has_default = true;
    assert_eq!(types::alter_refusal(&amount, "decimal(14,2)"), None);
    amount.indexed = true;
    let why = types::alter_refusal(&amount, "decimal(14,2)").unwrap();
    assert!(
        why.contains("in an index") && why.contains("decimal(10,2)"),
        "{why}"
    );
    let mut qty = server_column("QTY", "int", 4, 0);
    qty.has_default = true;
    let why = types::alter_refusal(&qty, "decimal(12,2)").unwrap();
    assert!(why.contains("DEFAULT"), "{why}");
    qty.has_default = false;
    qty.checked = true;
    assert!(types::alter_refusal(&qty, "float")
        .unwrap()
        .contains("CHECK"));
}

/// Every generated statement is T-SQL a parser accepts. `sqlparser` lacks
/// `ALTER COLUMN`'s T-SQL form and `MERGE` table hints (`MERGE t WITH (HOLDLOCK) AS a`, valid T-SQL), so
/// the hint is taken out before parsing; the bookkeeping batch's
/// `IF ... EXEC` is beyond it too, so only its `CREATE TABLE`s are parsed.
#[test]
fn generated_statements_parse_as_tsql() {
    use sqlparser::dialect::MsSqlDialect;
    use sqlparser::parser::Parser;

    let t = prices();
    let b = tsql::Bookkeeping::new("ax").unwrap();
    let stage = "#cdx_stage_0";
    let read = [
        ("id", ReadAs::Itself),
        ("rv", ReadAs::Bigint),
        ("m", ReadAs::Decimal(19, 4)),
    ];
    let mut statements = vec![
        tsql::create_table("ax", &t).unwrap(),
        tsql::add_column("ax", &t, 1).unwrap(),
        tsql::add_column("ax", &t, 2).unwrap(),
        tsql::alter_column("ax", "prices", &collated_name(), "varchar(60)").unwrap(),
        tsql::alter_column("ax", "prices", &ax_prices()[2], "decimal(38,16)").unwrap(),
        tsql::integer_beyond("ax", "prices", "STORE").unwrap(),
        format!("DROP TABLE {}", tsql::qualified("ax", "prices").unwrap()),
        new_table(&t).create(stage).unwrap(),
        new_table(&t).insert_into_table("ax", stage).unwrap(),
        new_table(&t).merge_into_table("ax", stage).unwrap(),
        new_table(&t).delete_from_table("ax", stage).unwrap(),
        staging::insert_row(stage, 4),
        tsql::select_upload_rows("ax", "sales", &read, "id").unwrap(),
        tsql::select_upload_rows("ax", "sales", &read, "rv").unwrap(),
        tsql::COLUMNS.to_owned(),
        b.is_applied,
        b.last_sequence,
        b.record,
        b.forget,
        b.forget_group,
        b.pass_over,
        b.applied,
        b.watermark,
        b.advance,
    ];
    let ddl = tsql::bookkeeping("ax").unwrap();
    for part in ddl.split("\nIF ") {
        let (_, then) = part.split_once(" IS NULL ").unwrap();
        statements.push(then.trim().trim_end_matches(';').to_owned());
    }
    statements.retain(|s| !s.starts_with("EXEC("));
    for sql in statements {
        let mut parsable = sql.replace(" WITH (HOLDLOCK) AS ", " AS ");
        // Nor does it know T-SQL's `ALTER COLUMN c type [COLLATE x] NULL`,
        // whose column definition is CREATE TABLE's: parsed as one.
        if let Some((_, column)) = parsable.split_once(" ALTER COLUMN ") {
            parsable = format!("CREATE TABLE [ax].[t] ({column})");
        }
        if let Err(e) = Parser::parse_sql(&MsSqlDialect {}, &parsable) {
            panic!("{e}\n{sql}");
        }
    }
}
