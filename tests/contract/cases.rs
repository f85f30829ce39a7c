//! The contract every channel database backend meets. Each case takes a
//! fresh, empty database and panics when the backend breaks the contract.

use cdx::channel_db::{
    ApplyOutcome, ApplyReport, ChannelDb, ChannelDbError, PassedOver, UploadTable,
};
use cdx::package::{ColumnType, PackageKind, TableSchema, Value};
use cdx::plan::SchemaConflict;

use super::harness::{Case, Fixture};
use super::packages::{
    applied, apply, col, full_products, int, product, products, products_rows, refused, source,
    table, tag, tags, text, Op, Pkg, GROUP, JOB,
};

/// Every case, in the order the runner runs them.
pub const ALL: &[(&str, Case)] = &[
    ("full_package_creates_tables", full_package_creates_tables),
    ("full_package_replaces_rows", full_package_replaces_rows),
    (
        "full_package_without_rows_empties_its_tables",
        full_package_without_rows_empties_its_tables,
    ),
    (
        "incremental_upserts_and_deletes_by_key",
        incremental_upserts_and_deletes_by_key,
    ),
    (
        "incremental_frames_apply_in_package_order",
        incremental_frames_apply_in_package_order,
    ),
    ("incremental_key_only_table", incremental_key_only_table),
    (
        "incremental_creates_missing_tables",
        incremental_creates_missing_tables,
    ),
    ("typed_keys_upsert_and_delete", typed_keys_upsert_and_delete),
    (
        "reapplied_package_is_already_applied",
        reapplied_package_is_already_applied,
    ),
    (
        "out_of_order_sequence_is_refused",
        out_of_order_sequence_is_refused,
    ),
    (
        "passed_over_package_keeps_its_place",
        passed_over_package_keeps_its_place,
    ),
    (
        "full_package_applies_again_over_itself",
        full_package_applies_again_over_itself,
    ),
    (
        "corrupt_package_applies_nothing",
        corrupt_package_applies_nothing,
    ),
    (
        "truncated_package_applies_nothing",
        truncated_package_applies_nothing,
    ),
    (
        "schema_conflict_applies_nothing",
        schema_conflict_applies_nothing,
    ),
    (
        "package_adds_a_nullable_column_rows_keep_their_values",
        package_adds_a_nullable_column_rows_keep_their_values,
    ),
    (
        "schema_conflict_in_a_later_table_applies_nothing",
        schema_conflict_in_a_later_table_applies_nothing,
    ),
    (
        "text_too_long_for_a_narrower_key_column_applies_nothing",
        text_too_long_for_a_narrower_key_column_applies_nothing,
    ),
    (
        "a_wider_text_widens_the_column_and_rows_keep_their_values",
        a_wider_text_widens_the_column_and_rows_keep_their_values,
    ),
    (
        "decimal_or_blob_wider_widens_the_column_a_finer_scale_is_checked",
        decimal_or_blob_wider_widens_the_column_a_finer_scale_is_checked,
    ),
    (
        "an_integer_column_widens_to_decimal_or_real",
        an_integer_column_widens_to_decimal_or_real,
    ),
    (
        "a_refused_change_and_the_full_package_that_replaces_the_definition",
        a_refused_change_and_the_full_package_that_replaces_the_definition,
    ),
    (
        "decimal_reads_back_in_the_columns_scale",
        decimal_reads_back_in_the_columns_scale,
    ),
    (
        "decimal_key_in_another_scale_is_the_same_row",
        decimal_key_in_another_scale_is_the_same_row,
    ),
    (
        "every_column_type_round_trips",
        every_column_type_round_trips,
    ),
    (
        "failing_row_rolls_back_the_package",
        failing_row_rolls_back_the_package,
    ),
    (
        "applied_packages_per_data_group_in_sequence_order",
        applied_packages_per_data_group_in_sequence_order,
    ),
    (
        "upload_rows_in_counter_order_with_limits",
        upload_rows_in_counter_order_with_limits,
    ),
    (
        "upload_rows_of_unknown_table_or_column",
        upload_rows_of_unknown_table_or_column,
    ),
    (
        "watermark_never_moves_back_and_survives_reopening",
        watermark_never_moves_back_and_survives_reopening,
    ),
    (
        "hostile_identifiers_are_refused",
        hostile_identifiers_are_refused,
    ),
    (
        "second_connection_sees_committed_state",
        second_connection_sees_committed_state,
    ),
    (
        "sql_keywords_are_names_like_any",
        sql_keywords_are_names_like_any,
    ),
    (
        "a_key_changed_far_apart_in_a_large_package",
        a_key_changed_far_apart_in_a_large_package,
    ),
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn product_rows(fx: &dyn Fixture) -> Vec<Vec<Value>> {
    fx.rows("products", &["product_id"])
}

fn tag_rows(fx: &dyn Fixture) -> Vec<Vec<Value>> {
    fx.rows("tags", &["product_id", "tag"])
}

/// `table` does not exist, as `row_count` reports it.
fn assert_no_table(db: &mut dyn ChannelDb, name: &str) {
    match db.row_count(name) {
        Err(ChannelDbError::UnknownTable { table }) => assert_eq!(table, name),
        other => panic!("expected UnknownTable for `{name}`, got {other:?}"),
    }
}

/// The sequences applied for `data_group`, in the order listed.
fn sequences(db: &mut dyn ChannelDb, data_group: &str) -> Vec<u64> {
    let log = db.applied_packages(data_group).unwrap();
    log.iter().map(|p| p.sequence).collect()
}

// ---------------------------------------------------------------------------
// Full packages
// ---------------------------------------------------------------------------

/// A full package creates its missing tables (a table listed without rows
/// too), reports them in header order, inserts the rows and records itself.
fn full_package_creates_tables(fx: &dyn Fixture) {
    let mut db = fx.open();
    let notes = table(
        "notes",
        vec![col("note_id", ColumnType::Integer, false)],
        &["note_id"],
    );
    let pkg = Pkg::full(1, vec![products(), tags(), notes])
        .rows(0, products_rows(1..=3))
        .rows(1, vec![tag(1, "a"), tag(2, "b")]);
    let report = applied(&mut *db, &pkg);
    assert_eq!(
        report,
        ApplyReport {
            upserts: 5,
            deletes: 0,
            created_tables: vec!["products".into(), "tags".into(), "notes".into()],
            replaced_tables: vec![],
        }
    );
    assert_eq!(
        product_rows(fx),
        vec![
            product(1, "p1", Some(1.0)),
            product(2, "p2", Some(2.0)),
            product(3, "p3", Some(3.0)),
        ]
    );
    assert_eq!(tag_rows(fx), vec![tag(1, "a"), tag(2, "b")]);
    assert_eq!(db.row_count("products").unwrap(), 3);
    assert_eq!(db.row_count("tags").unwrap(), 2);
    assert_eq!(db.row_count("notes").unwrap(), 0);
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 1);
    let log = db.applied_packages(GROUP).unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    let p = &log[0];
    assert_eq!(
        (
            p.package_id,
            p.data_group.as_str(),
            p.job.as_str(),
            p.sequence,
            p.kind,
            p.rows
        ),
        (pkg.id(), GROUP, JOB, 1, PackageKind::Full, 5)
    );
}

/// A second full package replaces its tables' rows: rows it lacks are
/// gone. Tables it does not list keep theirs.
fn full_package_replaces_rows(fx: &dyn Fixture) {
    let mut db = fx.open();
    let first = Pkg::full(1, vec![products(), tags()])
        .rows(0, products_rows(1..=5))
        .rows(1, vec![tag(1, "a")]);
    applied(&mut *db, &first);
    let second = Pkg::full(2, vec![products()]).rows(
        0,
        vec![product(2, "two", None), product(7, "seven", Some(7.5))],
    );
    let report = applied(&mut *db, &second);
    assert_eq!(
        report,
        ApplyReport {
            upserts: 2,
            deletes: 0,
            created_tables: vec![],
            replaced_tables: vec![],
        }
    );
    assert_eq!(
        product_rows(fx),
        vec![product(2, "two", None), product(7, "seven", Some(7.5))]
    );
    assert_eq!(tag_rows(fx), vec![tag(1, "a")]);
}

/// A full package that lists a table but sends no rows for it empties it.
fn full_package_without_rows_empties_its_tables(fx: &dyn Fixture) {
    let mut db = fx.open();
    applied(&mut *db, &full_products(1, 5));
    let report = applied(&mut *db, &Pkg::full(2, vec![products()]));
    assert_eq!(report, ApplyReport::default());
    assert_eq!(db.row_count("products").unwrap(), 0);
    assert!(product_rows(fx).is_empty());
    // Opened, but without rows: the same.
    applied(&mut *db, &full_products(3, 2));
    applied(&mut *db, &Pkg::full(4, vec![products()]).rows(0, vec![]));
    assert_eq!(db.row_count("products").unwrap(), 0);
}

// ---------------------------------------------------------------------------
// Incremental packages
// ---------------------------------------------------------------------------

/// An incremental package inserts new keys, updates existing ones and
/// deletes by key (a missing key too); other rows stay.
fn incremental_upserts_and_deletes_by_key(fx: &dyn Fixture) {
    let mut db = fx.open();
    applied(&mut *db, &full_products(1, 4));
    let inc = Pkg::incremental(2, vec![products()]).table(
        0,
        vec![
            Op::Up(product(2, "two", Some(20.0))),
            Op::Up(product(9, "nine", None)),
            Op::Del(vec![int(3)]),
            Op::Del(vec![int(42)]),
        ],
    );
    let report = applied(&mut *db, &inc);
    assert_eq!(
        report,
        ApplyReport {
            upserts: 2,
            deletes: 2,
            created_tables: vec![],
            replaced_tables: vec![],
        }
    );
    assert_eq!(
        product_rows(fx),
        vec![
            product(1, "p1", Some(1.0)),
            product(2, "two", Some(20.0)),
            product(4, "p4", Some(4.0)),
            product(9, "nine", None),
        ]
    );
}

/// Frames apply in package order: the last frame for a key wins, whatever
/// came before it in the same package; tables may come in any order.
fn incremental_frames_apply_in_package_order(fx: &dyn Fixture) {
    let mut db = fx.open();
    let first = Pkg::full(1, vec![products(), tags()])
        .rows(0, products_rows(1..=5))
        .rows(1, vec![tag(1, "a"), tag(1, "b")]);
    applied(&mut *db, &first);
    let inc = Pkg::incremental(2, vec![products(), tags()])
        .table(
            1,
            vec![
                Op::Del(tag(1, "a")),
                Op::Up(tag(1, "a")),
                Op::Up(tag(1, "c")),
                Op::Del(tag(1, "c")),
            ],
        )
        .table(
            0,
            vec![
                // upsert, delete, upsert: the last upsert.
                Op::Up(product(1, "first", None)),
                Op::Del(vec![int(1)]),
                Op::Up(product(1, "last", Some(1.5))),
                // upsert, delete: gone.
                Op::Up(product(2, "x", None)),
                Op::Del(vec![int(2)]),
                // delete, upsert: back.
                Op::Del(vec![int(3)]),
                Op::Up(product(3, "back", None)),
                // two upserts of a new key: the second.
                Op::Up(product(6, "new1", None)),
                Op::Up(product(6, "new2", Some(6.0))),
                // a missing key, and one deleted twice.
                Op::Del(vec![int(42)]),
                Op::Del(vec![int(4)]),
                Op::Del(vec![int(4)]),
            ],
        );
    let report = applied(&mut *db, &inc);
    assert_eq!((report.upserts, report.deletes), (8, 8));
    assert_eq!(
        product_rows(fx),
        vec![
            product(1, "last", Some(1.5)),
            product(3, "back", None),
            product(5, "p5", Some(5.0)),
            product(6, "new2", Some(6.0)),
        ]
    );
    assert_eq!(tag_rows(fx), vec![tag(1, "a"), tag(1, "b")]);
}

/// A key-only table takes rows that exist already without error and
/// deletes by the whole key.
fn incremental_key_only_table(fx: &dyn Fixture) {
    let mut db = fx.open();
    let full = Pkg::full(1, vec![tags()]).rows(0, vec![tag(1, "a"), tag(1, "b")]);
    applied(&mut *db, &full);
    let inc = Pkg::incremental(2, vec![tags()]).table(
        0,
        vec![
            Op::Up(tag(1, "a")),
            Op::Up(tag(2, "a")),
            Op::Up(tag(2, "a")),
            Op::Del(tag(1, "b")),
            Op::Del(tag(1, "zz")),
        ],
    );
    let report = applied(&mut *db, &inc);
    assert_eq!((report.upserts, report.deletes), (3, 2));
    assert_eq!(tag_rows(fx), vec![tag(1, "a"), tag(2, "a")]);
}

/// An incremental package creates missing tables too.
fn incremental_creates_missing_tables(fx: &dyn Fixture) {
    let mut db = fx.open();
    let inc = Pkg::incremental(1, vec![products(), tags()]).table(
        0,
        vec![Op::Up(product(1, "one", None)), Op::Del(vec![int(2)])],
    );
    let report = applied(&mut *db, &inc);
    assert_eq!(
        report,
        ApplyReport {
            upserts: 1,
            deletes: 1,
            created_tables: vec!["products".into(), "tags".into()],
            replaced_tables: vec![],
        }
    );
    assert_eq!(product_rows(fx), vec![product(1, "one", None)]);
    assert_eq!(db.row_count("tags").unwrap(), 0);
    let log = db.applied_packages(GROUP).unwrap();
    assert_eq!(
        (log.len(), log[0].kind, log[0].rows),
        (1, PackageKind::Incremental, 2)
    );
}

/// Keys of uuid, date and bounded text match by value: upserts update and
/// deletes remove exactly the row with that key.
fn typed_keys_upsert_and_delete(fx: &dyn Fixture) {
    let mut db = fx.open();
    let stock = table(
        "stock",
        vec![
            col("store", ColumnType::Uuid, false),
            col("day", ColumnType::Date, false),
            col("code", ColumnType::BoundedText { max_len: 20 }, false),
            col(
                "qty",
                ColumnType::Decimal {
                    precision: 12,
                    scale: 3,
                },
                false,
            ),
            col("counted_at", ColumnType::DateTime, true),
        ],
        &["store", "day", "code"],
    );
    let (s1, s2) = (
        "0b7d3c1e-5a7f-4e6b-9b1a-2f6c8d9e0a1b",
        "f3a1c2d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    );
    let row = |store: &str, day: &str, code: &str, qty: &str, at: Option<&str>| {
        vec![
            text(store),
            text(day),
            text(code),
            text(qty),
            at.map_or(Value::Null, text),
        ]
    };
    let key = |store: &str, day: &str, code: &str| vec![text(store), text(day), text(code)];
    let full = Pkg::full(1, vec![stock.clone()]).rows(
        0,
        vec![
            row(s1, "2026-01-01", "A-1", "1.500", None),
            row(s1, "2026-01-02", "A-1", "2.000", None),
            row(
                s2,
                "2026-01-01",
                "A-1",
                "3.250",
                Some("2026-01-01T08:00:00"),
            ),
            row(s2, "2026-01-01", "B-2", "-4.125", None),
        ],
    );
    applied(&mut *db, &full);
    let inc = Pkg::incremental(2, vec![stock]).table(
        0,
        vec![
            Op::Up(row(
                s1,
                "2026-01-01",
                "A-1",
                "10.000",
                Some("2026-01-01T09:30:00.25"),
            )),
            Op::Del(key(s2, "2026-01-01", "A-1")),
            Op::Del(key(s1, "2026-01-03", "A-1")),
            Op::Up(row(s2, "2026-01-03", "C-3", "0.001", None)),
        ],
    );
    applied(&mut *db, &inc);
    // Sorted here, not by the database: backends order uuids differently.
    let mut got = fx.rows("stock", &["store", "day", "code"]);
    got.sort_by_key(|r| format!("{r:?}"));
    let mut want = vec![
        row(
            s1,
            "2026-01-01",
            "A-1",
            "10.000",
            Some("2026-01-01T09:30:00.25"),
        ),
        row(s1, "2026-01-02", "A-1", "2.000", None),
        row(s2, "2026-01-01", "B-2", "-4.125", None),
        row(s2, "2026-01-03", "C-3", "0.001", None),
    ];
    want.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// Order and idempotence
// ---------------------------------------------------------------------------

/// Applying the same package again reports AlreadyApplied and changes
/// nothing, even once later packages are applied.
fn reapplied_package_is_already_applied(fx: &dyn Fixture) {
    let mut db = fx.open();
    let full = full_products(1, 3);
    applied(&mut *db, &full);
    let inc =
        Pkg::incremental(2, vec![products()]).table(0, vec![Op::Up(product(1, "changed", None))]);
    applied(&mut *db, &inc);
    let before = product_rows(fx);
    assert_eq!(
        apply(&mut *db, &full).unwrap(),
        ApplyOutcome::AlreadyApplied
    );
    assert_eq!(apply(&mut *db, &inc).unwrap(), ApplyOutcome::AlreadyApplied);
    // Through another connection too.
    let mut other = fx.open();
    assert_eq!(
        apply(&mut *other, &inc).unwrap(),
        ApplyOutcome::AlreadyApplied
    );
    assert_eq!(product_rows(fx), before);
    assert_eq!(sequences(&mut *db, GROUP), [1, 2]);
}

/// A package at or below the last applied sequence is refused and applies
/// nothing; a gap is not this layer's business.
fn out_of_order_sequence_is_refused(fx: &dyn Fixture) {
    let mut db = fx.open();
    applied(&mut *db, &full_products(1, 2));
    applied(&mut *db, &full_products(3, 3));
    let before = product_rows(fx);
    for sequence in [1, 2, 3] {
        let pkg = full_products(sequence, 9);
        match refused(&mut *db, &pkg) {
            ChannelDbError::OutOfOrder {
                package_id,
                data_group,
                sequence: s,
                last_applied,
            } => assert_eq!(
                (package_id, data_group.as_str(), s, last_applied),
                (pkg.id(), GROUP, sequence, 3)
            ),
            other => panic!("sequence {sequence}: expected OutOfOrder, got {other:?}"),
        }
    }
    assert_eq!(product_rows(fx), before);
    assert_eq!(db.row_count("products").unwrap(), 3);
    assert_eq!(sequences(&mut *db, GROUP), [1, 3]);
    applied(&mut *db, &full_products(7, 1));
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 7);
}

fn passed_over(pkg: &Pkg, reason: &str) -> PassedOver {
    PassedOver {
        package_id: pkg.id(),
        data_group: pkg.header.data_group.clone(),
        job: pkg.header.job.clone(),
        sequence: pkg.header.sequence,
        kind: pkg.header.kind,
        reason: reason.into(),
    }
}

/// A package passed over (withdrawn or superseded at headquarters) is
/// recorded with no rows and its reason, in its place: only as the next
/// sequence, once, and the packages after it apply.
fn passed_over_package_keeps_its_place(fx: &dyn Fixture) {
    let mut db = fx.open();
    applied(&mut *db, &full_products(1, 3));
    let before = product_rows(fx);
    let skipped =
        Pkg::incremental(3, vec![products()]).table(0, vec![Op::Up(product(1, "bad", None))]);
    match db.pass_over(&passed_over(&skipped, "withdrawn")) {
        Err(ChannelDbError::OutOfOrder {
            sequence,
            last_applied,
            ..
        }) => assert_eq!((sequence, last_applied), (3, 1)),
        other => panic!("a gap must be refused, got {other:?}"),
    }
    let withdrawn =
        Pkg::incremental(2, vec![products()]).table(0, vec![Op::Up(product(1, "bad", None))]);
    db.pass_over(&passed_over(&withdrawn, "withdrawn by ops: wrong prices"))
        .unwrap();
    // Recording it again changes nothing; applying it is "already applied".
    db.pass_over(&passed_over(&withdrawn, "again")).unwrap();
    assert_eq!(
        apply(&mut *db, &withdrawn).unwrap(),
        ApplyOutcome::AlreadyApplied
    );
    assert_eq!(product_rows(fx), before);
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 2);
    let record = db
        .applied_packages(GROUP)
        .unwrap()
        .into_iter()
        .find(|a| a.package_id == withdrawn.id())
        .unwrap();
    assert_eq!(
        (record.rows, record.passed_over.as_deref()),
        (0, Some("withdrawn by ops: wrong prices"))
    );
    let next =
        Pkg::incremental(3, vec![products()]).table(0, vec![Op::Up(product(9, "nine", None))]);
    applied(&mut *db, &next);
    assert_eq!(sequences(&mut *db, GROUP), [1, 2, 3]);
    let kept: Vec<_> = db
        .applied_packages(GROUP)
        .unwrap()
        .iter()
        .map(|a| a.passed_over.is_some())
        .collect();
    assert_eq!(kept, [false, true, false]);
}

/// An operator's rerun of a full package applies it again over itself:
/// rows changed since are put back, its record stays one; a package the
/// database does not hold cannot be re-applied.
fn full_package_applies_again_over_itself(fx: &dyn Fixture) {
    let mut db = fx.open();
    let full = full_products(1, 3);
    applied(&mut *db, &full);
    let before = product_rows(fx);
    // Rows changed since (whether this is wise is the agent's call: it
    // refuses when a later package of the same job would be rolled back).
    let drift = Pkg::incremental(2, vec![products(), tags()])
        .table(0, vec![Op::Del(vec![int(2)])])
        .table(1, vec![Op::Up(tag(1, "t"))]);
    applied(&mut *db, &drift);
    assert_ne!(product_rows(fx), before);
    match db.reapply_package(source(&full.bytes())).unwrap() {
        ApplyOutcome::Applied(report) => assert_eq!(report.upserts, 3),
        other => panic!("expected Applied, got {other:?}"),
    }
    assert_eq!(product_rows(fx), before);
    assert_eq!(sequences(&mut *db, GROUP), [1, 2]);
    let never = full_products(3, 1);
    match db.reapply_package(source(&never.bytes())) {
        Err(ChannelDbError::NotApplied { package_id }) => assert_eq!(package_id, never.id()),
        other => panic!("expected NotApplied, got {other:?}"),
    }
    assert_eq!(sequences(&mut *db, GROUP), [1, 2]);
}

// ---------------------------------------------------------------------------
// Damaged packages
// ---------------------------------------------------------------------------

/// A byte flipped in the body fails the apply with a package error and
/// applies nothing; the intact package then applies.
fn corrupt_package_applies_nothing(fx: &dyn Fixture) {
    let mut db = fx.open();
    applied(&mut *db, &full_products(1, 3));
    let before = product_rows(fx);
    let good = full_products(2, 2000);
    let bytes = good.bytes();
    let len = bytes.len();
    for at in [len * 3 / 10, len / 2, len * 3 / 4, len - 5] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x55;
        match db.apply_package(source(&bad)) {
            Err(ChannelDbError::Package { package_id, .. }) => {
                assert_eq!(package_id, Some(good.id()), "byte {at} of {len}")
            }
            other => panic!("byte {at} of {len} flipped: expected a package error, got {other:?}"),
        }
        assert_eq!(product_rows(fx), before, "byte {at} of {len} flipped");
        assert_eq!(
            sequences(&mut *db, GROUP),
            [1],
            "byte {at} of {len} flipped"
        );
        assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 1);
    }
    match db.apply_package(source(&bytes)) {
        Ok(ApplyOutcome::Applied(report)) => assert_eq!(report.upserts, 2000),
        other => panic!("the intact package should apply, got {other:?}"),
    }
    assert_eq!(db.row_count("products").unwrap(), 2000);
    assert_eq!(sequences(&mut *db, GROUP), [1, 2]);
}

/// A package cut short fails with a package error and applies nothing, not
/// even the creation of its tables; the whole package then applies.
fn truncated_package_applies_nothing(fx: &dyn Fixture) {
    let mut db = fx.open();
    let pkg = full_products(1, 500);
    let bytes = pkg.bytes();
    for cut in [bytes.len() - 10, bytes.len() - 1, bytes.len() / 2] {
        match db.apply_package(source(&bytes[..cut])) {
            Err(ChannelDbError::Package { .. }) => {}
            other => panic!(
                "cut at {cut} of {}: expected a package error, got {other:?}",
                bytes.len()
            ),
        }
        assert_no_table(&mut *db, "products");
        assert!(db.applied_packages(GROUP).unwrap().is_empty());
        assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 0);
    }
    match db.apply_package(source(&bytes)) {
        Ok(ApplyOutcome::Applied(_)) => {}
        other => panic!("the whole package should apply, got {other:?}"),
    }
    assert_eq!(db.row_count("products").unwrap(), 500);
}

// ---------------------------------------------------------------------------
// Schema conflicts and values that do not fit
// ---------------------------------------------------------------------------

/// products() under another name.
fn products_named(name: &str) -> TableSchema {
    TableSchema {
        name: name.into(),
        ..products()
    }
}

/// A table that does not fit (a column of another type family, a missing
/// column, another key) is a schema conflict naming table and column, and
/// nothing of the package is applied.
fn schema_conflict_applies_nothing(fx: &dyn Fixture) {
    let mut db = fx.open();
    let other_type = table(
        "p_type",
        vec![
            col("product_id", ColumnType::Integer, false),
            col("name", ColumnType::Text, false),
            col("price", ColumnType::Text, true),
        ],
        &["product_id"],
    );
    // A NOT NULL column cannot be added to rows that exist.
    let missing_column = table(
        "p_missing",
        vec![
            col("product_id", ColumnType::Integer, false),
            col("price", ColumnType::Real, true),
        ],
        &["product_id"],
    );
    let other_key = TableSchema {
        key: vec!["name".into()],
        ..products_named("p_key")
    };
    let old = |price: Value| vec![int(1), text("old"), price];
    let existing = Pkg::full(1, vec![other_type, missing_column, other_key])
        .rows(0, vec![old(text("cheap"))])
        .rows(1, vec![vec![int(1), Value::Null]])
        .rows(2, vec![old(Value::Null)]);
    applied(&mut *db, &existing);
    let before: Vec<_> = ["p_type", "p_missing", "p_key"]
        .iter()
        .map(|t| fx.rows(t, &["product_id"]))
        .collect();

    for (name, column) in [
        ("p_type", "price"),
        ("p_missing", "name"),
        ("p_key", "product_id"),
    ] {
        for kind in [PackageKind::Full, PackageKind::Incremental] {
            let pkg = Pkg::new(kind, 2, vec![products_named(name)]).rows(0, products_rows(1..=3));
            let err = refused(&mut *db, &pkg);
            let ChannelDbError::SchemaConflict(conflict) = &err else {
                panic!("{name} ({kind:?}): expected SchemaConflict, got {err:?}");
            };
            let right_kind = match (name, &**conflict) {
                (
                    "p_type",
                    SchemaConflict::TypeMismatch {
                        table, column: c, ..
                    },
                )
                | ("p_missing", SchemaConflict::MissingColumn { table, column: c })
                | (
                    "p_key",
                    SchemaConflict::KeyMismatch {
                        table, column: c, ..
                    },
                ) => table == name && c == column,
                _ => false,
            };
            assert!(right_kind, "{name} ({kind:?}): {conflict:?}");
            let shown = err.to_string();
            assert!(
                shown.contains(name) && shown.contains(column),
                "{name} ({kind:?}): {shown}"
            );
        }
    }
    let after: Vec<_> = ["p_type", "p_missing", "p_key"]
        .iter()
        .map(|t| fx.rows(t, &["product_id"]))
        .collect();
    assert_eq!(after, before);
    assert_eq!(sequences(&mut *db, GROUP), [1]);
}

/// A package whose table has a nullable column more than the channel
/// database's adds it in its own transaction: the rows there keep their
/// values (NULL in the new column); a later package that omits the column
/// leaves it as it is; a package that fails after adding it adds nothing.
fn package_adds_a_nullable_column_rows_keep_their_values(fx: &dyn Fixture) {
    let mut db = fx.open();
    let narrow = table(
        "products",
        vec![
            col("product_id", ColumnType::Integer, false),
            col("name", ColumnType::Text, false),
        ],
        &["product_id"],
    );
    let names = |ids: std::ops::RangeInclusive<i64>| -> Vec<Vec<Value>> {
        ids.map(|i| vec![int(i), text(&format!("p{i}"))]).collect()
    };
    applied(
        &mut *db,
        &Pkg::full(1, vec![narrow.clone()]).rows(0, names(1..=3)),
    );

    let widened = Pkg::incremental(2, vec![products()]).table(
        0,
        vec![
            Op::Up(product(1, "one", Some(9.5))),
            Op::Up(product(7, "seven", None)),
        ],
    );
    // Corrupt near its end, it fails after the column was added and its
    // rows written: nothing stays, the column neither.
    let mut corrupt = widened.bytes();
    let at = corrupt.len() - 5;
    corrupt[at] ^= 0x55;
    assert!(matches!(
        db.apply_package(source(&corrupt)),
        Err(ChannelDbError::Package { .. })
    ));
    assert_eq!(fx.rows("products", &["product_id"]), names(1..=3));
    assert_eq!(sequences(&mut *db, GROUP), [1]);

    let report = applied(&mut *db, &widened);
    assert_eq!(report.upserts, 2);
    assert!(report.created_tables.is_empty());
    assert_eq!(
        product_rows(fx),
        vec![
            product(1, "one", Some(9.5)),
            product(2, "p2", None),
            product(3, "p3", None),
            product(7, "seven", None),
        ]
    );
    // A package of the old shape upserts without touching the new column.
    let old_shape = Pkg::incremental(3, vec![narrow]).table(
        0,
        vec![
            Op::Up(vec![int(1), text("uno")]),
            Op::Up(vec![int(4), text("p4")]),
        ],
    );
    applied(&mut *db, &old_shape);
    assert_eq!(
        product_rows(fx),
        vec![
            product(1, "uno", Some(9.5)),
            product(2, "p2", None),
            product(3, "p3", None),
            product(4, "p4", None),
            product(7, "seven", None),
        ]
    );
    assert_eq!(sequences(&mut *db, GROUP), [1, 2, 3]);
}

/// When a later table of the package conflicts, the tables before it are
/// not touched: not emptied, not written, not created.
fn schema_conflict_in_a_later_table_applies_nothing(fx: &dyn Fixture) {
    let mut db = fx.open();
    let int_tags = table(
        "tags",
        vec![
            col("product_id", ColumnType::Integer, false),
            col("tag", ColumnType::Integer, false),
        ],
        &["product_id", "tag"],
    );
    let first = Pkg::full(1, vec![products(), int_tags])
        .rows(0, products_rows(1..=3))
        .rows(1, vec![vec![int(1), int(10)]]);
    applied(&mut *db, &first);
    let before = product_rows(fx);
    let widgets = table(
        "widgets",
        vec![col("widget_id", ColumnType::Integer, false)],
        &["widget_id"],
    );

    let packages = [
        Pkg::full(2, vec![products(), tags()])
            .rows(0, vec![product(9, "nine", None)])
            .rows(1, vec![tag(9, "x")]),
        Pkg::incremental(2, vec![products(), tags()])
            .table(
                0,
                vec![Op::Up(product(9, "nine", None)), Op::Del(vec![int(1)])],
            )
            .rows(1, vec![tag(9, "x")]),
        Pkg::full(2, vec![widgets, tags()]).rows(0, vec![vec![int(1)]]),
    ];
    for pkg in &packages {
        let err = refused(&mut *db, pkg);
        assert!(
            matches!(
                &err,
                ChannelDbError::SchemaConflict(conflict) if matches!(
                    &**conflict,
                    SchemaConflict::TypeMismatch { table, column, .. }
                        if table == "tags" && column == "tag"
                )
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("tags.tag"), "{err}");
        assert_eq!(product_rows(fx), before);
        assert_eq!(
            fx.rows("tags", &["product_id"]),
            vec![vec![int(1), int(10)]]
        );
        assert_no_table(&mut *db, "widgets");
        assert_eq!(sequences(&mut *db, GROUP), [1]);
    }
}

/// labels(product_id integer key, label) with the given label type.
fn labels(label: ColumnType) -> TableSchema {
    table(
        "labels",
        vec![
            col("product_id", ColumnType::Integer, false),
            col("label", label, false),
        ],
        &["product_id"],
    )
}

fn label(id: i64, l: &str) -> Vec<Value> {
    vec![int(id), text(l)]
}

/// codes(code text key, label text) with the given code type.
fn codes(code: ColumnType) -> TableSchema {
    table(
        "codes",
        vec![
            col("code", code, false),
            col("label", ColumnType::Text, false),
        ],
        &["code"],
    )
}

/// A text longer than a key column holds (its length counted in UTF-16
/// units) fails the package naming table, column, key and length, and
/// nothing is applied: a key column is never altered, its values are
/// checked. The same wider-declared package with values that fit applies.
fn text_too_long_for_a_narrower_key_column_applies_nothing(fx: &dyn Fixture) {
    let narrow = ColumnType::BoundedText { max_len: 5 };
    let wide = ColumnType::BoundedText { max_len: 60 };
    let mut db = fx.open();
    let first = Pkg::full(1, vec![codes(narrow)]).rows(0, vec![label_row("one"), label_row("two")]);
    applied(&mut *db, &first);
    let before = fx.rows("codes", &["code"]);
    let fitting = vec![label_row("five5"), label_row("abc😀"), label_row("ok")];

    // (the package, the key, the length it must report)
    let mut with_8 = fitting.clone();
    with_8.insert(2, label_row("eight_ch"));
    let cases = [
        (
            Pkg::full(2, vec![codes(wide)]).rows(0, with_8.clone()),
            "code=eight_ch",
            "8",
        ),
        (
            Pkg::incremental(2, vec![codes(wide)]).rows(0, with_8),
            "code=eight_ch",
            "8",
        ),
        (
            // 4 letters and an emoji: 5 characters, 6 UTF-16 units.
            Pkg::incremental(2, vec![codes(wide)])
                .rows(0, vec![label_row("five5"), label_row("abcd😀")]),
            "code=abcd😀",
            "6",
        ),
    ];
    for (pkg, key, length) in &cases {
        let err = refused(&mut *db, pkg);
        match &err {
            ChannelDbError::ValueDoesNotFit {
                package_id,
                table,
                column,
                key: k,
                detail,
            } => {
                assert_eq!(
                    (*package_id, table.as_str(), column.as_str(), k.as_str()),
                    (pkg.id(), "codes", "code", *key)
                );
                assert!(detail.contains(length), "{detail}");
            }
            other => panic!("expected ValueDoesNotFit, got {other:?}"),
        }
        let shown = err.to_string();
        for part in ["codes", "code", key, length] {
            assert!(shown.contains(part), "`{part}` missing from: {shown}");
        }
        assert_eq!(fx.rows("codes", &["code"]), before);
        assert_eq!(sequences(&mut *db, GROUP), [1]);
    }

    let fits = Pkg::full(2, vec![codes(wide)]).rows(0, fitting.clone());
    applied(&mut *db, &fits);
    let mut sorted = fitting;
    sorted.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    let mut got = fx.rows("codes", &["code"]);
    got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(got, sorted);
}

fn label_row(code: &str) -> Vec<Value> {
    vec![text(code), text(&format!("label of {code}"))]
}

/// Issue 10: a package declaring a column wider than the table's widens it
/// in place, in its transaction: `text(5)` to `text(60)`, and the rows
/// already there keep their values; unbounded `text` leaves it as it is. A second table's
/// conflict rolls the widening back with the rest (the SQLite tests read
/// the declared type back).
fn a_wider_text_widens_the_column_and_rows_keep_their_values(fx: &dyn Fixture) {
    let narrow = ColumnType::BoundedText { max_len: 5 };
    let mut db = fx.open();
    let first = Pkg::full(1, vec![labels(narrow)]).rows(0, vec![label(1, "one"), label(2, "two")]);
    applied(&mut *db, &first);

    // A conflict in a later table: nothing, the widening included, stays.
    let clash = table(
        "labels_clash",
        vec![col("id", ColumnType::Integer, false)],
        &["id"],
    );
    applied(
        &mut *db,
        &Pkg::full(2, vec![clash.clone()]).rows(0, vec![vec![int(1)]]),
    );
    let mut clash_as_text = clash;
    clash_as_text.columns[0].ty = ColumnType::Text;
    let rolled_back = Pkg::incremental(
        3,
        vec![
            labels(ColumnType::BoundedText { max_len: 60 }),
            clash_as_text,
        ],
    )
    .rows(0, vec![label(3, "a label of 25 characters!")]);
    refused(&mut *db, &rolled_back);
    assert_eq!(
        fx.rows("labels", &["product_id"]),
        vec![label(1, "one"), label(2, "two")]
    );

    let wider = Pkg::incremental(3, vec![labels(ColumnType::BoundedText { max_len: 60 })])
        .rows(0, vec![label(3, "a label of 25 characters!")]);
    applied(&mut *db, &wider);
    // Declared narrow again, the column stays wide: a 60-character label fits.
    let narrow_again = Pkg::incremental(4, vec![labels(narrow)]).rows(0, vec![label(4, "four")]);
    applied(&mut *db, &narrow_again);
    // Unbounded text, what `cdx-server publish` infers for strings, leaves
    // the length as it is: each value is checked against it.
    let unbounded = Pkg::incremental(5, vec![labels(ColumnType::Text)])
        .rows(0, vec![label(5, &"x".repeat(60))]);
    applied(&mut *db, &unbounded);
    let too_long = Pkg::incremental(6, vec![labels(ColumnType::Text)])
        .rows(0, vec![label(6, &"x".repeat(61))]);
    assert!(
        matches!(
            refused(&mut *db, &too_long),
            ChannelDbError::ValueDoesNotFit { .. }
        ),
        "unbounded text widened a bounded column"
    );
    assert_eq!(
        fx.rows("labels", &["product_id"]),
        vec![
            label(1, "one"),
            label(2, "two"),
            label(3, "a label of 25 characters!"),
            label(4, "four"),
            label(5, &"x".repeat(60)),
        ]
    );
    assert_eq!(sequences(&mut *db, GROUP), [1, 2, 3, 4, 5]);
}

/// amounts(id integer key, amount decimal, code blob nullable).
fn amounts(amount: ColumnType, code: ColumnType) -> TableSchema {
    table(
        "amounts",
        vec![
            col("id", ColumnType::Integer, false),
            col("amount", amount, false),
            col("code", code, true),
        ],
        &["id"],
    )
}

fn decimal(precision: u8, scale: u8) -> ColumnType {
    ColumnType::Decimal { precision, scale }
}

/// A decimal with more digits before the point, or a blob longer, than the
/// existing column holds widens it (the decimal at its scale, past 15
/// digits too, where SQLite keeps it as exact text); the rows there keep
/// their values. A finer scale cannot grow in place: each value is
/// checked, and one that would lose a digit fails the package naming
/// table, column and key.
fn decimal_or_blob_wider_widens_the_column_a_finer_scale_is_checked(fx: &dyn Fixture) {
    let mut db = fx.open();
    let narrow = amounts(decimal(6, 2), ColumnType::BoundedBlob { max_len: 4 });
    let row = |id: i64, amount: &str, code: Option<&[u8]>| {
        vec![
            int(id),
            text(amount),
            code.map_or(Value::Null, |c| Value::Blob(c.to_vec())),
        ]
    };
    let first = Pkg::full(1, vec![narrow]).rows(
        0,
        vec![
            row(1, "1234.50", Some(&[1, 2, 3, 4])),
            row(2, "-0.01", None),
        ],
    );
    applied(&mut *db, &first);
    let before = fx.rows("amounts", &["id"]);

    let finer = amounts(decimal(8, 4), ColumnType::BoundedBlob { max_len: 4 });
    let rounded = Pkg::incremental(2, vec![finer]).rows(0, vec![row(5, "1.2345", None)]);
    match refused(&mut *db, &rounded) {
        ChannelDbError::ValueDoesNotFit {
            table,
            column,
            key,
            detail,
            ..
        } => {
            assert_eq!(
                (table.as_str(), column.as_str(), key.as_str()),
                ("amounts", "amount", "id=5")
            );
            assert!(detail.contains("1.2345"), "{detail}");
        }
        other => panic!("expected ValueDoesNotFit, got {other:?}"),
    }
    assert_eq!(fx.rows("amounts", &["id"]), before);

    let wide = amounts(decimal(12, 2), ColumnType::BoundedBlob { max_len: 10 });
    applied(
        &mut *db,
        &Pkg::incremental(2, vec![wide]).rows(
            0,
            vec![
                row(3, "9999999999.99", Some(&[1, 2, 3, 4, 5])),
                row(4, "10000.00", None),
            ],
        ),
    );
    let wider = amounts(decimal(20, 2), ColumnType::BoundedBlob { max_len: 16 });
    applied(
        &mut *db,
        &Pkg::incremental(3, vec![wider])
            .rows(0, vec![row(6, "123456789012345678.90", Some(&[7; 12]))]),
    );
    assert_eq!(
        fx.rows("amounts", &["id"]),
        vec![
            row(1, "1234.50", Some(&[1, 2, 3, 4])),
            row(2, "-0.01", None),
            row(3, "9999999999.99", Some(&[1, 2, 3, 4, 5])),
            row(4, "10000.00", None),
            row(6, "123456789012345678.90", Some(&[7; 12])),
        ]
    );
}

/// qty(id integer key, qty) with the given qty type.
fn quantities(qty: ColumnType) -> TableSchema {
    table(
        "quantities",
        vec![col("id", ColumnType::Integer, false), col("qty", qty, true)],
        &["id"],
    )
}

/// An integer column becomes a decimal or a real in place: the integers
/// there read back as the decimal's exact text, or as reals. One with a
/// value the decimal cannot hold, or a float not exactly (beyond 2^53), is
/// refused, naming it and the way out.
fn an_integer_column_widens_to_decimal_or_real(fx: &dyn Fixture) {
    let mut db = fx.open();
    let first = Pkg::full(1, vec![quantities(ColumnType::Integer)]).rows(
        0,
        vec![
            vec![int(1), int(3)],
            vec![int(2), int(-40)],
            vec![int(3), Value::Null],
        ],
    );
    applied(&mut *db, &first);
    let too_few_digits = Pkg::incremental(2, vec![quantities(decimal(3, 2))])
        .rows(0, vec![vec![int(4), text("1.25")]]);
    let err = refused(&mut *db, &too_few_digits);
    let shown = err.to_string();
    for part in ["quantities", "qty", "-40", "--replace-definition"] {
        assert!(shown.contains(part), "`{part}` missing from: {shown}");
    }
    let to_decimal = Pkg::incremental(2, vec![quantities(decimal(10, 2))])
        .rows(0, vec![vec![int(4), text("1.25")]]);
    applied(&mut *db, &to_decimal);
    assert_eq!(
        fx.rows("quantities", &["id"]),
        vec![
            vec![int(1), text("3.00")],
            vec![int(2), text("-40.00")],
            vec![int(3), Value::Null],
            vec![int(4), text("1.25")],
        ]
    );

    let weights = |ty| {
        table(
            "weights",
            vec![col("id", ColumnType::Integer, false), col("w", ty, true)],
            &["id"],
        )
    };
    applied(
        &mut *db,
        &Pkg::incremental(3, vec![weights(ColumnType::Integer)])
            .rows(0, vec![vec![int(1), int(4)]]),
    );
    applied(
        &mut *db,
        &Pkg::incremental(4, vec![weights(ColumnType::Real)])
            .rows(0, vec![vec![int(2), Value::Real(2.5)]]),
    );
    assert_eq!(
        fx.rows("weights", &["id"]),
        vec![
            vec![int(1), Value::Real(4.0)],
            vec![int(2), Value::Real(2.5)]
        ]
    );
    // An integer beyond 2^53 would not stay exact in a float: refused.
    let big = |ty| {
        table(
            "big",
            vec![col("id", ColumnType::Integer, false), col("n", ty, true)],
            &["id"],
        )
    };
    applied(
        &mut *db,
        &Pkg::incremental(5, vec![big(ColumnType::Integer)])
            .rows(0, vec![vec![int(1), int(9_007_199_254_740_993)]]),
    );
    let to_real = Pkg::incremental(6, vec![big(ColumnType::Real)])
        .rows(0, vec![vec![int(2), Value::Real(1.5)]]);
    let err = refused(&mut *db, &to_real);
    assert!(
        matches!(&err, ChannelDbError::ValueDoesNotFit { column, .. } if column == "n")
            && err.to_string().contains("9007199254740993"),
        "{err}"
    );
    assert_eq!(
        fx.rows("big", &["id"]),
        vec![vec![int(1), int(9_007_199_254_740_993)]]
    );
}

/// A change no column can make in place (text to integer, another key) is
/// refused naming table, column, both types and the way out; the full
/// package that replaces the table's definition then drops and creates the
/// table in its transaction, and the table holds the package's rows.
fn a_refused_change_and_the_full_package_that_replaces_the_definition(fx: &dyn Fixture) {
    let mut db = fx.open();
    let before = table(
        "items",
        vec![
            col("item", ColumnType::Text, false),
            col("weight", ColumnType::Text, true),
        ],
        &["item"],
    );
    applied(
        &mut *db,
        &Pkg::full(1, vec![before]).rows(0, vec![vec![text("A"), text("heavy")]]),
    );
    let after = table(
        "items",
        vec![
            col("item", ColumnType::Integer, false),
            col("weight", ColumnType::Integer, true),
        ],
        &["item"],
    );
    let rows = vec![vec![int(1), int(12)], vec![int(2), Value::Null]];
    let changed = Pkg::full(2, vec![after.clone()]).rows(0, rows.clone());
    let err = refused(&mut *db, &changed);
    assert!(
        matches!(
            &err,
            ChannelDbError::SchemaConflict(conflict) if matches!(
                &**conflict,
                SchemaConflict::TypeMismatch { table, column, expected, .. }
                    if table == "items" && column == "item" && expected == "integer"
            )
        ),
        "{err:?}"
    );
    let shown = err.to_string();
    for part in [
        "items.item",
        "integer",
        "--replace-definition",
        "text values do not become",
    ] {
        assert!(shown.contains(part), "`{part}` missing from: {shown}");
    }
    assert_eq!(
        fx.rows("items", &["item"]),
        vec![vec![text("A"), text("heavy")]]
    );

    let replacing = Pkg::full(2, vec![after])
        .rows(0, rows.clone())
        .replacing(&["items"]);
    let report = applied(&mut *db, &replacing);
    assert_eq!(report.replaced_tables, ["items"]);
    assert!(report.created_tables.is_empty(), "{report:?}");
    assert_eq!(fx.rows("items", &["item"]), rows);
    // The new definition holds: an integer weight applies, incrementally.
    let next = Pkg::incremental(
        3,
        vec![table(
            "items",
            vec![
                col("item", ColumnType::Integer, false),
                col("weight", ColumnType::Integer, true),
            ],
            &["item"],
        )],
    )
    .rows(0, vec![vec![int(2), int(7)]]);
    applied(&mut *db, &next);
    assert_eq!(
        fx.rows("items", &["item"]),
        vec![vec![int(1), int(12)], vec![int(2), int(7)]]
    );
    assert_eq!(sequences(&mut *db, GROUP), [1, 2, 3]);
}

/// A decimal written through a package that declares another scale than
/// the existing column's reads back in the column's canonical form, as
/// every other value of that column: one spelling per value.
fn decimal_reads_back_in_the_columns_scale(fx: &dyn Fixture) {
    let mut db = fx.open();
    let row = |id: i64, amount: &str| vec![int(id), text(amount), Value::Null];
    let blob = ColumnType::Blob;
    let first = Pkg::full(1, vec![amounts(decimal(10, 4), blob)]).rows(0, vec![row(1, "1.5000")]);
    applied(&mut *db, &first);
    // Coarser (2 digits) and finer (6 digits, trailing zeros) than the column's 4.
    let coarser = Pkg::incremental(2, vec![amounts(decimal(8, 2), blob)])
        .rows(0, vec![row(2, "1.50"), row(3, "-12.00")]);
    applied(&mut *db, &coarser);
    let finer =
        Pkg::incremental(3, vec![amounts(decimal(12, 6), blob)]).rows(0, vec![row(4, "2.250000")]);
    applied(&mut *db, &finer);
    assert_eq!(
        fx.rows("amounts", &["id"]),
        vec![
            row(1, "1.5000"),
            row(2, "1.5000"),
            row(3, "-12.0000"),
            row(4, "2.2500"),
        ]
    );
}

/// A decimal key written through a package that declares another scale
/// than the existing column's matches the row with that number: an upsert
/// updates it, a delete removes it.
fn decimal_key_in_another_scale_is_the_same_row(fx: &dyn Fixture) {
    let mut db = fx.open();
    let rates = |rate: ColumnType| {
        table(
            "rates",
            vec![
                col("rate", rate, false),
                col("label", ColumnType::Text, false),
            ],
            &["rate"],
        )
    };
    let first = Pkg::full(1, vec![rates(decimal(10, 4))]).rows(
        0,
        vec![
            vec![text("1.5000"), text("a")],
            vec![text("2.0000"), text("b")],
        ],
    );
    applied(&mut *db, &first);
    let inc = Pkg::incremental(2, vec![rates(decimal(8, 2))]).table(
        0,
        vec![
            Op::Up(vec![text("1.50"), text("updated")]),
            Op::Del(vec![text("2.00")]),
        ],
    );
    applied(&mut *db, &inc);
    assert_eq!(
        fx.rows("rates", &["rate"]),
        vec![vec![text("1.5000"), text("updated")]]
    );
}

// ---------------------------------------------------------------------------
// Column types
// ---------------------------------------------------------------------------

/// The typed columns of `everything`, each once NOT NULL (`name`) and once
/// nullable (`name_n`).
fn typed_columns() -> Vec<(&'static str, ColumnType)> {
    vec![
        ("i", ColumnType::Integer),
        ("r", ColumnType::Real),
        ("t", ColumnType::Text),
        ("b", ColumnType::Blob),
        ("flag", ColumnType::Boolean),
        ("dec", decimal(10, 2)),
        ("dec38", decimal(38, 4)),
        ("dec0", decimal(38, 0)),
        ("d", ColumnType::Date),
        ("dt", ColumnType::DateTime),
        ("tm", ColumnType::Time),
        ("u", ColumnType::Uuid),
        ("bt", ColumnType::BoundedText { max_len: 4000 }),
        ("bt10", ColumnType::BoundedText { max_len: 10 }),
        ("bb", ColumnType::BoundedBlob { max_len: 8000 }),
    ]
}

fn everything() -> TableSchema {
    let mut columns = vec![col("id", ColumnType::Integer, false)];
    for nullable in [false, true] {
        for (name, ty) in typed_columns() {
            let name = if nullable {
                format!("{name}_n")
            } else {
                name.to_owned()
            };
            columns.push(col(&name, ty, nullable));
        }
    }
    table("everything", columns, &["id"])
}

/// The smallest and emptiest values of each typed column.
fn lows() -> Vec<Value> {
    vec![
        int(i64::MIN),
        Value::Real(-f64::MAX),
        text(""),
        Value::Blob(vec![]),
        int(0),
        text("-99999999.99"),
        text("-9999999999999999999999999999999999.9999"),
        text("-99999999999999999999999999999999999999"),
        text("0001-01-01"),
        text("0001-01-01T00:00:00"),
        text("00:00:00"),
        text("00000000-0000-0000-0000-000000000000"),
        text(""),
        text(""),
        Value::Blob(vec![]),
    ]
}

/// The largest and longest values of each typed column.
fn highs() -> Vec<Value> {
    let long_text: String = "Grüße 日本語 😀 ".chars().cycle().take(10_000).collect();
    let large_blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    // 2 + 3998 UTF-16 units: exactly the limit.
    let max_text = format!("😀{}", "é".repeat(3998));
    vec![
        int(i64::MAX),
        Value::Real(f64::MAX),
        text(&long_text),
        Value::Blob(large_blob),
        int(1),
        text("99999999.99"),
        text("9999999999999999999999999999999999.9999"),
        text("99999999999999999999999999999999999999"),
        text("9999-12-31"),
        text("9999-12-31T23:59:59.9999999"),
        text("23:59:59.9999999"),
        text("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        text(&max_text),
        text("abcdefgh😀"),
        Value::Blob((0..8000u32).map(|i| (i % 251) as u8).collect()),
    ]
}

/// Ordinary values, some that look like SQL.
fn ordinary() -> Vec<Value> {
    vec![
        int(-42),
        Value::Real(0.1),
        text("it's \"quoted\"; DROP TABLE everything; --\n\tÅ ☃ 😀"),
        Value::Blob(vec![0, 1, 2, 0xfe, 0xff]),
        int(0),
        text("-12.50"),
        text("-0.0001"),
        text("0"),
        text("2024-02-29"),
        text("2026-11-24T13:45:07.5"),
        text("12:30:00.0000001"),
        text("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
        text("'; --"),
        text("é"),
        Value::Blob(vec![0]),
    ]
}

fn nulls() -> Vec<Value> {
    vec![Value::Null; typed_columns().len()]
}

fn typed_row(id: i64, not_null: Vec<Value>, nullable: Vec<Value>) -> Vec<Value> {
    let mut row = vec![int(id)];
    row.extend(not_null);
    row.extend(nullable);
    row
}

/// Every column type round-trips: what a package writes reads back equal,
/// with the fixture's own client and through `read_upload_rows`, after an
/// insert and after an update; NULL stays apart from empty text and blob;
/// an integer in a real column reads back as a real.
fn every_column_type_round_trips(fx: &dyn Fixture) {
    let mut db = fx.open();
    let rows = vec![
        typed_row(1, lows(), nulls()),
        typed_row(2, highs(), ordinary()),
        typed_row(3, ordinary(), lows()),
    ];
    applied(
        &mut *db,
        &Pkg::full(1, vec![everything()]).rows(0, rows.clone()),
    );
    let check = |db: &mut dyn ChannelDb, want: &[Vec<Value>], when: &str| {
        let got = fx.rows("everything", &["id"]);
        assert_eq!(got.len(), want.len(), "{when}: row count");
        for (g, w) in got.iter().zip(want) {
            assert_row_eq(g, w, &format!("{when}, read by the fixture"));
        }
        let upload = UploadTable {
            name: "everything".into(),
            counter_column: "id".into(),
        };
        let batch = db.read_upload_rows(&upload, 0, 100).unwrap();
        let names: Vec<String> = everything().columns.into_iter().map(|c| c.name).collect();
        assert_eq!(batch.columns, names, "{when}");
        assert_eq!(batch.rows.len(), want.len(), "{when}: row count");
        for (g, w) in batch.rows.iter().zip(want) {
            assert_row_eq(g, w, &format!("{when}, read by read_upload_rows"));
        }
    };
    check(&mut *db, &rows, "after the full package");

    // An update of every column, an integer into a real column, a delete.
    let mut with_ints = ordinary();
    with_ints[1] = int(7);
    let mut ints_n = nulls();
    ints_n[1] = int(-3);
    let inc = Pkg::incremental(2, vec![everything()]).table(
        0,
        vec![
            Op::Up(typed_row(1, highs(), ordinary())),
            Op::Up(typed_row(4, with_ints, ints_n)),
            Op::Del(vec![int(3)]),
        ],
    );
    applied(&mut *db, &inc);
    let mut as_reals = ordinary();
    as_reals[1] = Value::Real(7.0);
    let mut reals_n = nulls();
    reals_n[1] = Value::Real(-3.0);
    let want = vec![
        typed_row(1, highs(), ordinary()),
        typed_row(2, highs(), ordinary()),
        typed_row(4, as_reals, reals_n),
    ];
    check(&mut *db, &want, "after the incremental package");
}

/// Compares two rows of `everything` column by column, naming the column
/// that differs and showing long values shortened.
fn assert_row_eq(got: &[Value], want: &[Value], when: &str) {
    let names: Vec<String> = everything().columns.into_iter().map(|c| c.name).collect();
    assert_eq!(got.len(), want.len(), "{when}: number of columns");
    for ((g, w), name) in got.iter().zip(want).zip(&names) {
        assert!(
            g == w,
            "{when}: row id={:?}, column `{name}`: got {}, want {}",
            want[0],
            shown(g),
            shown(w)
        );
    }
}

fn shown(v: &Value) -> String {
    let s = format!("{v:?}");
    if s.chars().count() > 120 {
        let head: String = s.chars().take(100).collect();
        format!("{head}... ({} chars)", s.chars().count())
    } else {
        s
    }
}

// ---------------------------------------------------------------------------
// Atomicity, bookkeeping
// ---------------------------------------------------------------------------

/// A row the database refuses (a key twice in a full package) fails the
/// package, wherever it comes, and rolls back every row before it; the
/// error names the table. The connection stays usable.
fn failing_row_rolls_back_the_package(fx: &dyn Fixture) {
    let mut db = fx.open();
    applied(&mut *db, &full_products(1, 3));
    let before = product_rows(fx);
    for duplicate_at in [2, 1500, 4999] {
        let rows = (1..=5000)
            .map(|i| {
                let id = if i == duplicate_at { 1 } else { i };
                product(id, "x", None)
            })
            .collect();
        let pkg = Pkg::full(2, vec![products()]).rows(0, rows);
        let err = refused(&mut *db, &pkg);
        assert!(
            !matches!(
                err,
                ChannelDbError::OutOfOrder { .. } | ChannelDbError::SchemaConflict(_)
            ),
            "duplicate at {duplicate_at}: {err:?}"
        );
        assert!(
            err.to_string().contains("products"),
            "duplicate at {duplicate_at}: the error should name the table: {err}"
        );
        assert_eq!(product_rows(fx), before, "duplicate at {duplicate_at}");
        assert_eq!(sequences(&mut *db, GROUP), [1]);
    }
    applied(&mut *db, &full_products(2, 5000));
    assert_eq!(db.row_count("products").unwrap(), 5000);
}

/// Each data group has its own sequence; `applied_packages` lists a
/// group's packages in sequence order with id, job, kind and rows;
/// `last_applied_sequence` is 0 for a group with none.
fn applied_packages_per_data_group_in_sequence_order(fx: &dyn Fixture) {
    let started_ms = now_ms();
    let mut db = fx.open();
    assert!(db.applied_packages(GROUP).unwrap().is_empty());
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 0);

    let other = "store-0002";
    let a2 = full_products(2, 1);
    let b1 = Pkg::full(1, vec![tags()])
        .in_group(other)
        .with_job("1010")
        .rows(0, vec![tag(1, "a")]);
    let a5 = Pkg::incremental(5, vec![products()]).table(
        0,
        vec![
            Op::Up(product(9, "nine", None)),
            Op::Del(vec![int(1)]),
            Op::Del(vec![int(2)]),
        ],
    );
    // Same sequence as a package of the first group.
    let b2 = Pkg::incremental(2, vec![tags()])
        .in_group(other)
        .with_job("1010")
        .table(0, vec![Op::Up(tag(2, "b"))]);
    // No tables at all.
    let a7 = Pkg::full(7, vec![]).with_job("1070");
    for pkg in [&a2, &b1, &a5, &b2, &a7] {
        applied(&mut *db, pkg);
    }

    let log = db.applied_packages(GROUP).unwrap();
    let summary: Vec<_> = log
        .iter()
        .map(|p| {
            (
                p.package_id,
                p.data_group.as_str(),
                p.job.as_str(),
                p.sequence,
                p.kind,
                p.rows,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (a2.id(), GROUP, JOB, 2, PackageKind::Full, 1),
            (a5.id(), GROUP, JOB, 5, PackageKind::Incremental, 3),
            (a7.id(), GROUP, "1070", 7, PackageKind::Full, 0),
        ]
    );
    let end_ms = now_ms();
    for p in &log {
        // The database's clock may differ from this one by a little.
        let slack = 10 * 60 * 1000;
        assert!(
            (started_ms - slack..=end_ms + slack).contains(&p.applied_at_ms),
            "applied_at_ms {} not near now ({started_ms}..{end_ms})",
            p.applied_at_ms
        );
    }
    assert_eq!(sequences(&mut *db, other), [1, 2]);
    let b_log = db.applied_packages(other).unwrap();
    assert_eq!(
        b_log.iter().map(|p| p.package_id).collect::<Vec<_>>(),
        [b1.id(), b2.id()]
    );
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 7);
    assert_eq!(db.last_applied_sequence(other).unwrap(), 2);
    assert_eq!(db.last_applied_sequence("store-0003").unwrap(), 0);

    // Refused in one group, still applies in the other.
    assert!(matches!(
        refused(&mut *db, &full_products(3, 1)),
        ChannelDbError::OutOfOrder { .. }
    ));
    let b3 = Pkg::full(3, vec![tags()]).in_group(other);
    applied(&mut *db, &b3);
    assert_eq!(sequences(&mut *db, GROUP), [2, 5, 7]);
    assert_eq!(sequences(&mut *db, other), [1, 2, 3]);
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit i64")
}

// ---------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------

fn sales_table() -> UploadTable {
    UploadTable {
        name: "sales".into(),
        counter_column: "counter".into(),
    }
}

/// An upload table `sales` with 10 rows: receipts `r1`..`r10`, amounts
/// `i/2` for even `i`, NULL for odd.
fn sales(fx: &dyn Fixture) -> UploadTable {
    let table = sales_table();
    fx.create_upload_table(&table.name, &table.counter_column);
    let amounts: Vec<(String, Option<String>)> = (1..=10)
        .map(|i| {
            let amount = (i % 2 == 0).then(|| format!("{}.0000", i / 2));
            (format!("r{i}"), amount)
        })
        .collect();
    let sales: Vec<(&str, Option<&str>)> = amounts
        .iter()
        .map(|(r, a)| (r.as_str(), a.as_deref()))
        .collect();
    fx.insert_sales(&table.name, &sales);
    table
}

/// Upload rows come above the given counter, in counter order, at most
/// `limit`, with the counters of the first and last; reading does not move
/// the watermark.
fn upload_rows_in_counter_order_with_limits(fx: &dyn Fixture) {
    let table = sales(fx);
    let mut db = fx.open();
    let batch = db.read_upload_rows(&table, 0, 4).unwrap();
    assert_eq!(batch.columns, ["counter", "receipt", "amount"]);
    assert_eq!(batch.counters, Some((1, 4)));
    assert_eq!(batch.rows.len(), 4);
    assert_eq!(batch.rows[0], vec![int(1), text("r1"), Value::Null]);
    assert_eq!(batch.rows[1], vec![int(2), text("r2"), text("1.0000")]);
    assert_eq!(batch.rows[3], vec![int(4), text("r4"), text("2.0000")]);

    let batch = db.read_upload_rows(&table, 4, 100).unwrap();
    assert_eq!(batch.counters, Some((5, 10)));
    let counters: Vec<_> = batch.rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(counters, (5..=10).map(int).collect::<Vec<_>>());

    let batch = db.read_upload_rows(&table, 7, 2).unwrap();
    assert_eq!(batch.counters, Some((8, 9)));
    assert_eq!(batch.rows.len(), 2);

    let batch = db.read_upload_rows(&table, 10, 100).unwrap();
    assert_eq!((batch.rows.len(), batch.counters), (0, None));
    assert_eq!(batch.columns, ["counter", "receipt", "amount"]);
    let batch = db.read_upload_rows(&table, 0, 0).unwrap();
    assert_eq!((batch.rows.len(), batch.counters), (0, None));

    let all = db.read_upload_rows(&table, -1, 1000).unwrap();
    assert_eq!(all.rows, fx.rows("sales", &["counter"]));
    assert_eq!(all.rows.len(), 10);
    assert_eq!(db.watermark("sales").unwrap(), 0);

    // Rows inserted later come after, with higher counters.
    fx.insert_sales("sales", &[("r11", Some("-12.5000"))]);
    let batch = db.read_upload_rows(&table, 10, 100).unwrap();
    assert_eq!(batch.counters, Some((11, 11)));
    assert_eq!(
        batch.rows,
        vec![vec![int(11), text("r11"), text("-12.5000")]]
    );
}

/// Reading from a missing table or counter column names it.
fn upload_rows_of_unknown_table_or_column(fx: &dyn Fixture) {
    let table = sales(fx);
    let mut db = fx.open();
    let missing = UploadTable {
        name: "nope".into(),
        counter_column: "counter".into(),
    };
    match db.read_upload_rows(&missing, 0, 1) {
        Err(ChannelDbError::UnknownTable { table }) => assert_eq!(table, "nope"),
        other => panic!("expected UnknownTable, got {other:?}"),
    }
    let bad_column = UploadTable {
        counter_column: "rowversion".into(),
        ..table
    };
    match db.read_upload_rows(&bad_column, 0, 1) {
        Err(ChannelDbError::UnknownColumn { table, column }) => {
            assert_eq!((table.as_str(), column.as_str()), ("sales", "rowversion"))
        }
        other => panic!("expected UnknownColumn, got {other:?}"),
    }
    assert_no_table(&mut *db, "nope");
}

/// The watermark starts at 0, moves forward, never back, per table, and
/// survives reopening.
fn watermark_never_moves_back_and_survives_reopening(fx: &dyn Fixture) {
    let _ = sales(fx);
    let mut db = fx.open();
    assert_eq!(db.watermark("sales").unwrap(), 0);
    db.advance_watermark("sales", 10).unwrap();
    assert_eq!(db.watermark("sales").unwrap(), 10);
    db.advance_watermark("sales", 4).unwrap();
    assert_eq!(db.watermark("sales").unwrap(), 10);
    db.advance_watermark("sales", 10).unwrap();
    assert_eq!(db.watermark("sales").unwrap(), 10);
    db.advance_watermark("sales", 11).unwrap();
    assert_eq!(db.watermark("sales").unwrap(), 11);
    // Another table's is its own, table or not.
    assert_eq!(db.watermark("lines").unwrap(), 0);
    db.advance_watermark("lines", 3).unwrap();
    assert_eq!(db.watermark("lines").unwrap(), 3);
    assert_eq!(db.watermark("sales").unwrap(), 11);
    drop(db);

    let mut db = fx.open();
    assert_eq!(db.watermark("sales").unwrap(), 11);
    assert_eq!(db.watermark("lines").unwrap(), 3);
    db.advance_watermark("sales", 1).unwrap();
    assert_eq!(db.watermark("sales").unwrap(), 11);
}

/// Names that are not identifiers are refused as such and never reach SQL.
fn hostile_identifiers_are_refused(fx: &dyn Fixture) {
    let table = sales(fx);
    let mut db = fx.open();
    applied(&mut *db, &full_products(1, 2));
    for hostile in [
        "x; DROP TABLE sales",
        "sales\"; DROP TABLE sales; --",
        "sales]; DROP TABLE sales; --",
        "sales' OR '1'='1",
        "",
    ] {
        let is_invalid = |r: ChannelDbError| {
            assert!(
                matches!(&r, ChannelDbError::InvalidIdentifier { name } if name == hostile),
                "{hostile:?}: {r:?}"
            );
        };
        let t = UploadTable {
            name: hostile.into(),
            counter_column: "counter".into(),
        };
        is_invalid(db.read_upload_rows(&t, 0, 1).unwrap_err());
        let c = UploadTable {
            counter_column: hostile.into(),
            ..table.clone()
        };
        is_invalid(db.read_upload_rows(&c, 0, 1).unwrap_err());
        is_invalid(db.row_count(hostile).unwrap_err());
        is_invalid(db.watermark(hostile).unwrap_err());
        is_invalid(db.advance_watermark(hostile, 1).unwrap_err());
    }
    assert_eq!(db.read_upload_rows(&table, 0, 100).unwrap().rows.len(), 10);
    assert_eq!(db.row_count("products").unwrap(), 2);
    assert_eq!(db.watermark("sales").unwrap(), 0);
}

/// A second connection sees what the first committed, and the other way
/// round, while both are open and after reopening.
fn second_connection_sees_committed_state(fx: &dyn Fixture) {
    let table = sales(fx);
    let mut a = fx.open();
    applied(&mut *a, &full_products(1, 3));
    a.advance_watermark("sales", 4).unwrap();

    let mut b = fx.open();
    assert_eq!(b.last_applied_sequence(GROUP).unwrap(), 1);
    assert_eq!(sequences(&mut *b, GROUP), [1]);
    assert_eq!(b.row_count("products").unwrap(), 3);
    assert_eq!(b.watermark("sales").unwrap(), 4);
    assert_eq!(
        b.read_upload_rows(&table, 4, 100).unwrap().counters,
        Some((5, 10))
    );

    let inc = Pkg::incremental(2, vec![products()]).table(
        0,
        vec![Op::Up(product(4, "four", None)), Op::Del(vec![int(1)])],
    );
    applied(&mut *b, &inc);
    b.advance_watermark("sales", 8).unwrap();
    assert_eq!(a.last_applied_sequence(GROUP).unwrap(), 2);
    assert_eq!(a.row_count("products").unwrap(), 3);
    assert_eq!(a.watermark("sales").unwrap(), 8);
    assert_eq!(apply(&mut *a, &inc).unwrap(), ApplyOutcome::AlreadyApplied);
    drop((a, b));

    let mut c = fx.open();
    assert_eq!(sequences(&mut *c, GROUP), [1, 2]);
    assert_eq!(c.watermark("sales").unwrap(), 8);
    assert_eq!(
        product_rows(fx),
        vec![
            product(2, "p2", Some(2.0)),
            product(3, "p3", Some(3.0)),
            product(4, "four", None),
        ]
    );
}

// ---------------------------------------------------------------------------
// Names and sizes
// ---------------------------------------------------------------------------

/// Words SQL reserves are identifiers like any other for a package: a
/// table `Order` with columns `Key`, `User` and `Index` syncs like any.
fn sql_keywords_are_names_like_any(fx: &dyn Fixture) {
    let mut db = fx.open();
    let order = table(
        "Order",
        vec![
            col("Key", ColumnType::Integer, false),
            col("User", ColumnType::Text, false),
            col("Index", ColumnType::Integer, true),
        ],
        &["Key"],
    );
    let row = |key: i64, user: &str, index: Option<i64>| {
        vec![int(key), text(user), index.map_or(Value::Null, int)]
    };
    let full = Pkg::full(1, vec![order.clone()]).rows(
        0,
        vec![
            row(1, "ana", Some(7)),
            row(2, "ben", None),
            row(3, "cy", None),
        ],
    );
    applied(&mut *db, &full);
    let inc = Pkg::incremental(2, vec![order]).table(
        0,
        vec![Op::Up(row(2, "benedict", Some(1))), Op::Del(vec![int(3)])],
    );
    applied(&mut *db, &inc);
    assert_eq!(
        fx.rows("Order", &["Key"]),
        vec![row(1, "ana", Some(7)), row(2, "benedict", Some(1))]
    );
    assert_eq!(db.row_count("Order").unwrap(), 2);
}

/// A package far larger than any batch a backend writes at once: a key
/// upserted near the start and deleted near the end, another deleted and
/// then upserted again, tens of thousands of rows apart, end as the
/// package's order says.
fn a_key_changed_far_apart_in_a_large_package(fx: &dyn Fixture) {
    const ROWS: i64 = 120_000;
    let mut db = fx.open();
    applied(
        &mut *db,
        &Pkg::full(1, vec![products()]).rows(0, products_rows(1..=ROWS)),
    );
    let mut ops: Vec<Op> = (1..=ROWS)
        .map(|id| Op::Up(product(id, "changed", Some(id as f64))))
        .collect();
    ops.insert(1, Op::Del(vec![int(ROWS)]));
    ops.push(Op::Del(vec![int(1)]));
    let report = applied(
        &mut *db,
        &Pkg::incremental(2, vec![products()]).table(0, ops),
    );
    assert_eq!((report.upserts, report.deletes), (ROWS as u64, 2));
    assert_eq!(db.row_count("products").unwrap(), ROWS as u64 - 1);
    let rows = product_rows(fx);
    assert_eq!(rows.first(), Some(&product(2, "changed", Some(2.0))));
    // Deleted second, upserted again last of all: back.
    assert_eq!(
        rows.last(),
        Some(&product(ROWS, "changed", Some(ROWS as f64)))
    );
}
