//! Publish inputs: JSON Lines and CSV files, streamed record by record.
//!
//! A JSON Lines file holds one object per line, keyed by column; a CSV file
//! has a header row. The format follows the extension (`.jsonl`, `.ndjson`,
//! `.csv`). Columns come from `--columns` or are inferred from the first
//! record (see [`infer_columns`]). Every record is checked against its
//! columns; the first one that does not fit fails the whole publication with
//! its file, line and column.
//!
//! JSON numbers are taken from their literal text (serde_json's
//! `arbitrary_precision`): a real is the `f64` nearest to what is written,
//! bit for bit, and a decimal is the digits written, never a float's.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::error::ServerError;
use super::publish::PublishSpec;
use super::store::Store;
use cdx::package::{Column, ColumnType, PackageError, PackageKind, TableSchema, Value};
use cdx::protocol::PackageInfo;

/// One table of a publication and the files it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInput {
    pub name: String,
    /// The rows to upsert.
    pub path: PathBuf,
    /// The primary-key columns, in order.
    pub key: Vec<String>,
    /// The columns, or `None` to infer them from the first record.
    pub columns: Option<Vec<Column>>,
    /// Key values of rows to delete (incremental packages only).
    pub deletes: Option<PathBuf>,
}

/// A publication from files, as `cdx-server publish` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFiles {
    pub data_group: String,
    pub job: String,
    pub kind: PackageKind,
    pub tables: Vec<TableInput>,
    /// How CSV files spell NULL (JSON Lines has its own `null`).
    pub csv_null: CsvNull,
    /// The tables whose definition this full package replaces
    /// (`--replace-definition`).
    pub replaces: Vec<String>,
}

/// How a CSV field says NULL. CSV has no null of its own, and exporters
/// disagree: most write NULL as an empty field, PostgreSQL's and MySQL's
/// text formats as `\N`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CsvNull {
    /// The default: an empty field is NULL in a nullable column (and the
    /// empty string in a NOT NULL text column). A nullable text column
    /// cannot hold the empty string.
    #[default]
    EmptyField,
    /// A field that is exactly this text is NULL; an empty field is the
    /// empty string (and an error in a column of another type).
    Marker(String),
}

impl CsvNull {
    /// `--null-marker`'s value: none is the default, `""` spells it out.
    pub fn from_arg(marker: Option<&str>) -> CsvNull {
        match marker {
            None | Some("") => CsvNull::EmptyField,
            Some(marker) => CsvNull::Marker(marker.to_owned()),
        }
    }
}

impl PublishFiles {
    /// Assembles a publication from the command line's `NAME=VALUE`
    /// arguments: `tables` (`products=products.jsonl`, in package order),
    /// `keys` (`products=id` or `prices=product_id,store_id`), `columns`
    /// (`products=id:integer,name:text,note:text?`) and `deletes`
    /// (`products=deleted.jsonl`).
    pub fn from_args(
        data_group: &str,
        job: &str,
        kind: PackageKind,
        tables: &[String],
        keys: &[String],
        columns: &[String],
        deletes: &[String],
    ) -> Result<PublishFiles, ServerError> {
        let mut inputs: Vec<TableInput> = Vec::new();
        for arg in tables {
            let (name, path) = split_assignment("--table", arg)?;
            if inputs.iter().any(|t| t.name == name) {
                return Err(ServerError::Invalid(format!(
                    "table `{name}` is given twice"
                )));
            }
            inputs.push(TableInput {
                name: name.to_owned(),
                path: PathBuf::from(path),
                key: Vec::new(),
                columns: None,
                deletes: None,
            });
        }
        if inputs.is_empty() {
            return Err(ServerError::Invalid("no --table given".into()));
        }
        for arg in keys {
            let (name, key) = split_assignment("--key", arg)?;
            let table = find_table(&mut inputs, "--key", name)?;
            table.key = key.split(',').map(|k| k.trim().to_owned()).collect();
        }
        for arg in columns {
            let (name, spec) = split_assignment("--columns", arg)?;
            find_table(&mut inputs, "--columns", name)?.columns = Some(parse_columns(spec)?);
        }
        for arg in deletes {
            let (name, path) = split_assignment("--delete", arg)?;
            find_table(&mut inputs, "--delete", name)?.deletes = Some(PathBuf::from(path));
        }
        if let Some(table) = inputs.iter().find(|t| t.key.is_empty()) {
            return Err(ServerError::Invalid(format!(
                "no --key for table `{}` (e.g. --key {}=id)",
                table.name, table.name
            )));
        }
        Ok(PublishFiles {
            data_group: data_group.to_owned(),
            job: job.to_owned(),
            kind,
            tables: inputs,
            csv_null: CsvNull::default(),
            replaces: Vec::new(),
        })
    }

    /// Marks `tables` (`--replace-definition`) as tables whose definition
    /// the package replaces: each store drops the table and creates it as
    /// the package says. Only a full package can, and only its own tables.
    ///
    /// # Errors
    /// An incremental package, or a name that is not one of its tables.
    pub fn replace_definitions(&mut self, tables: &[String]) -> Result<(), ServerError> {
        if tables.is_empty() {
            return Ok(());
        }
        if self.kind != PackageKind::Full {
            return Err(ServerError::Invalid(
                "--replace-definition needs --kind full: only a full package brings every row \
                 of the table it creates again"
                    .into(),
            ));
        }
        for name in tables {
            let Some(table) = self
                .tables
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(name))
            else {
                return Err(ServerError::Invalid(format!(
                    "--replace-definition `{name}` is not a --table of this package"
                )));
            };
            if !self.replaces.contains(&table.name) {
                self.replaces.push(table.name.clone());
            }
        }
        Ok(())
    }
}

fn split_assignment<'a>(flag: &str, arg: &'a str) -> Result<(&'a str, &'a str), ServerError> {
    match arg.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name, value)),
        _ => Err(ServerError::Invalid(format!(
            "{flag} `{arg}`: expected TABLE=VALUE"
        ))),
    }
}

fn find_table<'a>(
    inputs: &'a mut [TableInput],
    flag: &str,
    name: &str,
) -> Result<&'a mut TableInput, ServerError> {
    inputs.iter_mut().find(|t| t.name == name).ok_or_else(|| {
        ServerError::Invalid(format!(
            "{flag} names table `{name}`, which no --table gives"
        ))
    })
}

/// Parses `id:integer,name:text(60),price:decimal(32,6),note:text?`: the
/// types are those `ColumnType` parses (integer, real, text, text(N), blob,
/// blob(N), boolean, decimal(P,S), date, datetime, time, uuid); a `?` suffix
/// makes a column nullable.
pub fn parse_columns(spec: &str) -> Result<Vec<Column>, ServerError> {
    let mut columns: Vec<Column> = Vec::new();
    for item in split_outside_parentheses(spec) {
        let bad = |why: &str| ServerError::Invalid(format!("column `{item}` in `{spec}`: {why}"));
        let (name, ty) = item
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("expected NAME:TYPE"))?;
        let (ty, nullable) = match ty.strip_suffix('?') {
            Some(ty) => (ty, true),
            None => (ty, false),
        };
        let ty: ColumnType = ty.parse().map_err(|why: String| bad(&why))?;
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        if columns.iter().any(|c| c.name == name) {
            return Err(bad("the column is given twice"));
        }
        columns.push(Column {
            name: name.to_owned(),
            ty,
            nullable,
        });
    }
    Ok(columns)
}

/// `spec` cut at the commas that are not inside parentheses, so that
/// `price:decimal(32,6)` stays one item.
fn split_outside_parentheses(spec: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0u32, 0);
    for (i, c) in spec.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&spec[start..]);
    items
}

/// Input formats, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    JsonLines,
    Csv,
}

impl InputFormat {
    pub fn of(path: &Path) -> Result<InputFormat, ServerError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl" | "ndjson") => Ok(InputFormat::JsonLines),
            Some("csv") => Ok(InputFormat::Csv),
            _ => Err(ServerError::Invalid(format!(
                "{}: unknown input format; use a .jsonl or .csv file",
                path.display()
            ))),
        }
    }
}

/// The columns of `path` from its first record. JSON: integer numbers →
/// integer, other numbers → real, strings → text, booleans → integer,
/// `{"base64": ...}` → blob, null → nullable text; columns in the record's
/// key order. CSV: every header field is a text column.
pub fn infer_columns(path: &Path) -> Result<Vec<Column>, ServerError> {
    match InputFormat::of(path)? {
        InputFormat::Csv => {
            let reader = open_csv(path)?;
            let mut reader = reader;
            let headers = reader.headers().map_err(|e| csv_error(path, e))?;
            Ok(headers
                .iter()
                .map(|name| Column {
                    name: name.to_owned(),
                    ty: ColumnType::Text,
                    nullable: false,
                })
                .collect())
        }
        InputFormat::JsonLines => {
            let mut lines = JsonLines::open(path)?;
            let Some((line, object)) = lines.next_object()? else {
                return Err(ServerError::record(
                    path,
                    1,
                    "no record to infer the columns from; pass --columns",
                ));
            };
            object
                .0
                .into_iter()
                .map(|(name, value)| {
                    let (ty, nullable) = match &value {
                        serde_json::Value::Number(n) if n.is_i64() => (ColumnType::Integer, false),
                        serde_json::Value::Number(_) => (ColumnType::Real, false),
                        serde_json::Value::String(_) => (ColumnType::Text, false),
                        serde_json::Value::Bool(_) => (ColumnType::Integer, false),
                        serde_json::Value::Null => (ColumnType::Text, true),
                        v if base64_of(v).is_some() => (ColumnType::Blob, false),
                        v => {
                            return Err(ServerError::Record {
                                file: path.to_owned(),
                                line,
                                column: Some(name),
                                problem: format!(
                                    "cannot infer a column type from {v}; pass --columns"
                                ),
                            })
                        }
                    };
                    Ok(Column { name, ty, nullable })
                })
                .collect::<Result<Vec<_>, _>>()
        }
    }
}

/// How far a publication is, told every [`PROGRESS_RECORDS`] records and
/// at the end of each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishProgress {
    /// Records read, all files so far.
    pub records: u64,
    /// Input bytes read, all files so far, of `input_total`.
    pub input_read: u64,
    pub input_total: u64,
    /// Uncompressed package bytes encoded so far.
    pub encoded: u64,
}

/// Records between two progress calls.
pub const PROGRESS_RECORDS: u64 = 8_192;

/// Publishes `files`: checks the schemas, then streams every file into one
/// package. Any bad record fails the whole publication (nothing published).
pub fn publish_files(store: &Store, files: &PublishFiles) -> Result<PackageInfo, ServerError> {
    publish_files_with_progress(store, files, &mut |_| {})
}

/// [`publish_files`], telling `progress` how far it is.
pub fn publish_files_with_progress(
    store: &Store,
    files: &PublishFiles,
    progress: &mut dyn FnMut(PublishProgress),
) -> Result<PackageInfo, ServerError> {
    let input_total = files
        .tables
        .iter()
        .flat_map(|t| std::iter::once(&t.path).chain(t.deletes.as_ref()))
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut told = PublishProgress {
        records: 0,
        input_read: 0,
        input_total,
        encoded: 0,
    };
    let mut tables = Vec::with_capacity(files.tables.len());
    for input in &files.tables {
        if input.deletes.is_some() && files.kind == PackageKind::Full {
            return Err(ServerError::Invalid(format!(
                "--delete {}: deletes need an incremental package (--kind incremental)",
                input.name
            )));
        }
        let columns = match &input.columns {
            Some(columns) => columns.clone(),
            None => infer_columns(&input.path)?,
        };
        for key in &input.key {
            match columns.iter().find(|c| c.name == *key) {
                None => {
                    return Err(ServerError::Invalid(format!(
                        "key column `{key}` of table `{}` is not among its columns ({})",
                        input.name,
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
                Some(c) if c.nullable => {
                    return Err(ServerError::Invalid(format!(
                        "key column `{key}` of table `{}` is nullable; key columns cannot be",
                        input.name
                    )))
                }
                Some(_) => {}
            }
        }
        tables.push(TableSchema {
            name: input.name.clone(),
            columns,
            key: input.key.clone(),
        });
    }
    let spec = PublishSpec {
        data_group: files.data_group.clone(),
        job: files.job.clone(),
        kind: files.kind,
        replaces: files.replaces.clone(),
        tables: tables.clone(),
    };
    let full = files.kind == PackageKind::Full;
    store.publish(spec, |writer| {
        for (index, (input, schema)) in files.tables.iter().zip(&tables).enumerate() {
            writer.table(index as u32)?;
            let mut rows = Records::open(&input.path, &schema.columns, &files.csv_null)?;
            let mut keys = full.then(|| KeySeen::new(schema));
            let read_before = told.input_read;
            while let Some((line, values)) = rows.next_record()? {
                if let Some(keys) = &mut keys {
                    keys.check(&input.path, line, &values, &files.csv_null)?;
                }
                writer
                    .upsert(&values)
                    .map_err(|e| frame_error(&input.path, line, e))?;
                told.records += 1;
                if told.records.is_multiple_of(PROGRESS_RECORDS) {
                    told.input_read = read_before + rows.bytes_read();
                    told.encoded = writer.content_written();
                    progress(told);
                }
            }
            told.input_read = read_before + rows.bytes_read();
            told.encoded = writer.content_written();
            progress(told);
            if let Some(path) = &input.deletes {
                let key_columns: Vec<Column> = schema
                    .key
                    .iter()
                    .filter_map(|k| schema.columns.iter().find(|c| c.name == *k).cloned())
                    .collect();
                let mut keys = Records::open(path, &key_columns, &files.csv_null)?;
                while let Some((line, values)) = keys.next_record()? {
                    writer
                        .delete(&values)
                        .map_err(|e| frame_error(path, line, e))?;
                    told.records += 1;
                }
                told.input_read += keys.bytes_read();
                told.encoded = writer.content_written();
                progress(told);
            }
        }
        Ok(())
    })
}

/// The keys of a full package's table seen so far, to refuse a second
/// row of one key here rather than at every store (`UNIQUE constraint
/// failed`). Holds a 64-bit hash and a line per row (about 20 bytes), and
/// confirms a repeated hash by reading the earlier record again, so a
/// hash collision is never reported as a duplicate.
struct KeySeen<'s> {
    schema: &'s TableSchema,
    key_at: Vec<usize>,
    /// The first line of each key hash.
    lines: HashMap<u64, u64>,
    /// Later lines of a hash shared by different keys (rare).
    collided: HashMap<u64, Vec<u64>>,
}

impl<'s> KeySeen<'s> {
    fn new(schema: &'s TableSchema) -> Self {
        let key_at = schema
            .key
            .iter()
            .filter_map(|k| schema.columns.iter().position(|c| &c.name == k))
            .collect();
        KeySeen {
            schema,
            key_at,
            lines: HashMap::new(),
            collided: HashMap::new(),
        }
    }

    fn hash(&self, values: &[Value]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for &i in &self.key_at {
            match &values[i] {
                Value::Null => 0u8.hash(&mut h),
                Value::Integer(n) => (1u8, n).hash(&mut h),
                // -0.0 and 0.0 are one key, as every database sees them.
                Value::Real(r) => (2u8, if *r == 0.0 { 0 } else { r.to_bits() }).hash(&mut h),
                Value::Text(t) => (3u8, t).hash(&mut h),
                Value::Blob(b) => (4u8, b).hash(&mut h),
            }
        }
        h.finish()
    }

    /// Refuses `values` when an earlier record of `path` has its key.
    fn check(
        &mut self,
        path: &Path,
        line: u64,
        values: &[Value],
        csv_null: &CsvNull,
    ) -> Result<(), ServerError> {
        let hash = self.hash(values);
        let Some(&first) = self.lines.get(&hash) else {
            self.lines.insert(hash, line);
            return Ok(());
        };
        let mut earlier: Vec<u64> = vec![first];
        earlier.extend(self.collided.get(&hash).into_iter().flatten());
        let mut again = Records::open(path, &self.schema.columns, csv_null)?;
        while let Some((at, previous)) = again.next_record()? {
            if at >= line {
                break;
            }
            if !earlier.contains(&at) {
                continue;
            }
            if self.key_at.iter().all(|&i| previous[i] == values[i]) {
                return Err(ServerError::record(
                    path,
                    line,
                    format!(
                        "table `{}`: key {} already on line {at}; a full package \
                         holds one row per key",
                        self.schema.name,
                        cdx::plan::describe_key(self.schema, values)
                    ),
                ));
            }
        }
        // Another key with the same hash: remember this line too.
        self.collided.entry(hash).or_default().push(line);
        Ok(())
    }
}

/// A writer's complaint about a record, located; i/o stays i/o.
fn frame_error(path: &Path, line: u64, error: PackageError) -> ServerError {
    match error {
        PackageError::Io(e) => ServerError::Package(PackageError::Io(e)),
        other => ServerError::record(path, line, other.to_string()),
    }
}

/// Reads the records of one file as values of `columns`, in column order.
pub struct Records<'a> {
    path: PathBuf,
    columns: &'a [Column],
    csv_null: CsvNull,
    inner: RecordsInner,
}

enum RecordsInner {
    Json {
        lines: JsonLines,
        by_name: HashMap<String, usize>,
    },
    Csv {
        reader: csv::Reader<File>,
        record: csv::StringRecord,
        /// For each column, its field in the CSV record.
        fields: Vec<usize>,
    },
}

impl<'a> Records<'a> {
    pub fn open(
        path: &Path,
        columns: &'a [Column],
        csv_null: &CsvNull,
    ) -> Result<Records<'a>, ServerError> {
        let inner = match InputFormat::of(path)? {
            InputFormat::JsonLines => RecordsInner::Json {
                lines: JsonLines::open(path)?,
                by_name: columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name.clone(), i))
                    .collect(),
            },
            InputFormat::Csv => {
                let mut reader = open_csv(path)?;
                let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
                for (i, name) in headers.iter().enumerate() {
                    if !columns.iter().any(|c| c.name == name) {
                        return Err(header_error(path, name, "is not a column of the table"));
                    }
                    if headers.iter().take(i).any(|n| n == name) {
                        return Err(header_error(path, name, "appears twice in the header"));
                    }
                }
                let fields = columns
                    .iter()
                    .map(|c| {
                        headers.iter().position(|h| h == c.name).ok_or_else(|| {
                            header_error(path, &c.name, "is missing from the header")
                        })
                    })
                    .collect::<Result<_, _>>()?;
                RecordsInner::Csv {
                    reader,
                    record: csv::StringRecord::new(),
                    fields,
                }
            }
        };
        Ok(Records {
            path: path.to_owned(),
            columns,
            csv_null: csv_null.clone(),
            inner,
        })
    }

    /// Bytes of the file read so far.
    pub fn bytes_read(&self) -> u64 {
        match &self.inner {
            RecordsInner::Json { lines, .. } => lines.bytes,
            RecordsInner::Csv { reader, .. } => reader.position().byte(),
        }
    }

    /// The next record's line and values, or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<(u64, Vec<Value>)>, ServerError> {
        let path = &self.path;
        let columns = self.columns;
        let csv_null = &self.csv_null;
        let located = |line: u64, column: &str, problem: String| ServerError::Record {
            file: path.clone(),
            line,
            column: Some(column.to_owned()),
            problem,
        };
        match &mut self.inner {
            RecordsInner::Json { lines, by_name } => {
                let Some((line, object)) = lines.next_object()? else {
                    return Ok(None);
                };
                let mut raw: Vec<Option<serde_json::Value>> = vec![None; columns.len()];
                for (name, value) in object.0 {
                    let Some(&i) = by_name.get(&name) else {
                        return Err(located(line, &name, "not a column of the table".into()));
                    };
                    if raw[i].replace(value).is_some() {
                        return Err(located(line, &name, "appears twice in the record".into()));
                    }
                }
                let values = columns
                    .iter()
                    .zip(raw)
                    .map(|(column, value)| {
                        let value = value.unwrap_or(serde_json::Value::Null);
                        json_to_value(&value, column).map_err(|p| located(line, &column.name, p))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Some((line, values)))
            }
            RecordsInner::Csv {
                reader,
                record,
                fields,
            } => {
                if !reader.read_record(record).map_err(|e| csv_error(path, e))? {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line());
                let values = columns
                    .iter()
                    .zip(fields.iter())
                    .map(|(column, &field)| {
                        text_to_value(&record[field], column, csv_null)
                            .map_err(|p| located(line, &column.name, p))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Some((line, values)))
            }
        }
    }
}

/// A JSON value as a value of `column`.
fn json_to_value(value: &serde_json::Value, column: &Column) -> Result<Value, String> {
    use serde_json::Value as J;
    let mismatch = || format!("expected {}, found {value}", type_name(column));
    match (value, column.ty) {
        (J::Null, _) if column.nullable => Ok(Value::Null),
        (J::Null, _) => Err(format!(
            "null in a non-nullable {} column",
            type_name(column)
        )),
        (J::Number(n), ColumnType::Integer) => n.as_i64().map(Value::Integer).ok_or_else(mismatch),
        (J::Bool(b), ColumnType::Integer | ColumnType::Boolean) => {
            Ok(Value::Integer(i64::from(*b)))
        }
        (J::Number(n), ColumnType::Boolean) => match n.as_i64() {
            Some(i @ (0 | 1)) => Ok(Value::Integer(i)),
            _ => Err(mismatch()),
        },
        (J::Number(n), ColumnType::Real) => n.as_f64().map(Value::Real).ok_or_else(mismatch),
        (J::Number(n), ColumnType::Decimal { .. }) => typed_text(&n.to_string(), column),
        (v, ColumnType::Blob | ColumnType::BoundedBlob { .. }) => base64_of(v)
            .ok_or_else(mismatch)?
            .map(Value::Blob)
            .map_err(|e| format!("bad base64: {e}"))
            .and_then(|v| checked(v, column)),
        (J::String(s), _) => typed_text(s, column),
        _ => Err(mismatch()),
    }
}

/// `value` when it is a value of `column`'s type, else why not.
fn checked(value: Value, column: &Column) -> Result<Value, String> {
    match cdx::package::value_mismatch(column.ty, &value) {
        None => Ok(value),
        Some(why) => Err(format!("{} column: {why}", column.ty)),
    }
}

/// A CSV field as a value of `column`, NULL as `csv_null` spells it.
fn text_to_value(text: &str, column: &Column, csv_null: &CsvNull) -> Result<Value, String> {
    let is_null = match csv_null {
        CsvNull::EmptyField => text.is_empty() && column.nullable,
        CsvNull::Marker(marker) => text == marker,
    };
    match (is_null, column.nullable) {
        (true, true) => Ok(Value::Null),
        (true, false) => Err(format!(
            "{text:?} is the NULL marker, in a non-nullable {} column",
            type_name(column)
        )),
        (false, _) => typed_text(text, column),
    }
}

/// A datetime as databases and spreadsheets export it, in the package's
/// form: `2024-01-02 10:00:00` and `2024-01-02T10:00:00Z` are
/// `2024-01-02T10:00:00`. A zone other than UTC is refused: the column
/// holds UTC times without a zone, and shifting a time is not a publisher's
/// guess to make.
fn normalized_datetime(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (date, time) = match text.split_once(['T', ' ']) {
        Some(parts) => parts,
        None => return Ok(text.to_owned()),
    };
    let time = time.trim_start();
    let bare = ["Z", "z", "+00:00", "+0000", "-00:00"]
        .iter()
        .find_map(|zone| time.strip_suffix(zone))
        .unwrap_or(time);
    if let Some(at) = bare.rfind(['+', '-']) {
        return Err(format!(
            "{text:?} has the time zone offset {}; datetime columns hold UTC without a \
             zone: convert it to UTC (or write it with Z)",
            &bare[at..]
        ));
    }
    Ok(format!("{date}T{bare}"))
}

/// A text (a CSV field, a JSON string) as a value of `column`.
fn typed_text(text: &str, column: &Column) -> Result<Value, String> {
    let mismatch =
        |detail: String| format!("expected {}, found {text:?}: {detail}", type_name(column));
    let value = match column.ty {
        ColumnType::Integer => text
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|e| mismatch(e.to_string()))?,
        ColumnType::Real => text
            .trim()
            .parse()
            .map(Value::Real)
            .map_err(|e| mismatch(e.to_string()))?,
        ColumnType::Blob | ColumnType::BoundedBlob { .. } => {
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map(Value::Blob)
                .map_err(|e| mismatch(e.to_string()))?
        }
        ColumnType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" => Value::Integer(1),
            "0" | "false" => Value::Integer(0),
            _ => return Err(mismatch("expected 0, 1, true or false".into())),
        },
        // Spelled the canonical way, so "12.5" in a decimal(10,2) is 12.50.
        ColumnType::Decimal { scale, .. } => Value::Text(
            cdx::package::parse_decimal(text.trim())
                .and_then(|d| d.to_canonical(scale))
                .unwrap_or_else(|| text.to_owned()),
        ),
        ColumnType::DateTime => Value::Text(normalized_datetime(text)?),
        ColumnType::Uuid => Value::Text(
            uuid::Uuid::parse_str(text.trim())
                .map_or_else(|_| text.to_owned(), |u| u.hyphenated().to_string()),
        ),
        _ => Value::Text(text.to_owned()),
    };
    checked(value, column)
}

fn type_name(column: &Column) -> String {
    column.ty.to_string()
}

/// `{"base64": "..."}`, the JSON form of a blob, decoded.
fn base64_of(value: &serde_json::Value) -> Option<Result<Vec<u8>, base64::DecodeError>> {
    let object = value.as_object()?;
    let encoded = object.get("base64")?.as_str()?;
    (object.len() == 1).then(|| base64::engine::general_purpose::STANDARD.decode(encoded))
}

fn open_csv(path: &Path) -> Result<csv::Reader<File>, ServerError> {
    let file =
        File::open(path).map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file))
}

fn csv_error(path: &Path, error: csv::Error) -> ServerError {
    let line = error.position().map_or(0, |p| p.line());
    if error.is_io_error() {
        return ServerError::io(format!("reading {}", path.display()), error.into());
    }
    ServerError::record(path, line, error.to_string())
}

fn header_error(path: &Path, column: &str, problem: &str) -> ServerError {
    ServerError::Record {
        file: path.to_owned(),
        line: 1,
        column: Some(column.to_owned()),
        problem: problem.to_owned(),
    }
}

/// The lines of a JSON Lines file as objects, blank lines skipped.
struct JsonLines {
    path: PathBuf,
    reader: BufReader<File>,
    buf: String,
    line: u64,
    /// Bytes read so far.
    bytes: u64,
}

impl JsonLines {
    fn open(path: &Path) -> Result<JsonLines, ServerError> {
        let file = File::open(path)
            .map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
        Ok(JsonLines {
            path: path.to_owned(),
            reader: BufReader::new(file),
            buf: String::new(),
            line: 0,
            bytes: 0,
        })
    }

    fn next_object(&mut self) -> Result<Option<(u64, OrderedObject)>, ServerError> {
        loop {
            self.buf.clear();
            let n = self.reader.read_line(&mut self.buf).map_err(|e| {
                ServerError::io(format!("{}:{}", self.path.display(), self.line + 1), e)
            })?;
            if n == 0 {
                return Ok(None);
            }
            self.bytes += n as u64;
            self.line += 1;
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            let object = serde_json::from_str(text).map_err(|e| {
                ServerError::record(&self.path, self.line, format!("not a JSON object: {e}"))
            })?;
            return Ok(Some((self.line, object)));
        }
    }
}

/// A JSON object with its keys in file order (serde_json's map sorts them).
struct OrderedObject(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(OrderedObject(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}
