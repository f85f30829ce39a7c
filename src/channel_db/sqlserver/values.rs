//! Between package [`Value`]s and tiberius's `ColumnData`: what bulk load
//! sends into a staging column, and what a read returns as a package value.

use std::borrow::Cow;

use tiberius::time::{Date as TdsDate, DateTime2, Time};
use tiberius::ColumnData;

use crate::package::{
    format_decimal, parse_date, parse_datetime, parse_time, ColumnType, Date, TimeOfDay, Value,
    TICKS_PER_SECOND,
};

/// `value` (already validated against `ty` by the package reader) as the
/// staging column of type `ty` takes it. Strings and blobs move, no copy.
///
/// # Errors
/// A value not in its type's canonical form, which a validated package
/// never holds; the message says which.
pub fn to_column_data(ty: ColumnType, value: Value) -> Result<ColumnData<'static>, String> {
    let data = match (ty, value) {
        (ty, Value::Null) => null_of(ty),
        (ColumnType::Real, Value::Integer(i)) => ColumnData::F64(Some(i as f64)),
        (ColumnType::Boolean, Value::Integer(i)) => ColumnData::Bit(Some(i != 0)),
        (_, Value::Integer(i)) => ColumnData::I64(Some(i)),
        (_, Value::Real(r)) => ColumnData::F64(Some(r)),
        (_, Value::Blob(b)) => ColumnData::Binary(Some(Cow::Owned(b))),
        // Staged as datetime2 (see `types::staging_type`).
        (ColumnType::Date, Value::Text(s)) => {
            let date = parse_date(&s).ok_or_else(|| bad(&s, ty))?;
            let midnight = Time::new(0, 7);
            ColumnData::DateTime2(Some(DateTime2::new(
                TdsDate::new(date.days_from_ce()),
                midnight,
            )))
        }
        (ColumnType::DateTime, Value::Text(s)) => {
            let (date, time) = parse_datetime(&s).ok_or_else(|| bad(&s, ty))?;
            let date = TdsDate::new(date.days_from_ce());
            ColumnData::DateTime2(Some(DateTime2::new(date, Time::new(time.ticks, 7))))
        }
        (ColumnType::Time, Value::Text(s)) => {
            let time = parse_time(&s).ok_or_else(|| bad(&s, ty))?;
            ColumnData::Time(Some(Time::new(time.ticks, 7)))
        }
        (ColumnType::Uuid, Value::Text(s)) => {
            ColumnData::Guid(Some(uuid::Uuid::parse_str(&s).map_err(|_| bad(&s, ty))?))
        }
        (_, Value::Text(s)) => ColumnData::String(Some(Cow::Owned(s))),
    };
    Ok(data)
}

fn bad(s: &str, ty: ColumnType) -> String {
    format!("{s:?} is not a {ty}")
}

/// NULL of the staging column's type: bulk load checks the variant
/// against the column even for NULL.
pub fn null_of(ty: ColumnType) -> ColumnData<'static> {
    match ty {
        ColumnType::Integer => ColumnData::I64(None),
        ColumnType::Real => ColumnData::F64(None),
        ColumnType::Boolean => ColumnData::Bit(None),
        ColumnType::Blob | ColumnType::BoundedBlob { .. } => ColumnData::Binary(None),
        ColumnType::Date | ColumnType::DateTime => ColumnData::DateTime2(None),
        ColumnType::Time => ColumnData::Time(None),
        ColumnType::Uuid => ColumnData::Guid(None),
        ColumnType::Text | ColumnType::BoundedText { .. } | ColumnType::Decimal { .. } => {
            ColumnData::String(None)
        }
    }
}

/// A value read from SQL Server as a package value, in the canonical form
/// of its type: decimals at their column's scale, dates and times as ISO
/// text, uuids lowercase, bits 0 or 1.
///
/// # Errors
/// A type no package type maps to (xml is read as text; sql_variant and
/// the like are not); the message names it.
pub fn from_column_data(data: ColumnData<'_>) -> Result<Value, String> {
    let value = match data {
        ColumnData::U8(v) => v.map(|n| Value::Integer(n.into())),
        ColumnData::I16(v) => v.map(|n| Value::Integer(n.into())),
        ColumnData::I32(v) => v.map(|n| Value::Integer(n.into())),
        ColumnData::I64(v) => v.map(Value::Integer),
        ColumnData::F32(v) => v.map(|n| Value::Real(n.into())),
        ColumnData::F64(v) => v.map(Value::Real),
        ColumnData::Bit(v) => v.map(|b| Value::Integer(b.into())),
        ColumnData::String(v) => v.map(|s| Value::Text(s.into_owned())),
        ColumnData::Guid(v) => v.map(|u| Value::Text(u.hyphenated().to_string())),
        ColumnData::Binary(v) => v.map(|b| Value::Blob(b.into_owned())),
        ColumnData::Numeric(v) => v.map(|n| Value::Text(format_decimal(n.value(), n.scale()))),
        ColumnData::Xml(v) => v.map(|x| Value::Text(x.to_string())),
        ColumnData::Date(v) => v.map(|d| text(date(d.days())?.to_string())).transpose()?,
        ColumnData::Time(v) => v.map(|t| Value::Text(time(t).to_string())),
        ColumnData::DateTime2(v) => v
            .map(|dt| Ok::<_, String>(datetime(date(dt.date().days())?, time(dt.time()))))
            .transpose()?,
        ColumnData::DateTime(v) => v.map(legacy_datetime).transpose()?,
        ColumnData::SmallDateTime(v) => v
            .map(|dt| {
                let minutes = u64::from(dt.seconds_fragments());
                since_1900(i64::from(dt.days()), minutes * 60 * TICKS_PER_SECOND)
            })
            .transpose()?,
        other => return Err(format!("a column of type {other:?} has no package type")),
    };
    Ok(value.unwrap_or(Value::Null))
}

fn text(s: String) -> Result<Value, String> {
    Ok(Value::Text(s))
}

fn date(days: u32) -> Result<Date, String> {
    Date::from_days_from_ce(days).ok_or_else(|| format!("day {days} is past 9999-12-31"))
}

/// A `time` of any scale, to 100 ns ticks.
fn time(t: Time) -> TimeOfDay {
    let up = 10u64.pow(7u32.saturating_sub(u32::from(t.scale())));
    TimeOfDay {
        ticks: t.increments() * up,
    }
}

fn datetime(date: Date, time: TimeOfDay) -> Value {
    Value::Text(format!("{date}T{time}"))
}

/// The legacy `datetime`: days since 1900-01-01 and 1/300 s ticks.
fn legacy_datetime(dt: tiberius::time::DateTime) -> Result<Value, String> {
    let fragments = u64::from(dt.seconds_fragments());
    // Rounded to the nearest 100 ns: 1/300 s is not a whole number of them.
    let ticks = (fragments * TICKS_PER_SECOND + 150) / 300;
    since_1900(i64::from(dt.days()), ticks)
}

fn since_1900(days: i64, ticks: u64) -> Result<Value, String> {
    const DAYS_1900: i64 = 693_595;
    let day = u32::try_from(DAYS_1900 + days).map_err(|_| format!("day {days} before year 1"))?;
    Ok(datetime(date(day)?, TimeOfDay { ticks }))
}
