use super::*;

#[test]
fn every_type_name_round_trips_through_display_and_parse() {
    let all = [
        ColumnType::Integer,
        ColumnType::Real,
        ColumnType::Text,
        ColumnType::Blob,
        ColumnType::Boolean,
        ColumnType::Decimal {
            precision: 32,
            scale: 6,
        },
        ColumnType::Date,
        ColumnType::DateTime,
        ColumnType::Time,
        ColumnType::Uuid,
        ColumnType::BoundedText { max_len: 60 },
        ColumnType::BoundedBlob { max_len: 16 },
    ];
    for ty in all {
        assert_eq!(ty.to_string().parse::<ColumnType>(), Ok(ty), "{ty}");
    }
    assert_eq!(
        "DECIMAL( 10 , 2 )".parse(),
        Ok(ColumnType::Decimal {
            precision: 10,
            scale: 2
        })
    );
}

#[test]
fn out_of_range_type_parameters_are_refused_with_the_limit() {
    for (spec, needle) in [
        ("text(0)", "1 to 4000"),
        ("text(4001)", "1 to 4000"),
        ("blob(8001)", "1 to 8000"),
        ("decimal(39,2)", "1 to 38"),
        ("decimal(5,6)", "scale"),
        ("decimal(5)", "precision and a scale"),
        ("text(x)", "not a number"),
        ("money", "is not a type"),
        ("text(5", "closing parenthesis"),
    ] {
        let err = spec.parse::<ColumnType>().unwrap_err();
        assert!(err.contains(needle), "{spec}: {err}");
    }
}

#[test]
fn decimals_have_one_canonical_spelling_per_scale() {
    let ty = ColumnType::Decimal {
        precision: 6,
        scale: 2,
    };
    for ok in ["0.00", "-12.50", "9999.99", "-0.01"] {
        assert_eq!(value_mismatch(ty, &Value::Text(ok.into())), None, "{ok}");
    }
    for (bad, needle) in [
        ("12.5", "write 12.50"),
        ("012.50", "write 12.50"),
        ("12.505", "does not fit"),
        ("10000.00", "does not fit"),
        ("1e3", "not a decimal"),
        ("+1.00", "not a decimal"),
        ("1.", "not a decimal"),
        (".5", "not a decimal"),
    ] {
        let why = value_mismatch(ty, &Value::Text(bad.into())).unwrap();
        assert!(why.contains(needle), "{bad}: {why}");
    }
    assert!(value_mismatch(ty, &Value::Real(1.5))
        .unwrap()
        .contains("Real"));
    let d = parse_decimal("-12.5").unwrap();
    assert_eq!((d.mantissa, d.scale, d.int_digits), (-125, 1, 2));
    assert_eq!(d.to_canonical(3).as_deref(), Some("-12.500"));
    assert_eq!(
        parse_decimal("12.50").unwrap().to_canonical(1).as_deref(),
        Some("12.5")
    );
    assert_eq!(parse_decimal("12.55").unwrap().to_canonical(1), None);
    assert_eq!(format_decimal(5, 3), "0.005");
    assert_eq!(format_decimal(-1250, 0), "-1250");
    let max = "9".repeat(38);
    assert!(parse_decimal(&max).is_some() && parse_decimal(&format!("{max}9")).is_none());
}

#[test]
fn dates_convert_to_and_from_days_since_year_one() {
    for (text, days) in [
        ("0001-01-01", 0),
        ("0001-12-31", 364),
        ("1900-01-01", 693_595),
        ("2000-02-29", 730_178),
        ("2026-11-24", 739_943),
        ("9999-12-31", 3_652_058),
    ] {
        let date = parse_date(text).unwrap();
        assert_eq!(date.days_from_ce(), days, "{text}");
        assert_eq!(Date::from_days_from_ce(days), Some(date), "{text}");
        assert_eq!(date.to_string(), text);
    }
    assert_eq!(Date::from_days_from_ce(3_652_059), None);
    for bad in [
        "2026-02-29",
        "2026-13-01",
        "0000-01-01",
        "2026-1-01",
        "26-01-01",
        "2026-01-01T",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
}

#[test]
fn times_keep_100ns_and_drop_trailing_zeros() {
    let t = parse_time("23:59:59.9999999").unwrap();
    assert_eq!(t.ticks, 86_400 * TICKS_PER_SECOND - 1);
    assert_eq!(t.to_string(), "23:59:59.9999999");
    assert_eq!(parse_time("08:05:00.5").unwrap().to_string(), "08:05:00.5");
    assert_eq!(parse_time("00:00:00").unwrap().ticks, 0);
    for bad in [
        "24:00:00",
        "08:60:00",
        "8:00:00",
        "08:00:00.50",
        "08:00:00.12345678",
        "08:00",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
    let ty = ColumnType::DateTime;
    assert_eq!(
        value_mismatch(ty, &Value::Text("2026-11-24T13:05:00.25".into())),
        None
    );
    assert!(value_mismatch(ty, &Value::Text("2026-11-24 13:05:00".into())).is_some());
}

#[test]
fn text_and_blob_bounds_count_utf16_units_and_bytes() {
    let ty = ColumnType::BoundedText { max_len: 3 };
    assert_eq!(value_mismatch(ty, &Value::Text("abc".into())), None);
    assert_eq!(value_mismatch(ty, &Value::Text("éàü".into())), None);
    let why = value_mismatch(ty, &Value::Text("a😀b".into())).unwrap();
    assert!(why.contains("4 characters, the limit is 3"), "{why}");
    let ty = ColumnType::BoundedBlob { max_len: 2 };
    assert!(value_mismatch(ty, &Value::Blob(vec![0; 3]))
        .unwrap()
        .contains("3 bytes"));
}

#[test]
fn booleans_and_uuids_have_one_form() {
    assert_eq!(
        value_mismatch(ColumnType::Boolean, &Value::Integer(1)),
        None
    );
    assert!(value_mismatch(ColumnType::Boolean, &Value::Integer(2))
        .unwrap()
        .contains("0 or 1"));
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    assert_eq!(
        value_mismatch(ColumnType::Uuid, &Value::Text(id.into())),
        None
    );
    assert!(value_mismatch(ColumnType::Uuid, &Value::Text(id.to_uppercase())).is_some());
    assert!(value_mismatch(ColumnType::Uuid, &Value::Text(id.replace('-', ""))).is_some());
}

#[test]
fn reals_are_finite() {
    assert_eq!(value_mismatch(ColumnType::Real, &Value::Real(-0.5)), None);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let why = value_mismatch(ColumnType::Real, &Value::Real(bad)).unwrap();
        assert!(why.contains("not a finite number"), "{why}");
    }
}

/// Every decimal of at most 15 significant digits survives the trip
/// through the number a NUMERIC column holds, spelled at its scale.
/// The float of a decimal is the nearest one, the float its text parses
/// to, for random decimals of up to 15 significant digits at every scale
/// (the division fast path and the text path agree).
#[test]
fn a_decimals_float_is_the_one_its_text_parses_to() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..200_000 {
        let digits = rng.gen_range(1..=15u32);
        let mantissa = rng.gen_range(0..10i128.pow(digits)) * if rng.gen() { 1 } else { -1 };
        let scale = rng.gen_range(1..=24u8);
        let text = format_decimal(mantissa, scale);
        let decimal = parse_decimal(&text).unwrap();
        let parsed: f64 = text.parse().unwrap();
        match decimal.to_number().unwrap() {
            Value::Real(r) => assert_eq!(r.to_bits(), parsed.to_bits(), "{text}"),
            Value::Integer(i) => assert_eq!(i as f64, parsed, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn decimals_round_trip_through_numbers() {
    let cases = [
        ("0.00", 2),
        ("-0.01", 2),
        ("12.50", 2),
        ("99999999.99", 2),
        ("1234567890123.45", 2),
        ("999999999999999", 0),
        ("-999999999999999.0000", 4),
        ("0.000000000000001", 15),
        ("97.864647299429", 12),
        ("123456789012345678", 0),
        ("0.1000000000000000", 16),
    ];
    for (text, scale) in cases {
        let number = parse_decimal(text).unwrap().to_number().unwrap();
        assert_eq!(
            decimal_from_number(&number, scale).as_deref(),
            Some(text),
            "{text} as {number:?}"
        );
    }
    assert!(matches!(
        parse_decimal("12.00").unwrap().to_number(),
        Some(Value::Integer(12))
    ));
    // Sixteen significant digits are more than every float holds.
    assert_eq!(
        parse_decimal("0.3333333333333333").unwrap().to_number(),
        None
    );
    assert_eq!(
        parse_decimal("1234567890123456.7").unwrap().to_number(),
        None
    );
    // A number with more fraction digits than the scale has no spelling.
    assert_eq!(decimal_from_number(&Value::Real(1.005), 2), None);
    assert_eq!(decimal_from_number(&Value::Real(f64::NAN), 2), None);
}

/// Telling a canonical decimal without writing it agrees with writing it,
/// for every spelling of a few values at every scale near theirs.
#[test]
fn is_canonical_agrees_with_to_canonical() {
    let spellings = [
        "0",
        "00",
        "0.0",
        "0.00",
        "-0",
        "-0.00",
        "00.50",
        "0.50",
        "0.5",
        "12.50",
        "012.50",
        "-12.50",
        "-012.5",
        "-12.500",
        "12",
        "-12",
        "1000",
        "1000.0000",
        "-0.001",
        "0.010",
        "99999999999999999999999999999999999999",
        "-1.0000000000000000000000000000000000000",
    ];
    for s in spellings {
        let d = parse_decimal(s).unwrap_or_else(|| panic!("{s} parses"));
        for scale in 0..=6 {
            assert_eq!(
                d.is_canonical(s, scale),
                d.to_canonical(scale).as_deref() == Some(s),
                "{s} at scale {scale}"
            );
        }
    }
}

/// Every length from 1 to 38 digits, with leading zeros and the point
/// anywhere, and either sign, parses to the value `i128` parsing gives its
/// digits, with its scale and integer digits.
#[test]
fn decimals_of_every_length_parse_to_their_digits() {
    let digits: String = "98765432109876543210987654321098765432".into();
    for len in 1..=38 {
        let all = &digits[..len];
        let want: i128 = all.parse().unwrap();
        for point in 0..len {
            for zeros in ["", "0", "0000000000000000000"] {
                let (int, frac) = all.split_at(len - point);
                let text = if point == 0 {
                    format!("{zeros}{int}")
                } else {
                    format!("{zeros}{int}.{frac}")
                };
                for (sign, value) in [("", want), ("-", -want)] {
                    let d = parse_decimal(&format!("{sign}{text}"))
                        .unwrap_or_else(|| panic!("{sign}{text} parses"));
                    assert_eq!(d.mantissa, value, "{sign}{text}");
                    assert_eq!(usize::from(d.scale), point, "{sign}{text}");
                    assert_eq!(usize::from(d.int_digits), len - point, "{sign}{text}");
                }
            }
        }
    }
}
