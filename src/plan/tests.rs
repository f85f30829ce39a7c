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
    check_table(Some(&existing), &products()).unwrap_err()
}

/// A missing table is created.
#[test]
fn missing_table_is_created() {
    assert_eq!(check_table(None, &products()), Ok(TableAction::Create));
}

/// The table the package would create fits it; so does one whose names and
/// types differ only in case.
#[test]
fn identical_table_is_used() {
    assert_eq!(
        check_table(Some(&existing_products()), &products()),
        Ok(TableAction::UseExisting)
    );
    let mut shouting = existing_products();
    for c in &mut shouting.columns {
        c.name = c.name.to_uppercase();
        c.declared_type = c.declared_type.to_lowercase();
    }
    assert_eq!(
        check_table(Some(&shouting), &products()),
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
        check_table(Some(&t), &products()),
        Ok(TableAction::AddColumns(vec![2]))
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
        check_table(Some(&existing_products()), &wanted),
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
            found: "TEXT".into()
        }
    );
    assert!(e.to_string().contains("products.price"), "{e}");
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

/// A narrower column of the same family fits the table, and then each
/// value is checked: too long a text names table, column, key and length.
#[test]
fn narrower_column_fits_and_its_values_are_checked() {
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
    assert_eq!(check_table(Some(&t), &wanted), Ok(TableAction::UseExisting));
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
    let e = check_table(Some(&t), &wanted).unwrap_err();
    assert!(matches!(e, SchemaConflict::KeyMismatch { column, .. } if column == "product_id"));
    t.columns[0].pk_position = 1;
    t.columns[1].pk_position = 2;
    assert_eq!(check_table(Some(&t), &wanted), Ok(TableAction::UseExisting));
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
        check_table(Some(&t), &products()),
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
