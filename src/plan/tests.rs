use super::*;
use crate::package::Column;

fn col(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column::new(name, ty, nullable)
}

/// products(product_id INTEGER key, name TEXT, price REAL nullable).
fn products() -> TableSchema {
    TableSchema {
        name: "products".into(),
        columns: vec![
            col("product_id", ColumnType::Integer, false),
            col("name", ColumnType::Text, false),
            col("price", ColumnType::Real, true),
        ],
        key: vec!["product_id".into()],
    }
}

/// What a backend would read off these declared types.
fn stored(declared: &str) -> Option<StoredType> {
    let family = match declared.to_ascii_uppercase().as_str() {
        "INTEGER" => Family::Integer,
        "REAL" => Family::Real,
        "TEXT" => Family::Text,
        _ => return None,
    };
    Some(StoredType {
        family,
        limits: Limits::default(),
    })
}

fn have(name: &str, ty: &str, pk: u32) -> ExistingColumn {
    ExistingColumn {
        name: name.into(),
        stored: stored(ty),
        declared_type: ty.into(),
        not_null: pk > 0,
        has_default: false,
        pk_position: pk,
    }
}

/// The table `products()` creates.
fn existing_products() -> ExistingTable {
    ExistingTable {
        name: "products".into(),
        columns: vec![
            have("product_id", "INTEGER", 1),
            have("name", "TEXT", 0),
            have("price", "REAL", 0),
        ],
    }
}

fn conflict(existing: ExistingTable) -> SchemaConflict {
    check_table(Some(&existing), &products(), false).unwrap_err()
}

/// A missing table is created.
#[test]
fn missing_table_is_created() {
    assert_eq!(
        check_table(None, &products(), false),
        Ok(TableAction::Create)
    );
}

/// The table the package would create fits it; so does one whose names and
/// types differ only in case.
#[test]
fn identical_table_is_used() {
    assert_eq!(
        check_table(Some(&existing_products()), &products(), false),
        Ok(TableAction::UseExisting)
    );
    let mut shouting = existing_products();
    for c in &mut shouting.columns {
        c.name = c.name.to_uppercase();
        c.declared_type = c.declared_type.to_lowercase();
    }
    assert_eq!(
        check_table(Some(&shouting), &products(), false),
        Ok(TableAction::UseExisting)
    );
}

/// A nullable package column the table lacks is added; a NOT NULL one,
/// or one in the key, is a conflict naming table and column.
#[test]
fn missing_nullable_column_is_added_a_required_one_conflicts() {
    let mut t = existing_products();
    t.columns.remove(2);
    assert_eq!(
        check_table(Some(&t), &products(), false),
        Ok(TableAction::Alter {
            add: vec![2],
            widen: vec![]
        })
    );
    let mut t = existing_products();
    t.columns.remove(1);
    let e = conflict(t);
    assert_eq!(
        e,
        SchemaConflict::MissingColumn {
            table: "products".into(),
            column: "name".into()
        }
    );
    let text = e.to_string();
    assert!(
        text.contains("products") && text.contains("name") && text.contains("nullable"),
        "{text}"
    );
    let mut wanted = products();
    wanted
        .columns
        .push(Column::new("region", ColumnType::Text, true));
    wanted.key.push("region".into());
    assert!(matches!(
        check_table(Some(&existing_products()), &wanted, false),
        Err(SchemaConflict::MissingColumn { column, .. }) if column == "region"
    ));
}

/// A column declared with another type is a conflict naming table, column
/// and both types.
#[test]
fn different_type_conflicts() {
    let mut t = existing_products();
    t.columns[2] = have("price", "TEXT", 0);
    let e = conflict(t);
    assert_eq!(
        e,
        SchemaConflict::TypeMismatch {
            table: "products".into(),
            column: "price".into(),
            expected: "real".into(),
            found: "TEXT".into(),
            why: "text values do not become real values in place".into(),
        }
    );
    let text = e.to_string();
    for needle in ["products.price", "TEXT", "real", "--replace-definition"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

/// A declared type no package type maps to is a conflict.
#[test]
fn unknown_declared_type_conflicts() {
    let mut t = existing_products();
    t.columns[0] = have("product_id", "MONEY", 1);
    assert!(
        matches!(conflict(t), SchemaConflict::TypeMismatch { column, .. } if column == "product_id")
    );
}

/// A narrower column of the same family is widened to the package's type
/// outside the key; the values of one that stays narrower (a key column)
/// are checked: too long a text names table, column, key and length.
#[test]
fn narrower_column_is_widened_or_its_values_are_checked() {
    let mut t = existing_products();
    t.columns[1].stored = Some(StoredType {
        family: Family::Text,
        limits: Limits {
            max_len: Some(5),
            ..Limits::default()
        },
    });
    let mut wanted = products();
    wanted.columns[1].ty = ColumnType::BoundedText { max_len: 60 };
    assert_eq!(
        check_table(Some(&t), &wanted, false),
        Ok(TableAction::Alter {
            add: vec![],
            widen: vec![Widen {
                index: 1,
                to: ColumnType::BoundedText { max_len: 60 }
            }]
        })
    );
    let checks = narrower_columns(&t, &wanted);
    assert_eq!(checks.len(), 1);
    let id = uuid::Uuid::nil();
    let fits = [Value::Integer(7), Value::Text("short".into()), Value::Null];
    check_row(id, &wanted, &checks, &fits).unwrap();
    let long = [
        Value::Integer(7),
        Value::Text("too long".into()),
        Value::Null,
    ];
    let err = check_row(id, &wanted, &checks, &long)
        .unwrap_err()
        .to_string();
    for needle in [
        "products",
        "`name`",
        "product_id=7",
        "8 characters",
        "at most 5",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    wanted.columns[1].ty = ColumnType::BoundedText { max_len: 5 };
    assert!(
        narrower_columns(&t, &wanted).is_empty(),
        "text(5) always fits"
    );
}

/// Decimal and integer limits: precision, scale and range.
#[test]
fn decimal_and_integer_limits() {
    let decimal = Limits {
        decimal: Some((6, 2)),
        ..Limits::default()
    };
    assert_eq!(decimal.violation(&Value::Text("9999.99".into())), None);
    assert_eq!(decimal.violation(&Value::Text("1.500".into())), None);
    assert!(decimal.violation(&Value::Text("10000.00".into())).is_some());
    assert!(decimal.violation(&Value::Text("1.505".into())).is_some());
    assert!(decimal.hold_all_of(ColumnType::Decimal {
        precision: 5,
        scale: 2
    }));
    assert!(!decimal.hold_all_of(ColumnType::Decimal {
        precision: 7,
        scale: 2
    }));
    assert!(!decimal.hold_all_of(ColumnType::Decimal {
        precision: 6,
        scale: 3
    }));
    let int = Limits {
        int_range: Some((i64::from(i32::MIN), i64::from(i32::MAX))),
        ..Limits::default()
    };
    assert!(int
        .violation(&Value::Integer(1 << 31))
        .unwrap()
        .contains("2147483648"));
    assert_eq!(int.violation(&Value::Integer(-(1 << 31))), None);
    assert!(!int.hold_all_of(ColumnType::Integer));
    assert!(Family::Integer.stores(ColumnType::Boolean));
    assert!(!Family::Boolean.stores(ColumnType::Integer));
}

/// A key over other columns is a conflict.
#[test]
fn different_key_columns_conflict() {
    let mut t = existing_products();
    t.columns[0].pk_position = 0;
    t.columns[1].pk_position = 1;
    let e = conflict(t);
    assert_eq!(
        e,
        SchemaConflict::KeyMismatch {
            table: "products".into(),
            column: "product_id".into(),
            expected: vec!["product_id".into()],
            found: vec!["name".into()],
        }
    );
    assert!(e.to_string().contains("products"), "{e}");
}

/// A table without a primary key conflicts with any package key.
#[test]
fn table_without_key_conflicts() {
    let mut t = existing_products();
    t.columns[0].pk_position = 0;
    assert!(
        matches!(conflict(t), SchemaConflict::KeyMismatch { column, found, .. }
        if column == "product_id" && found.is_empty())
    );
}

/// A key with an extra column conflicts, naming the extra column.
#[test]
fn longer_key_conflicts() {
    let mut t = existing_products();
    t.columns[1].pk_position = 2;
    assert!(matches!(conflict(t), SchemaConflict::KeyMismatch { column, .. } if column == "name"));
}

/// The same key columns in another order conflict.
#[test]
fn key_order_matters() {
    let mut wanted = products();
    wanted.key = vec!["product_id".into(), "name".into()];
    let mut t = existing_products();
    t.columns[0].pk_position = 2;
    t.columns[1].pk_position = 1;
    let e = check_table(Some(&t), &wanted, false).unwrap_err();
    assert!(matches!(e, SchemaConflict::KeyMismatch { column, .. } if column == "product_id"));
    t.columns[0].pk_position = 1;
    t.columns[1].pk_position = 2;
    assert_eq!(
        check_table(Some(&t), &wanted, false),
        Ok(TableAction::UseExisting)
    );
}

/// An extra NOT NULL column without default would fail every insert.
#[test]
fn extra_required_column_conflicts() {
    let mut t = existing_products();
    t.columns.push(ExistingColumn {
        name: "store_code".into(),
        stored: stored("TEXT"),
        declared_type: "TEXT".into(),
        not_null: true,
        has_default: false,
        pk_position: 0,
    });
    assert_eq!(
        conflict(t),
        SchemaConflict::RequiredExtraColumn {
            table: "products".into(),
            column: "store_code".into()
        }
    );
}

/// Extra columns that are nullable or have a default are fine.
#[test]
fn extra_optional_columns_fit() {
    let mut t = existing_products();
    t.columns.push(have("note", "TEXT", 0));
    t.columns.push(ExistingColumn {
        name: "flag".into(),
        stored: stored("INTEGER"),
        declared_type: "INTEGER".into(),
        not_null: true,
        has_default: true,
        pk_position: 0,
    });
    assert_eq!(
        check_table(Some(&t), &products(), false),
        Ok(TableAction::UseExisting)
    );
}

/// Identifiers are quoted; anything else is refused.
#[test]
fn quote_ident_accepts_identifiers_only() {
    assert_eq!(quote_ident("products").unwrap(), "\"products\"");
    assert_eq!(quote_ident("_x9").unwrap(), "\"_x9\"");
    for hostile in [
        "x; DROP TABLE y",
        "a\"b",
        "",
        "9lives",
        "naïve",
        "a b",
        "t--",
    ] {
        assert_eq!(
            quote_ident(hostile),
            Err(InvalidIdentifier {
                name: hostile.into()
            }),
            "{hostile:?}"
        );
    }
}

/// The DDL lists columns with types, NOT NULL, and the key.
#[test]
fn create_table_sql_declares_everything() {
    let mut schema = products();
    schema.columns.push(col("code", ColumnType::Blob, false));
    schema.key.push("name".into());
    assert_eq!(
        create_table_sql(&schema).unwrap(),
        "CREATE TABLE \"products\" (\"product_id\" INTEGER NOT NULL, \"name\" TEXT NOT NULL, \
         \"price\" REAL, \"code\" BLOB NOT NULL, PRIMARY KEY (\"product_id\", \"name\"))"
    );
}

/// A schema with a hostile name produces no SQL.
#[test]
fn create_table_sql_refuses_bad_names() {
    let mut schema = products();
    schema.name = "t(x);DROP TABLE y;--".into();
    assert!(create_table_sql(&schema).is_err());
    let mut schema = products();
    schema.columns[1].name = "a\" TEXT, b".into();
    assert!(create_table_sql(&schema).is_err());
}

/// `cdx_*` and `sqlite_*` tables are off limits, in any case.
#[test]
fn reserved_tables() {
    for name in [
        "cdx_applied_packages",
        "CDX_x",
        "sqlite_sequence",
        "SQLite_stat1",
    ] {
        assert!(is_reserved_table(name), "{name}");
    }
    for name in ["products", "cdx", "sqlite", "my_sqlite_x"] {
        assert!(!is_reserved_table(name), "{name}");
    }
}

fn decimal_column(p: u8, s: u8) -> StoredType {
    StoredType {
        family: Family::Decimal,
        limits: Limits {
            decimal: Some((p, s)),
            ..Limits::default()
        },
    }
}

fn text_column(max_len: Option<u32>) -> StoredType {
    StoredType {
        family: Family::Text,
        limits: Limits {
            max_len,
            ..Limits::default()
        },
    }
}

/// Issue 10's accepted changes: longer texts and blobs, more digits at the
/// same scale, integer to decimal or real; a narrower type fits as it is.
#[test]
fn widenings_the_store_makes_in_place() {
    let dec = |precision, scale| ColumnType::Decimal { precision, scale };
    let text = |max_len| ColumnType::BoundedText { max_len };
    let integer = StoredType {
        family: Family::Integer,
        limits: Limits::default(),
    };
    for (stored, ty, want) in [
        (
            text_column(Some(20)),
            text(60),
            ColumnChange::Widen(text(60)),
        ),
        // Unbounded text, as publish infers it, leaves the length alone.
        (
            text_column(Some(20)),
            ColumnType::Text,
            ColumnChange::Checked,
        ),
        (text_column(Some(60)), text(20), ColumnChange::Fits),
        (text_column(None), text(20), ColumnChange::Fits),
        (
            decimal_column(6, 2),
            dec(12, 2),
            ColumnChange::Widen(dec(12, 2)),
        ),
        // The column's scale stays; it grows to the package's digits.
        (
            decimal_column(8, 4),
            dec(10, 2),
            ColumnChange::Widen(dec(12, 4)),
        ),
        (decimal_column(12, 2), dec(6, 2), ColumnChange::Fits),
        (integer, dec(10, 2), ColumnChange::Widen(dec(10, 2))),
        (
            integer,
            ColumnType::Real,
            ColumnChange::Widen(ColumnType::Real),
        ),
        (integer, ColumnType::Boolean, ColumnChange::Fits),
    ] {
        assert_eq!(column_change(stored, ty, false), want, "{stored:?} <- {ty}");
    }
}

/// What does not grow in place: a key column keeps its type (its values
/// are checked), a finer scale or a decimal past 38 digits is checked value
/// by value, and a change of kind is refused, saying why.
#[test]
fn changes_the_store_checks_or_refuses() {
    let dec = |precision, scale| ColumnType::Decimal { precision, scale };
    assert_eq!(
        column_change(
            text_column(Some(20)),
            ColumnType::BoundedText { max_len: 60 },
            true
        ),
        ColumnChange::Checked
    );
    assert_eq!(
        column_change(decimal_column(6, 2), dec(8, 4), false),
        ColumnChange::Checked
    );
    assert_eq!(
        column_change(decimal_column(32, 16), dec(32, 6), false),
        ColumnChange::Checked
    );
    let integer = StoredType {
        family: Family::Integer,
        limits: Limits::default(),
    };
    let refused = |stored, ty, in_key| match column_change(stored, ty, in_key) {
        ColumnChange::Refused(why) => why,
        other => panic!("{stored:?} <- {ty}: {other:?}"),
    };
    assert!(refused(integer, dec(10, 2), true).contains("key"));
    assert_eq!(
        refused(text_column(None), ColumnType::Integer, false),
        "text values do not become integer values in place"
    );
    assert_eq!(
        refused(decimal_column(10, 2), ColumnType::Integer, false),
        "decimal values do not become integer values in place"
    );
}

/// A full package that replaces a table's definition replaces it whatever
/// the table is; a missing table is still created.
#[test]
fn a_replaced_definition_drops_and_creates() {
    let mut t = existing_products();
    t.columns[2] = have("price", "TEXT", 0);
    assert_eq!(
        check_table(Some(&t), &products(), true),
        Ok(TableAction::Replace)
    );
    assert_eq!(
        check_table(None, &products(), true),
        Ok(TableAction::Create)
    );
    // A table that fits keeps its definition (its indexes) even so.
    assert_eq!(
        check_table(Some(&existing_products()), &products(), true),
        Ok(TableAction::UseExisting)
    );
}
