//! SQLite's table definitions as text: which type affinity a declared type
//! has, and a `CREATE TABLE` statement with some columns' declared types
//! changed. SQLite cannot `ALTER COLUMN`; a change that leaves every stored
//! value as it is (a longer `VARCHAR`, a `DECIMAL` of more digits) is made by
//! rewriting the table's statement in `sqlite_schema`, the procedure
//! SQLite's documentation gives for such changes, so this edit must be
//! exact: it touches only the type of the named columns and keeps every
//! other byte (constraints, collations, defaults, comments).

/// A column's type affinity, by SQLite's rules (section 3.1 of "Datatypes
/// In SQLite Version 3").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

/// The affinity of a column declared `declared`.
pub fn affinity(declared: &str) -> Affinity {
    let upper = declared.to_ascii_uppercase();
    if upper.contains("INT") {
        Affinity::Integer
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|s| upper.contains(s)) {
        Affinity::Text
    } else if upper.contains("BLOB") || upper.trim().is_empty() {
        Affinity::Blob
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|s| upper.contains(s)) {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// Whether changing a column's declared type from `from` to `to` leaves
/// every value it holds as SQLite reads it: the same affinity, an integer
/// column becoming numeric (both store integers as integers), or becoming
/// real (SQLite reads an integer stored in a real column as a real). A
/// change to text affinity from another is not: the numbers stored must
/// be respelled as text.
pub fn keeps_values(from: &str, to: &str) -> bool {
    let (from, to) = (affinity(from), affinity(to));
    from == to
        || matches!(
            (from, to),
            (Affinity::Integer, Affinity::Numeric | Affinity::Real)
                | (Affinity::Numeric, Affinity::Real)
        )
}

/// Words that end a column's type name and begin its constraints.
const CONSTRAINT_WORDS: [&str; 11] = [
    "CONSTRAINT",
    "PRIMARY",
    "NOT",
    "NULL",
    "UNIQUE",
    "CHECK",
    "DEFAULT",
    "COLLATE",
    "REFERENCES",
    "GENERATED",
    "AS",
];

/// Words that begin a table constraint rather than a column definition.
const TABLE_CONSTRAINT_WORDS: [&str; 5] = ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"];

/// `create_sql` (a `CREATE TABLE` statement as `sqlite_schema` holds it)
/// with the declared type of each `(column, type)` of `changes` replaced
/// by `type`; columns are matched ignoring ASCII case, quoted or not.
///
/// # Errors
/// Why the statement could not be read: no column list, an unterminated
/// quote or comment, or a column of `changes` it does not define.
pub fn retype_columns(create_sql: &str, changes: &[(&str, &str)]) -> Result<String, String> {
    let bytes = create_sql.as_bytes();
    let open = top_level_open(bytes).ok_or("no column list in the CREATE TABLE statement")?;
    let items = definitions(bytes, open + 1)?;
    let close = items.last().map_or(open, |&(_, end)| end);
    // A STRICT table takes only its own type names (INT, TEXT, ...).
    let options = String::from_utf8_lossy(&bytes[close..]).to_ascii_uppercase();
    if options
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w == "STRICT")
    {
        return Err("a STRICT table takes no other type names".into());
    }
    // (start, end) of each column's type in `create_sql`, and the new type.
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    let mut found = vec![false; changes.len()];
    for (start, end) in items {
        let Some((name, after_name)) = first_token(bytes, start, end)? else {
            continue;
        };
        if TABLE_CONSTRAINT_WORDS
            .iter()
            .any(|w| name.eq_ignore_ascii_case(w))
            && !is_quoted(bytes[skip_space(bytes, start, end)?])
        {
            continue;
        }
        let Some(i) = changes
            .iter()
            .position(|(c, _)| c.eq_ignore_ascii_case(&name))
        else {
            continue;
        };
        found[i] = true;
        let (type_start, type_end) = type_span(bytes, after_name, end)?;
        edits.push((type_start, type_end, changes[i].1));
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(format!(
            "the CREATE TABLE statement defines no column `{}`",
            changes[i].0
        ));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = create_sql.to_owned();
    for (start, end, ty) in edits {
        // A column declared without a type gets one after its name.
        let replacement = if start == end {
            format!(" {ty}")
        } else {
            ty.to_owned()
        };
        out.replace_range(start..end, &replacement);
    }
    Ok(out)
}

fn is_quoted(b: u8) -> bool {
    matches!(b, b'"' | b'`' | b'[' | b'\'')
}

/// The end (exclusive) of the quoted token starting at `i`.
fn quoted_end(bytes: &[u8], i: usize) -> Result<usize, String> {
    let close = match bytes[i] {
        b'[' => b']',
        q => q,
    };
    let mut j = i + 1;
    while j < bytes.len() {
        if bytes[j] == close {
            // A doubled quote is one quote character (not in brackets).
            if close != b']' && bytes.get(j + 1) == Some(&close) {
                j += 2;
                continue;
            }
            return Ok(j + 1);
        }
        j += 1;
    }
    Err("an unterminated quote in the CREATE TABLE statement".into())
}

/// The end of a comment starting at `i`, or `None` when none starts there.
fn comment_end(bytes: &[u8], i: usize) -> Result<Option<usize>, String> {
    match (bytes[i], bytes.get(i + 1)) {
        (b'-', Some(b'-')) => Ok(Some(
            bytes[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| i + p + 1),
        )),
        (b'/', Some(b'*')) => bytes[i + 2..]
            .windows(2)
            .position(|w| w == b"*/")
            .map(|p| Some(i + 2 + p + 2))
            .ok_or_else(|| "an unterminated comment in the CREATE TABLE statement".into()),
        _ => Ok(None),
    }
}

/// The first `(` outside quotes and comments: the column list's.
fn top_level_open(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        if is_quoted(bytes[i]) {
            i = quoted_end(bytes, i).ok()?;
        } else if let Ok(Some(end)) = comment_end(bytes, i) {
            i = end;
        } else if bytes[i] == b'(' {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

/// The spans of the column list's items, from `start` (just after its `(`)
/// to its closing `)`, split at commas outside parentheses.
fn definitions(bytes: &[u8], start: usize) -> Result<Vec<(usize, usize)>, String> {
    let mut items = Vec::new();
    let (mut depth, mut item, mut i) = (0usize, start, start);
    while i < bytes.len() {
        if is_quoted(bytes[i]) {
            i = quoted_end(bytes, i)?;
            continue;
        }
        if let Some(end) = comment_end(bytes, i)? {
            i = end;
            continue;
        }
        match bytes[i] {
            b'(' => depth += 1,
            b')' if depth == 0 => {
                items.push((item, i));
                return Ok(items);
            }
            b')' => depth -= 1,
            b',' if depth == 0 => {
                items.push((item, i));
                item = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    Err("the CREATE TABLE statement's column list does not end".into())
}

/// The first byte from `i` that is neither space nor comment (`end` at most).
fn skip_space(bytes: &[u8], mut i: usize, end: usize) -> Result<usize, String> {
    while i < end {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
        } else if let Some(e) = comment_end(bytes, i)? {
            i = e.min(end);
        } else {
            break;
        }
    }
    Ok(i)
}

/// The first token of an item, unquoted, and where it ends.
fn first_token(bytes: &[u8], start: usize, end: usize) -> Result<Option<(String, usize)>, String> {
    let i = skip_space(bytes, start, end)?;
    if i >= end {
        return Ok(None);
    }
    if is_quoted(bytes[i]) {
        let close = quoted_end(bytes, i)?;
        let inner = String::from_utf8_lossy(&bytes[i + 1..close - 1]);
        let quote = bytes[i] as char;
        let name = if quote == '[' {
            inner.into_owned()
        } else {
            inner.replace(&format!("{quote}{quote}"), &quote.to_string())
        };
        return Ok(Some((name, close)));
    }
    let len = word_len(bytes, i, end);
    Ok(Some((
        String::from_utf8_lossy(&bytes[i..i + len]).into_owned(),
        i + len,
    )))
}

/// The length of the bare word at `i`.
fn word_len(bytes: &[u8], i: usize, end: usize) -> usize {
    bytes[i..end]
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
        .count()
}

/// The span of a column's type after its name: words up to a constraint
/// word, then an optional parenthesised size. Empty (at the name's end)
/// when the column has no type.
fn type_span(bytes: &[u8], after_name: usize, end: usize) -> Result<(usize, usize), String> {
    let mut i = skip_space(bytes, after_name, end)?;
    let start = i;
    let mut type_end = after_name;
    while i < end {
        let len = if is_quoted(bytes[i]) && bytes[i] != b'\'' {
            // A quoted type name, `[nvarchar]` or `"varchar"`.
            quoted_end(bytes, i)? - i
        } else {
            word_len(bytes, i, end)
        };
        if len > 0 {
            let word = String::from_utf8_lossy(&bytes[i..i + len]);
            if CONSTRAINT_WORDS
                .iter()
                .any(|w| word.eq_ignore_ascii_case(w))
            {
                break;
            }
            i += len;
            type_end = i;
        } else if bytes[i] == b'(' {
            let close = bytes[i..end]
                .iter()
                .position(|&b| b == b')')
                .ok_or("a type's size does not end")?;
            i += close + 1;
            type_end = i;
            break;
        } else {
            break;
        }
        i = skip_space(bytes, i, end)?;
    }
    if type_end == after_name {
        return Ok((after_name, after_name));
    }
    Ok((start, type_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinities_follow_sqlites_rules() {
        for (declared, want) in [
            ("INTEGER", Affinity::Integer),
            ("BIGINT", Affinity::Integer),
            ("VARCHAR(20)", Affinity::Text),
            ("TEXT", Affinity::Text),
            ("BLOB", Affinity::Blob),
            ("", Affinity::Blob),
            ("REAL", Affinity::Real),
            ("DOUBLE PRECISION", Affinity::Real),
            ("DECIMAL(10,2)", Affinity::Numeric),
            ("DECIMAL_TEXT(20,2)", Affinity::Text),
            ("VARBINARY(4)", Affinity::Numeric),
            ("BOOLEAN", Affinity::Numeric),
        ] {
            assert_eq!(affinity(declared), want, "{declared}");
        }
        assert!(keeps_values("VARCHAR(5)", "TEXT"));
        assert!(keeps_values("DECIMAL(6,2)", "DECIMAL(12,2)"));
        assert!(keeps_values("INTEGER", "DECIMAL(10,2)"));
        assert!(keeps_values("INTEGER", "REAL"));
        assert!(!keeps_values("DECIMAL(10,2)", "DECIMAL_TEXT(20,2)"));
        assert!(!keeps_values("INTEGER", "DECIMAL_TEXT(20,2)"));
    }

    /// Only the named columns' types change; every other byte stays.
    #[test]
    fn retypes_named_columns_and_keeps_the_rest() {
        let sql = "CREATE TABLE \"labels\" (\"product_id\" INTEGER NOT NULL, \
                   \"label\" VARCHAR(5) NOT NULL, \"note\" VARCHAR(5), PRIMARY KEY (\"product_id\"))";
        let out = retype_columns(sql, &[("LABEL", "VARCHAR(60)")]).unwrap();
        assert_eq!(
            out,
            "CREATE TABLE \"labels\" (\"product_id\" INTEGER NOT NULL, \
             \"label\" VARCHAR(60) NOT NULL, \"note\" VARCHAR(5), PRIMARY KEY (\"product_id\"))"
        );
        // Hand-written: bare and bracketed names, multi-word types,
        // comments, a CHECK with commas, a default with parentheses.
        let sql = "CREATE TABLE t ( -- the items\n  id int primary key,\n  \
                   [name] national varchar ( 20 ) collate nocase default ('x,y'),\n  \
                   /* price, in cents */ price decimal(6, 2) check (price > 0),\n  \
                   \"odd \"\"col\"\"\" text,\n  qty,\n  constraint c check (qty >= 0))";
        let out = retype_columns(
            sql,
            &[
                ("name", "TEXT"),
                ("price", "DECIMAL(12,2)"),
                ("odd \"col\"", "VARCHAR(9)"),
                ("qty", "REAL"),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "CREATE TABLE t ( -- the items\n  id int primary key,\n  \
             [name] TEXT collate nocase default ('x,y'),\n  \
             /* price, in cents */ price DECIMAL(12,2) check (price > 0),\n  \
             \"odd \"\"col\"\"\" VARCHAR(9),\n  qty REAL,\n  constraint c check (qty >= 0))"
        );
    }

    #[test]
    fn a_column_not_defined_or_a_broken_statement_is_an_error() {
        let sql = "CREATE TABLE t (a INTEGER, PRIMARY KEY (a))";
        let e = retype_columns(sql, &[("b", "TEXT")]).unwrap_err();
        assert!(e.contains("`b`"), "{e}");
        assert!(retype_columns("CREATE TABLE t (a 'x", &[("a", "TEXT")]).is_err());
        assert!(retype_columns("CREATE TABLE t", &[("a", "TEXT")]).is_err());
        let strict = "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT) STRICT";
        assert!(retype_columns(strict, &[("b", "VARCHAR(9)")])
            .unwrap_err()
            .contains("STRICT"));
        // A quoted type name, as DDL exported from SQL Server writes it.
        let sql = "CREATE TABLE t ([Id] [int] NOT NULL, [Name] [nvarchar](50) NULL)";
        assert_eq!(
            retype_columns(sql, &[("Name", "VARCHAR(60)")]).unwrap(),
            "CREATE TABLE t ([Id] [int] NOT NULL, [Name] VARCHAR(60) NULL)"
        );
        // A table constraint named like a column is not the column.
        let sql = "CREATE TABLE t (\"primary\" TEXT, PRIMARY KEY (\"primary\"))";
        assert_eq!(
            retype_columns(sql, &[("primary", "VARCHAR(3)")]).unwrap(),
            "CREATE TABLE t (\"primary\" VARCHAR(3), PRIMARY KEY (\"primary\"))"
        );
    }
}
