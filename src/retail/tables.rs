//! The retail tables: schemas and row generators.
//!
//! Every row is a pure function of the seed, the row's id and its version
//! (the incremental round that last changed it), so a generator never needs
//! another's output and two runs with the same seed produce the same rows.

use std::ops::RangeInclusive;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::package::{format_decimal, Column, ColumnType, TableSchema, Value};

/// 2024-01-01T00:00:00Z: rows of version 0 were last updated then.
const BASE_TIME_MS: i64 = 1_704_067_200_000;
const DAY_MS: i64 = 86_400_000;

// Salts that keep the random streams of different tables apart.
const PRODUCT: u64 = 1;
const PRODUCT_VERSION: u64 = 2;
const STORE: u64 = 3;
const STORE_PRICE: u64 = 4;
const CUSTOMER: u64 = 5;
const CUSTOMER_VERSION: u64 = 6;
const STAFF: u64 = 7;

/// A random stream for row `id` of the table `salt`.
pub(super) fn rng_for(seed: u64, salt: u64, id: u64) -> StdRng {
    let mixed = seed
        ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ id.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(17);
    StdRng::seed_from_u64(mixed)
}

fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column::new(name, ty, nullable)
}

fn schema(name: &str, columns: Vec<Column>, key: &[&str]) -> TableSchema {
    TableSchema {
        name: name.to_owned(),
        columns,
        key: key.iter().map(|k| (*k).to_owned()).collect(),
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn int(i: u64) -> Value {
    Value::Integer(i64::try_from(i).unwrap_or(i64::MAX))
}

/// Amounts as AX keeps them: exact, four digits after the point.
const MONEY: ColumnType = ColumnType::Decimal {
    precision: 19,
    scale: 4,
};

/// `x`, already rounded to cents, as a `MONEY` value.
fn money(x: f64) -> Value {
    Value::Text(format_decimal((x * 100.0).round() as i128 * 100, 4))
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from.choose(rng).copied().unwrap_or_default()
}

fn updated_at(version: u64) -> Value {
    Value::Integer(BASE_TIME_MS + DAY_MS * i64::try_from(version).unwrap_or(0))
}

// === products (job 1040) ===

const CATEGORIES: [(&str, &[&str]); 6] = [
    ("Dairy", &["Milk", "Yoghurt", "Butter", "Cheddar", "Cream"]),
    (
        "Bakery",
        &["Bread", "Bagels", "Croissant", "Muffin", "Rolls"],
    ),
    (
        "Produce",
        &["Apples", "Bananas", "Carrots", "Tomatoes", "Spinach"],
    ),
    (
        "Beverages",
        &["Coffee", "Tea", "Orange Juice", "Sparkling Water", "Cola"],
    ),
    (
        "Household",
        &["Detergent", "Paper Towels", "Sponges", "Bin Bags", "Soap"],
    ),
    (
        "Snacks",
        &["Crisps", "Pretzels", "Chocolate", "Nuts", "Cookies"],
    ),
];
const ADJECTIVES: [&str; 6] = ["Organic", "Classic", "Premium", "Fresh", "Value", "Family"];
const UNITS: [&str; 4] = ["ea", "kg", "l", "pack"];

/// `products`: one row per item (job 1040).
pub fn products_table() -> TableSchema {
    use ColumnType::*;
    schema(
        "products",
        vec![
            column("product_id", Integer, false),
            column("item_id", BoundedText { max_len: 20 }, false),
            column("name", BoundedText { max_len: 60 }, false),
            column("category", BoundedText { max_len: 30 }, false),
            column("unit", BoundedText { max_len: 10 }, false),
            column("price", MONEY, false),
            column("description", Text, true),
            column("updated_at_ms", Integer, false),
        ],
        &["product_id"],
    )
}

/// The list price of product `id` before any change.
fn base_price(seed: u64, id: u64) -> f64 {
    cents(rng_for(seed, PRODUCT, id).gen_range(0.5..80.0))
}

/// Product `id` as of `version` (0: as first published; n: as changed in
/// incremental round n, which changes the price).
pub fn product_row(seed: u64, id: u64, version: u64) -> Vec<Value> {
    let mut rng = rng_for(seed, PRODUCT, id);
    let mut price = cents(rng.gen_range(0.5..80.0));
    let (category, nouns) = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
    let name = format!("{} {}", pick(&mut rng, &ADJECTIVES), pick(&mut rng, nouns));
    let unit = pick(&mut rng, &UNITS);
    let description = rng
        .gen_bool(0.7)
        .then(|| format!("{name}, {unit}, item {id}"));
    if version > 0 {
        let factor = rng_for(seed, PRODUCT_VERSION ^ (version << 8), id).gen_range(0.8..1.25);
        price = cents(price * factor);
    }
    vec![
        int(id),
        text(format!("ITM-{id:06}")),
        text(name),
        text(category),
        text(unit),
        money(price),
        description.map_or(Value::Null, Value::Text),
        updated_at(version),
    ]
}

/// Products `ids` at `version`.
pub fn product_rows(
    seed: u64,
    ids: RangeInclusive<u64>,
    version: u64,
) -> impl Iterator<Item = Vec<Value>> + Send {
    ids.map(move |id| product_row(seed, id, version))
}

// === prices (job 1040) ===

/// `prices`: a price per product and store, in the store's currency.
pub fn prices_table() -> TableSchema {
    use ColumnType::*;
    schema(
        "prices",
        vec![
            column("product_id", Integer, false),
            column("store_id", Integer, false),
            column("price", MONEY, false),
            column("currency", BoundedText { max_len: 3 }, false),
        ],
        &["product_id", "store_id"],
    )
}

/// The price of `product_id` at `store_id`; `change` > 0 is the
/// price change of that number.
pub fn price_row(seed: u64, product_id: u64, store_id: u64, change: u64) -> Vec<Value> {
    let salt = STORE_PRICE ^ (store_id << 8) ^ (change << 40);
    let factor = rng_for(seed, salt, product_id).gen_range(0.9..1.15);
    vec![
        int(product_id),
        int(store_id),
        money(cents(base_price(seed, product_id) * factor)),
        text(store_place(seed, store_id).1),
    ]
}

/// Prices of products `ids` at each of stores `1..=stores`.
pub fn price_rows(
    seed: u64,
    ids: RangeInclusive<u64>,
    stores: u64,
) -> impl Iterator<Item = Vec<Value>> + Send {
    ids.flat_map(move |id| (1..=stores).map(move |store| price_row(seed, id, store, 0)))
}

// === barcodes (job 1040) ===

/// `barcodes`: one EAN-13 per product.
pub fn barcodes_table() -> TableSchema {
    use ColumnType::*;
    schema(
        "barcodes",
        vec![
            column("barcode", BoundedText { max_len: 20 }, false),
            column("product_id", Integer, false),
            column("quantity", MONEY, false),
        ],
        &["barcode"],
    )
}

/// The in-store EAN-13 of product `id` (prefix 20, check digit computed).
pub fn ean13(id: u64) -> String {
    let body = format!("20{:010}", id % 10_000_000_000);
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Barcodes of products `ids`.
pub fn barcode_rows(ids: RangeInclusive<u64>) -> impl Iterator<Item = Vec<Value>> + Send {
    ids.map(|id| vec![text(ean13(id)), int(id), money(1.0)])
}

// === stores (job 1070) ===

const CITIES: [(&str, &str, &str); 8] = [
    ("Seattle", "USD", "US-WA"),
    ("Portland", "USD", "US-OR"),
    ("Chicago", "USD", "US-IL"),
    ("Toronto", "CAD", "CA-ON"),
    ("London", "GBP", "GB-STD"),
    ("Berlin", "EUR", "DE-STD"),
    ("Paris", "EUR", "FR-STD"),
    ("Amsterdam", "EUR", "NL-STD"),
];

/// City, currency and tax group of store `id`.
fn store_place(seed: u64, id: u64) -> (&'static str, &'static str, &'static str) {
    CITIES[rng_for(seed, STORE, id).gen_range(0..CITIES.len())]
}

/// `stores`: the channels (job 1070).
pub fn stores_table() -> TableSchema {
    use ColumnType::*;
    schema(
        "stores",
        vec![
            column("store_id", Integer, false),
            column("name", BoundedText { max_len: 60 }, false),
            column("city", BoundedText { max_len: 30 }, false),
            column("currency", BoundedText { max_len: 3 }, false),
            column("tax_group", BoundedText { max_len: 10 }, false),
        ],
        &["store_id"],
    )
}

/// Stores `1..=count`.
pub fn store_rows(seed: u64, count: u64) -> impl Iterator<Item = Vec<Value>> + Send {
    (1..=count).map(move |id| {
        let (city, currency, tax_group) = store_place(seed, id);
        vec![
            int(id),
            text(format!("{city} #{id}")),
            text(city),
            text(currency),
            text(tax_group),
        ]
    })
}

// === customers (job 1010) ===

const FIRST: [&str; 10] = [
    "Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas",
];
const LAST: [&str; 10] = [
    "Smith", "Garcia", "Chen", "Okafor", "Muller", "Rossi", "Kowalski", "Tanaka", "Silva", "Novak",
];
const TIERS: [&str; 4] = ["None", "Silver", "Gold", "Platinum"];

/// `customers`: loyalty customers (job 1010).
pub fn customers_table() -> TableSchema {
    use ColumnType::*;
    schema(
        "customers",
        vec![
            column("customer_id", Integer, false),
            column("account_num", BoundedText { max_len: 20 }, false),
            column("name", BoundedText { max_len: 100 }, false),
            column("email", BoundedText { max_len: 254 }, true),
            column("phone", BoundedText { max_len: 20 }, true),
            column("city", BoundedText { max_len: 30 }, false),
            column("loyalty_tier", BoundedText { max_len: 10 }, false),
        ],
        &["customer_id"],
    )
}

/// Customer `id` as of `version` (a change moves the phone and the tier).
pub fn customer_row(seed: u64, id: u64, version: u64) -> Vec<Value> {
    let mut rng = rng_for(seed, CUSTOMER, id);
    let (first, last) = (pick(&mut rng, &FIRST), pick(&mut rng, &LAST));
    let city = CITIES[rng.gen_range(0..CITIES.len())].0;
    let email = rng.gen_bool(0.8).then(|| {
        format!(
            "{}.{}{id}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        )
    });
    let mut changed = rng_for(seed, CUSTOMER_VERSION ^ (version << 8), id);
    let phone = changed
        .gen_bool(0.6)
        .then(|| format!("+1-555-{:04}", changed.gen_range(0..10_000)));
    vec![
        int(id),
        text(format!("C{id:08}")),
        text(format!("{first} {last}")),
        email.map_or(Value::Null, Value::Text),
        phone.map_or(Value::Null, Value::Text),
        text(city),
        text(pick(&mut changed, &TIERS)),
    ]
}

/// Customers `ids` at `version`.
pub fn customer_rows(
    seed: u64,
    ids: RangeInclusive<u64>,
    version: u64,
) -> impl Iterator<Item = Vec<Value>> + Send {
    ids.map(move |id| customer_row(seed, id, version))
}

// === staff (job 1060) ===

const ROLES: [&str; 3] = ["Cashier", "Manager", "Stock"];

/// `staff`: workers and their POS logins (job 1060).
pub fn staff_table() -> TableSchema {
    use ColumnType::*;
    schema(
        "staff",
        vec![
            column("staff_id", Integer, false),
            column("name", BoundedText { max_len: 60 }, false),
            column("role", BoundedText { max_len: 20 }, false),
            column("store_id", Integer, true),
            column("password_hash", BoundedText { max_len: 64 }, false),
        ],
        &["staff_id"],
    )
}

/// Staff `1..=count`, spread over stores `1..=stores` (no store when 0).
pub fn staff_rows(seed: u64, count: u64, stores: u64) -> impl Iterator<Item = Vec<Value>> + Send {
    (1..=count).map(move |id| {
        let mut rng = rng_for(seed, STAFF, id);
        let name = format!("{} {}", pick(&mut rng, &FIRST), pick(&mut rng, &LAST));
        let role = if id % 10 == 1 {
            ROLES[1]
        } else {
            pick(&mut rng, &ROLES)
        };
        let store = if stores == 0 {
            Value::Null
        } else {
            int((id - 1) % stores + 1)
        };
        let hash = Sha256::digest(format!("{seed}:{id}:{}", rng.gen::<u64>()));
        vec![
            int(id),
            text(name),
            text(role),
            store,
            text(hex::encode(hash)),
        ]
    })
}
