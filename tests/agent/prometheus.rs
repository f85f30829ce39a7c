//! A strict parser of the Prometheus text exposition format (0.0.4), so
//! tests read `/metrics` as Prometheus would and fail on anything it would
//! refuse: a sample of an undeclared family, a malformed label, a histogram
//! whose buckets are not cumulative or whose `+Inf` bucket is not its count.

use std::collections::{BTreeMap, HashMap};

/// One sample: name, labels (sorted) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name to (type, help).
    pub families: HashMap<String, (String, String)>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The family's type, when declared with a help text.
    pub fn kind(&self, family: &str) -> Option<&str> {
        self.families
            .get(family)
            .filter(|(_, help)| !help.is_empty())
            .map(|(kind, _)| kind.as_str())
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad value `{text}`")),
    }
}

/// `{a="x",b="y"}` at the start of `rest`; returns the labels and what follows.
fn parse_labels(rest: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = rest.strip_prefix('{').expect("called on `{`");
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without `=`")?;
        let name = rest[..eq].trim();
        if !valid_name(name) || name.starts_with("__") {
            return Err(format!("bad label name `{name}`"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample belongs to: itself, or a histogram's or summary's.
fn family_of<'a>(name: &'a str, families: &HashMap<String, (String, String)>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families
                .get(base)
                .is_some_and(|(k, _)| k == "histogram" || (k == "summary" && suffix != "_bucket"))
            {
                return Some(base);
            }
        }
    }
    None
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line}", n + 1);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), help) => {
                    if !valid_name(name) {
                        return Err(at("bad metric name".into()));
                    }
                    out.families.entry(name.to_owned()).or_default().1 =
                        help.unwrap_or("").to_owned();
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("bad type `{kind}`")));
                    }
                    let family = out.families.entry(name.to_owned()).or_default();
                    if !family.0.is_empty() {
                        return Err(at("TYPE given twice".into()));
                    }
                    family.0 = kind.to_owned();
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !valid_name(name) {
            return Err(at(format!("bad metric name `{name}`")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing text".into()));
        }
        let family = family_of(name, &out.families)
            .ok_or_else(|| at(format!("`{name}` belongs to no declared family")))?;
        if out.families[family].0.is_empty() {
            return Err(at(format!("family `{family}` has no TYPE")));
        }
        if name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(at("a bucket without `le`".into()));
        }
        if !seen.insert(format!("{name}{labels:?}")) {
            return Err(at("the same sample twice".into()));
        }
        out.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&out)?;
    Ok(out)
}

/// Buckets cumulative, ending in `+Inf` equal to `_count`.
fn check_histograms(out: &Exposition) -> Result<(), String> {
    for (family, (kind, _)) in &out.families {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in out
            .samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut rest = s.labels.clone();
            let le = parse_value(&rest.remove("le").unwrap())?;
            series
                .entry(format!("{rest:?}"))
                .or_default()
                .push((le, s.value));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family}{labels}: buckets not cumulative"));
            }
            let (le, last) = *buckets.last().unwrap();
            let count = out
                .samples
                .iter()
                .find(|s| {
                    s.name == format!("{family}_count") && format!("{:?}", s.labels) == labels
                })
                .map(|s| s.value);
            if le != f64::INFINITY || Some(last) != count {
                return Err(format!(
                    "{family}{labels}: +Inf bucket {last} is not _count {count:?}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"q\"} 3\n\
                # HELP h Seconds.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 1.5\nh_count 2\n";
    let e = parse(good).unwrap();
    assert_eq!(e.value("a_total", &[("x", "1\"q")]), Some(3.0));
    assert_eq!(e.kind("h"), Some("histogram"));
    for bad in [
        "undeclared 1\n",
        "# TYPE a counter\na{x=1} 1\n",
        "# TYPE a counter\na 1 2 3\n",
        "# TYPE a counter\na one\n",
        "# TYPE a counter\na 1\na 2\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
        "# TYPE a bogus\n",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad}");
    }
}
