//! Column types, their names in schema specs (`decimal(32,6)`), and the one
//! canonical form each type's values take in a package.
//!
//! Values travel in the five [`Value`] kinds; the richer types fix which
//! kind and which spelling: a decimal is the text `-12.50`, a date the text
//! `2026-11-24`, a boolean the integer 0 or 1. One spelling per value means
//! a value read back from any backend compares equal to the one written,
//! and every backend parses the same strings (`parse_decimal`, ...).

use std::fmt;
use std::str::FromStr;

use super::{ColumnType, Value};

/// Longest `text(n)`: SQL Server's `nvarchar(n)` stops at 4000.
pub const MAX_TEXT_LEN: u32 = 4000;
/// Longest `blob(n)`: SQL Server's `varbinary(n)` stops at 8000.
pub const MAX_BLOB_LEN: u32 = 8000;
/// Most digits of a decimal, as in SQL Server.
pub const MAX_PRECISION: u8 = 38;

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Integer => f.write_str("integer"),
            ColumnType::Real => f.write_str("real"),
            ColumnType::Text => f.write_str("text"),
            ColumnType::Blob => f.write_str("blob"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::DateTime => f.write_str("datetime"),
            ColumnType::Time => f.write_str("time"),
            ColumnType::Uuid => f.write_str("uuid"),
            ColumnType::BoundedText { max_len } => write!(f, "text({max_len})"),
            ColumnType::BoundedBlob { max_len } => write!(f, "blob({max_len})"),
        }
    }
}

impl FromStr for ColumnType {
    type Err = String;

    /// The names [`Display`](fmt::Display) writes, case-insensitively.
    fn from_str(spec: &str) -> Result<Self, String> {
        let spec = spec.trim().to_ascii_lowercase();
        let (name, args) = match spec.split_once('(') {
            Some((name, rest)) => {
                let args = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("`{spec}` has no closing parenthesis"))?;
                (name.trim(), Some(args))
            }
            None => (spec.as_str(), None),
        };
        let numbers = |args: &str| -> Result<Vec<u32>, String> {
            args.split(',')
                .map(|n| {
                    n.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("`{spec}`: `{n}` is not a number"))
                })
                .collect()
        };
        let ty = match (name, args) {
            ("integer", None) => ColumnType::Integer,
            ("real", None) => ColumnType::Real,
            ("text", None) => ColumnType::Text,
            ("blob", None) => ColumnType::Blob,
            ("boolean", None) => ColumnType::Boolean,
            ("date", None) => ColumnType::Date,
            ("datetime", None) => ColumnType::DateTime,
            ("time", None) => ColumnType::Time,
            ("uuid", None) => ColumnType::Uuid,
            ("text", Some(args)) => match numbers(args)?[..] {
                [max_len] => ColumnType::BoundedText { max_len },
                _ => return Err(format!("`{spec}`: text takes one length")),
            },
            ("blob", Some(args)) => match numbers(args)?[..] {
                [max_len] => ColumnType::BoundedBlob { max_len },
                _ => return Err(format!("`{spec}`: blob takes one length")),
            },
            ("decimal", Some(args)) => match numbers(args)?[..] {
                [p, s] => ColumnType::Decimal {
                    precision: u8::try_from(p).unwrap_or(u8::MAX),
                    scale: u8::try_from(s).unwrap_or(u8::MAX),
                },
                _ => return Err(format!("`{spec}`: decimal takes a precision and a scale")),
            },
            _ => {
                return Err(format!(
                    "`{spec}` is not a type: integer, real, text, text(N), blob, blob(N), \
                     boolean, decimal(P,S), date, datetime, time or uuid"
                ))
            }
        };
        check_type(ty)?;
        Ok(ty)
    }
}

/// Whether the type's own parameters are in range.
///
/// # Errors
/// A length of 0 or above the limit, a precision outside 1 to 38, a scale
/// above the precision.
pub fn check_type(ty: ColumnType) -> Result<(), String> {
    match ty {
        ColumnType::BoundedText { max_len } if !(1..=MAX_TEXT_LEN).contains(&max_len) => {
            Err(format!(
                "text({max_len}): the length must be 1 to {MAX_TEXT_LEN}; use `text` for longer"
            ))
        }
        ColumnType::BoundedBlob { max_len } if !(1..=MAX_BLOB_LEN).contains(&max_len) => {
            Err(format!(
                "blob({max_len}): the length must be 1 to {MAX_BLOB_LEN}; use `blob` for longer"
            ))
        }
        ColumnType::Decimal { precision, scale }
            if !(1..=MAX_PRECISION).contains(&precision) || scale > precision =>
        {
            Err(format!(
                "decimal({precision},{scale}): the precision must be 1 to {MAX_PRECISION} \
                 and the scale at most the precision"
            ))
        }
        _ => Ok(()),
    }
}

/// Why `value` is not a value of type `ty`, or `None` when it is. Null is
/// checked by the caller, which knows whether the column is nullable.
///
/// Called for every value a package holds: the common answers are decided
/// inline, the rest (parsing, lengths, the error's text) out of line.
#[inline]
pub fn value_mismatch(ty: ColumnType, value: &Value) -> Option<String> {
    match (ty, value) {
        (ColumnType::Integer, Value::Integer(_))
        | (ColumnType::Text, Value::Text(_))
        | (ColumnType::Blob, Value::Blob(_)) => None,
        (ColumnType::Real, Value::Real(r)) if r.is_finite() => None,
        // A UTF-16 length never exceeds the UTF-8 one.
        (ColumnType::BoundedText { max_len }, Value::Text(s)) if s.len() <= max_len as usize => {
            None
        }
        _ => value_mismatch_slow(ty, value),
    }
}

#[inline(never)]
fn value_mismatch_slow(ty: ColumnType, value: &Value) -> Option<String> {
    let text = |check: fn(&str) -> bool, form: &str| match value {
        Value::Text(s) if check(s) => None,
        Value::Text(s) => Some(format!("{:?} is not {form}", shorten(s))),
        other => Some(format!(
            "{} value, expected text in the form {form}",
            kind_name(other)
        )),
    };
    match (ty, value) {
        (ColumnType::Real, Value::Real(r)) if !r.is_finite() => {
            Some(format!("{r} is not a finite number"))
        }
        (ColumnType::Integer, Value::Integer(_))
        | (ColumnType::Real, Value::Real(_) | Value::Integer(_))
        | (ColumnType::Text, Value::Text(_))
        | (ColumnType::Blob, Value::Blob(_))
        | (ColumnType::Boolean, Value::Integer(0 | 1)) => None,
        (ColumnType::BoundedText { max_len }, Value::Text(s)) => {
            let len = text_len(s);
            (len > max_len as usize).then(|| format!("{len} characters, the limit is {max_len}"))
        }
        (ColumnType::BoundedBlob { max_len }, Value::Blob(b)) => (b.len() > max_len as usize)
            .then(|| format!("{} bytes, the limit is {max_len}", b.len())),
        (ColumnType::Decimal { precision, scale }, Value::Text(s)) => match parse_decimal(s) {
            Some(d) if !d.fits(precision, scale) => {
                Some(format!("{s} does not fit decimal({precision},{scale})"))
            }
            Some(d) if !d.is_canonical(s, scale) => Some(format!(
                "{s} is not in canonical form: write {}",
                d.to_canonical(scale).unwrap_or_default()
            )),
            Some(_) => None,
            None => Some(format!("{:?} is not a decimal like -12.50", shorten(s))),
        },
        (ColumnType::Date, _) => text(|s| parse_date(s).is_some(), "YYYY-MM-DD"),
        (ColumnType::DateTime, _) => text(
            |s| parse_datetime(s).is_some(),
            "YYYY-MM-DDTHH:MM:SS[.fffffff]",
        ),
        (ColumnType::Time, _) => text(|s| parse_time(s).is_some(), "HH:MM:SS[.fffffff]"),
        (ColumnType::Uuid, _) => text(is_canonical_uuid, "a lowercase hyphenated uuid"),
        (ColumnType::Boolean, Value::Integer(i)) => Some(format!("{i}, expected 0 or 1")),
        (ty, other) => Some(format!(
            "{} value in a column of type {ty}",
            kind_name(other)
        )),
    }
}

/// The length of a text as SQL Server's `nvarchar(n)` counts it: in UTF-16
/// code units, so a character outside the BMP counts twice.
pub fn text_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

pub(crate) fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Integer(_) => "Integer",
        Value::Real(_) => "Real",
        Value::Text(_) => "Text",
        Value::Blob(_) => "Blob",
    }
}

fn shorten(s: &str) -> &str {
    s.char_indices().nth(40).map_or(s, |(cut, _)| &s[..cut])
}

/// A decimal: `-?digits(.digits)?`, no exponent, no `+`. Its canonical
/// form in a `decimal(p,s)` column has exactly `s` digits after the point
/// and no leading zeros, as SQL Server prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// The digits as one integer: `-12.50` is -1250.
    pub mantissa: i128,
    /// Digits after the point: `-12.50` has 2.
    pub scale: u8,
    /// Digits before the point, leading zeros not counted.
    pub int_digits: u8,
}

impl Decimal {
    /// Whether a `decimal(precision, scale)` column holds this value exactly.
    pub fn fits(&self, precision: u8, scale: u8) -> bool {
        let exact = self.scale <= scale || self.mantissa_at_lower(scale).is_some();
        exact && self.int_digits <= precision.saturating_sub(scale)
    }

    /// Drops trailing fraction digits down to `scale` when they are all zeros.
    fn mantissa_at_lower(&self, scale: u8) -> Option<i128> {
        let down = 10i128.checked_pow(u32::from(self.scale.checked_sub(scale)?))?;
        (self.mantissa % down == 0).then(|| self.mantissa / down)
    }

    /// The canonical spelling at `scale` digits after the point; `None`
    /// when digits would be lost.
    pub fn to_canonical(&self, scale: u8) -> Option<String> {
        let mantissa = if scale >= self.scale {
            self.mantissa_at(scale)?
        } else {
            self.mantissa_at_lower(scale)?
        };
        Some(format_decimal(mantissa, scale))
    }

    /// Whether `s`, the text this decimal was parsed from, is its canonical
    /// spelling at `scale` (what [`to_canonical`](Self::to_canonical)
    /// writes), told without writing it: exactly `scale` fraction digits,
    /// no leading zero, no minus on zero. Every decimal of a package is
    /// checked so; building the text took a third of a wide apply's time.
    pub fn is_canonical(&self, s: &str, scale: u8) -> bool {
        let negative = s.starts_with('-');
        let fraction = if self.scale > 0 {
            usize::from(self.scale) + 1
        } else {
            0
        };
        let int_len = s.len().saturating_sub(usize::from(negative) + fraction);
        self.scale == scale
            && negative == (self.mantissa < 0)
            && int_len == usize::from(self.int_digits).max(1)
    }

    /// Significant digits: the mantissa's, trailing zeros not counted.
    pub fn significant_digits(&self) -> u32 {
        let mut m = self.mantissa.unsigned_abs();
        if m == 0 {
            return 0;
        }
        while m.is_multiple_of(10) {
            m /= 10;
        }
        m.ilog10() + 1
    }

    /// The value as a number a float or integer holds exactly: an
    /// `Integer` when it has no fraction and fits 64 bits, otherwise the
    /// nearest `Real`, which [`decimal_from_number`] turns back into this
    /// decimal. `None` when it has more than [`EXACT_FLOAT_DIGITS`]
    /// significant digits, which no 64-bit float holds for every value.
    pub fn to_number(&self) -> Option<Value> {
        if let Some(whole) = self.mantissa_at_lower(0) {
            if let Ok(whole) = i64::try_from(whole) {
                return Some(Value::Integer(whole));
            }
        }
        if self.significant_digits() > EXACT_FLOAT_DIGITS {
            return None;
        }
        // A mantissa below 2^53 and 10^scale up to 10^22 are both exact
        // floats, and IEEE division rounds correctly: the quotient is the
        // nearest float, as parsing the text would give, without the text.
        if self.mantissa.unsigned_abs() < 1 << 53 {
            if let Some(power) = POWERS_OF_TEN.get(usize::from(self.scale)) {
                return Some(Value::Real(self.mantissa as f64 / power));
            }
        }
        // Rust's parse rounds correctly, so the float is the nearest one.
        format_decimal(self.mantissa, self.scale)
            .parse()
            .ok()
            .map(Value::Real)
    }

    /// The mantissa at `scale` digits after the point (`scale >= self.scale`).
    pub fn mantissa_at(&self, scale: u8) -> Option<i128> {
        let up = scale.checked_sub(self.scale)?;
        10i128
            .checked_pow(u32::from(up))?
            .checked_mul(self.mantissa)
    }
}

/// 10^0 to 10^22: every one an exact float.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `mantissa` with `scale` digits after the point: `format_decimal(-1250, 2)`
/// is `-12.50`.
pub fn format_decimal(mantissa: i128, scale: u8) -> String {
    let digits = mantissa.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if mantissa < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Significant digits every decimal of which a 64-bit float holds exactly
/// (it holds 15.95): with at most this many, the nearest float's shortest
/// spelling is the decimal itself.
pub const EXACT_FLOAT_DIGITS: u32 = 15;

/// The canonical text at `scale` of a number read from a numeric column:
/// an integer, a float (its shortest spelling, exact for every decimal of
/// at most [`EXACT_FLOAT_DIGITS`] significant digits, see
/// [`Decimal::to_number`]) or a decimal's text. `None` when the value has
/// more fraction digits than `scale` or is not a number.
pub fn decimal_from_number(value: &Value, scale: u8) -> Option<String> {
    let decimal = match value {
        Value::Integer(n) => Decimal {
            mantissa: i128::from(*n),
            scale: 0,
            int_digits: 0,
        },
        // `Display` of a float is its shortest round-trip spelling, with
        // no exponent.
        Value::Real(r) if r.is_finite() => parse_decimal(&r.to_string())?,
        Value::Text(t) => parse_decimal(t)?,
        _ => return None,
    };
    decimal.to_canonical(scale)
}

/// Parses a decimal, canonical or not; at most 38 digits in all.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    // One pass over the bytes: every decimal of a package is parsed.
    let (negative, body) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    let (mut mantissa, mut int_len, mut leading_zeros, mut frac_len) =
        (0i128, 0usize, 0usize, 0usize);
    let mut point = false;
    for &b in body {
        match b {
            b'0'..=b'9' if point => frac_len += 1,
            b'0' if int_len == leading_zeros => {
                int_len += 1;
                leading_zeros += 1;
            }
            b'0'..=b'9' => int_len += 1,
            b'.' if !point => point = true,
            _ => return None,
        }
        if b != b'.' {
            if int_len - leading_zeros + frac_len > usize::from(MAX_PRECISION) {
                return None;
            }
            mantissa = mantissa * 10 + i128::from(b - b'0');
        }
    }
    if int_len == 0 || (point && frac_len == 0) {
        return None;
    }
    Some(Decimal {
        mantissa: if negative { -mantissa } else { mantissa },
        scale: u8::try_from(frac_len).ok()?,
        int_digits: u8::try_from(int_len - leading_zeros).ok()?,
    })
}

/// A calendar date of the proleptic Gregorian calendar, years 1 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Days since 0001-01-01 (SQL Server's `date` on the wire).
    pub fn days_from_ce(&self) -> u32 {
        let y = u32::from(self.year) - 1;
        let before_year = y * 365 + y / 4 - y / 100 + y / 400;
        let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap_day = u32::from(self.month > 2 && is_leap(self.year));
        before_year + cumulative[usize::from(self.month - 1)] + leap_day + u32::from(self.day) - 1
    }

    /// The date `days` after 0001-01-01.
    pub fn from_days_from_ce(days: u32) -> Option<Date> {
        let mut year: u16 = 1;
        let mut left = days;
        // Whole 400-year cycles first, then years one by one: at most 399 steps.
        year += u16::try_from((left / 146_097) * 400).ok()?;
        left %= 146_097;
        loop {
            let len = if is_leap(year) { 366 } else { 365 };
            if left < len {
                break;
            }
            left -= len;
            year += 1;
        }
        let mut month = 1u8;
        loop {
            let len = u32::from(days_in_month(year, month));
            if left < len {
                break;
            }
            left -= len;
            month += 1;
        }
        let date = Date {
            year,
            month,
            day: u8::try_from(left + 1).ok()?,
        };
        (year <= 9999).then_some(date)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn number<T: FromStr>(s: &str, width: usize) -> Option<T> {
    (s.len() == width && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let date = Date {
        year: number(y, 4)?,
        month: number(m, 2)?,
        day: number(d, 2)?,
    };
    let valid = date.year >= 1
        && (1..=12).contains(&date.month)
        && (1..=days_in_month(date.year, date.month)).contains(&date.day);
    valid.then_some(date)
}

/// A time of day to 100 ns, SQL Server's `time(7)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    /// 100-nanosecond ticks since midnight.
    pub ticks: u64,
}

pub const TICKS_PER_SECOND: u64 = 10_000_000;

impl fmt::Display for TimeOfDay {
    /// `HH:MM:SS`, then `.` and up to 7 digits when there is a fraction,
    /// trailing zeros dropped: the canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.ticks / TICKS_PER_SECOND;
        let frac = self.ticks % TICKS_PER_SECOND;
        write!(
            f,
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if frac > 0 {
            let digits = format!("{frac:07}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

/// Parses `HH:MM:SS` with an optional fraction of 1 to 7 digits.
pub fn parse_time(s: &str) -> Option<TimeOfDay> {
    let (hms, frac) = match s.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (s, None),
    };
    let mut parts = hms.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (h, m, sec): (u64, u64, u64) = (number(h, 2)?, number(m, 2)?, number(sec, 2)?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let ticks_frac = match frac {
        None => 0,
        Some(f) if (1..=7).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u64>().ok()? * 10u64.pow(7 - f.len() as u32)
        }
        Some(_) => return None,
    };
    // A canonical fraction has no trailing zero: one spelling per value.
    if frac.is_some_and(|f| f.ends_with('0')) {
        return None;
    }
    Some(TimeOfDay {
        ticks: (h * 3600 + m * 60 + sec) * TICKS_PER_SECOND + ticks_frac,
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fffffff]`: no time zone (the channel
/// database's convention, UTC in AX).
pub fn parse_datetime(s: &str) -> Option<(Date, TimeOfDay)> {
    let (date, time) = s.split_once('T')?;
    Some((parse_date(date)?, parse_time(time)?))
}

/// Whether `s` is a uuid in its canonical form: lowercase, hyphenated.
pub fn is_canonical_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

#[cfg(test)]
mod tests;
