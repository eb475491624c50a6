//! Converting between SQLite values and PostgreSQL wire values.
//!
//! The rule: once a column's type is announced, every value is coerced to it,
//! never sent as bytes of another type under that type's OID; a value that
//! cannot be coerced is an error (22P02), as PostgreSQL would raise.

use bytes::{BufMut, BytesMut};
use hadr_sql::PgType;
use rusqlite::types::Value;

use crate::errors::{sqlstate, PgError};

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;

/// Microseconds between the Unix epoch and PostgreSQL's.
const PG_EPOCH_UNIX_MICROS: i64 = PG_EPOCH_UNIX_SECS * 1_000_000;

/// Days between the Unix epoch and PostgreSQL's.
const PG_EPOCH_UNIX_DAYS: i64 = PG_EPOCH_UNIX_SECS / 86_400;

/// A binary timestamp or date outside what hadr can represent.
fn out_of_range(t: PgType) -> PgError {
    PgError::new(
        sqlstate::DATETIME_FIELD_OVERFLOW,
        format!("{} out of range", t.name()),
    )
}

/// PostgreSQL's spelling of the infinite timestamps and dates, whose binary
/// forms are the extreme values of the integer (i64 µs, i32 days).
fn infinity(positive: bool) -> Value {
    Value::Text(if positive { "infinity" } else { "-infinity" }.into())
}

/// Which infinity a text value spells, if it spells one.
fn as_infinity(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" => Some(true),
        "-infinity" => Some(false),
        _ => None,
    }
}

/// Binary timestamp (µs since 2000-01-01, i64::MAX/MIN = ±infinity) to text.
fn timestamp_from_binary(t: PgType, pg_micros: i64) -> Result<Value, PgError> {
    match pg_micros {
        i64::MAX => Ok(infinity(true)),
        i64::MIN => Ok(infinity(false)),
        m => m
            .checked_add(PG_EPOCH_UNIX_MICROS)
            .map(|unix| Value::Text(format_timestamp(unix)))
            .ok_or_else(|| out_of_range(t)),
    }
}

/// Binary date (days since 2000-01-01, i32::MAX/MIN = ±infinity) to text.
fn date_from_binary(pg_days: i32) -> Value {
    match pg_days {
        i32::MAX => infinity(true),
        i32::MIN => infinity(false),
        d => Value::Text(format_date(i64::from(d) + PG_EPOCH_UNIX_DAYS)),
    }
}

/// The PostgreSQL type that describes a value SQLite returned, for columns with no declared type.
pub fn type_of_value(v: &Value) -> PgType {
    match v {
        Value::Null | Value::Text(_) => PgType::Text,
        Value::Integer(_) => PgType::Int8,
        Value::Real(_) => PgType::Float8,
        Value::Blob(_) => PgType::Bytea,
    }
}

/// The wire size of a type in RowDescription (-1 = variable).
pub fn type_size(t: PgType) -> i16 {
    match t {
        PgType::Bool => 1,
        PgType::Int2 => 2,
        PgType::Int4 | PgType::Float4 | PgType::Date => 4,
        PgType::Int8 | PgType::Float8 | PgType::Time | PgType::Timestamp | PgType::Timestamptz => 8,
        PgType::Uuid => 16,
        _ => -1,
    }
}

fn bad(t: PgType, v: &Value) -> PgError {
    PgError::new(
        sqlstate::INVALID_TEXT_REPRESENTATION,
        format!(
            "invalid input syntax for type {}: {}",
            t.name(),
            value_text(v)
        ),
    )
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => format_float(*f),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => hex_bytea(b),
    }
}

fn hex_bytea(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("\\x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// PostgreSQL's float text output (shortest round-trip form, special values spelled out).
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        let s = format!("{f}");
        s
    }
}

fn as_i64(t: PgType, v: &Value) -> Result<i64, PgError> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::Real(f) => {
            let r = f.round();
            if r.is_finite() && r >= i64::MIN as f64 && r <= i64::MAX as f64 {
                Ok(r as i64)
            } else {
                Err(PgError::new(
                    sqlstate::NUMERIC_OUT_OF_RANGE,
                    format!("{} out of range", t.name()),
                ))
            }
        }
        Value::Text(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .or_else(|_| {
                    s.parse::<f64>().map_err(|_| ()).and_then(|f| {
                        if f.fract() == 0.0 && f.is_finite() {
                            Ok(f as i64)
                        } else {
                            Err(())
                        }
                    })
                })
                .map_err(|_| bad(t, v))
        }
        _ => Err(bad(t, v)),
    }
}

fn as_f64(t: PgType, v: &Value) -> Result<f64, PgError> {
    match v {
        Value::Integer(i) => Ok(*i as f64),
        Value::Real(f) => Ok(*f),
        Value::Text(s) => match s.trim() {
            "NaN" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => other.parse::<f64>().map_err(|_| bad(t, v)),
        },
        _ => Err(bad(t, v)),
    }
}

fn as_bool(t: PgType, v: &Value) -> Result<bool, PgError> {
    match v {
        Value::Integer(i) => Ok(*i != 0),
        Value::Real(f) => Ok(*f != 0.0),
        Value::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "y" | "yes" | "on" => Ok(true),
            "f" | "false" | "0" | "n" | "no" | "off" => Ok(false),
            _ => Err(bad(t, v)),
        },
        _ => Err(bad(t, v)),
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::Blob(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_string(),
            Err(_) => hex_bytea(b),
        },
        other => value_text(other),
    }
}

fn as_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Blob(b) => b.clone(),
        Value::Text(s) => s.as_bytes().to_vec(),
        other => value_text(other).into_bytes(),
    }
}

/// Encode one non-NULL value as `t` in text (0) or binary (1) format.
pub fn encode(v: &Value, t: PgType, binary: bool) -> Result<Vec<u8>, PgError> {
    if !binary {
        return Ok(match t {
            PgType::Bool => {
                if as_bool(t, v)? {
                    b"t".to_vec()
                } else {
                    b"f".to_vec()
                }
            }
            PgType::Int2 | PgType::Int4 | PgType::Int8 => as_i64(t, v)?.to_string().into_bytes(),
            PgType::Float4 | PgType::Float8 => format_float(as_f64(t, v)?).into_bytes(),
            PgType::Numeric => match v {
                Value::Integer(i) => i.to_string().into_bytes(),
                Value::Real(f) => format_float(*f).into_bytes(),
                Value::Text(s) if s.trim().parse::<f64>().is_ok() => s.trim().as_bytes().to_vec(),
                _ => return Err(bad(t, v)),
            },
            PgType::Bytea => hex_bytea(&as_bytes(v)).into_bytes(),
            // array_agg kept SQLite's 1/0 for the booleans it collected.
            PgType::BoolArray => bool_array_text(&as_text(v)).into_bytes(),
            _ => as_text(v).into_bytes(),
        });
    }
    Ok(match t {
        PgType::Bool => vec![u8::from(as_bool(t, v)?)],
        PgType::Int2 => {
            let i = as_i64(t, v)?;
            i16::try_from(i)
                .map_err(|_| PgError::new(sqlstate::NUMERIC_OUT_OF_RANGE, "smallint out of range"))?
                .to_be_bytes()
                .to_vec()
        }
        PgType::Int4 => {
            let i = as_i64(t, v)?;
            i32::try_from(i)
                .map_err(|_| PgError::new(sqlstate::NUMERIC_OUT_OF_RANGE, "integer out of range"))?
                .to_be_bytes()
                .to_vec()
        }
        PgType::Int8 => as_i64(t, v)?.to_be_bytes().to_vec(),
        PgType::Float4 => (as_f64(t, v)? as f32).to_be_bytes().to_vec(),
        PgType::Float8 => as_f64(t, v)?.to_be_bytes().to_vec(),
        PgType::Numeric => encode_numeric_binary(&match v {
            Value::Integer(i) => i.to_string(),
            Value::Real(f) => format_float(*f),
            Value::Text(s) => s.trim().to_string(),
            _ => return Err(bad(t, v)),
        })
        .ok_or_else(|| bad(t, v))?,
        PgType::Bytea => as_bytes(v),
        PgType::Jsonb => {
            let mut b = vec![1u8];
            b.extend_from_slice(as_text(v).as_bytes());
            b
        }
        PgType::Uuid => parse_uuid(&as_text(v)).ok_or_else(|| bad(t, v))?.to_vec(),
        PgType::Date => {
            let text = as_text(v);
            let days = match as_infinity(&text) {
                Some(true) => i32::MAX,
                Some(false) => i32::MIN,
                None => {
                    let days = parse_date(&text).ok_or_else(|| bad(t, v))?;
                    i32::try_from(days - PG_EPOCH_UNIX_DAYS).map_err(|_| out_of_range(t))?
                }
            };
            days.to_be_bytes().to_vec()
        }
        PgType::Timestamp | PgType::Timestamptz => {
            let text = as_text(v);
            let micros = match as_infinity(&text) {
                Some(true) => i64::MAX,
                Some(false) => i64::MIN,
                None => parse_timestamp(&text)
                    .ok_or_else(|| bad(t, v))?
                    .checked_sub(PG_EPOCH_UNIX_MICROS)
                    .ok_or_else(|| out_of_range(t))?,
            };
            micros.to_be_bytes().to_vec()
        }
        PgType::Time => {
            let micros = parse_time(&as_text(v)).ok_or_else(|| bad(t, v))?;
            micros.to_be_bytes().to_vec()
        }
        // hadr keeps these as PostgreSQL's text form only (catalog
        // queries); their binary form is not built.
        PgType::TextArray | PgType::Int2Vector | PgType::BoolArray => {
            return Err(PgError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("hadr sends {} in text format only", t.name()),
            ))
        }
        _ => as_text(v).into_bytes(),
    })
}

/// Append a DataRow body field (length + bytes, or -1 for NULL).
pub fn put_field(buf: &mut BytesMut, field: Option<&[u8]>) {
    match field {
        None => buf.put_i32(-1),
        Some(b) => {
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
    }
}

/// `{1,0,NULL}` as PostgreSQL writes a `bool[]`: `{t,f,NULL}`.
fn bool_array_text(s: &str) -> String {
    let Some(inner) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) else {
        return s.to_string();
    };
    if inner.is_empty() {
        return "{}".into();
    }
    let items: Vec<&str> = inner
        .split(',')
        .map(|e| match e {
            "1" | "t" | "true" => "t",
            "0" | "f" | "false" => "f",
            other => other,
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// Decode a bound parameter of type `t` into an SQLite value.
pub fn decode_param(bytes: Option<&[u8]>, t: PgType, binary: bool) -> Result<Value, PgError> {
    let Some(b) = bytes else {
        return Ok(Value::Null);
    };
    let bad_bin = |what: &str| {
        PgError::new(
            sqlstate::INVALID_BINARY_REPRESENTATION,
            format!(
                "incorrect binary data format in bind parameter of type {}: {what}",
                t.name()
            ),
        )
    };
    if binary {
        let fixed = |n: usize| -> Result<&[u8], PgError> {
            if b.len() == n {
                Ok(b)
            } else {
                Err(bad_bin(&format!("expected {n} bytes, got {}", b.len())))
            }
        };
        return Ok(match t {
            PgType::Bool => Value::Integer(i64::from(fixed(1)?[0] != 0)),
            PgType::Int2 => {
                let x = fixed(2)?;
                Value::Integer(i64::from(i16::from_be_bytes([x[0], x[1]])))
            }
            PgType::Int4 => {
                let x = fixed(4)?;
                Value::Integer(i64::from(i32::from_be_bytes([x[0], x[1], x[2], x[3]])))
            }
            PgType::Int8 => {
                let x = fixed(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(x);
                Value::Integer(i64::from_be_bytes(a))
            }
            PgType::Float4 => {
                let x = fixed(4)?;
                Value::Real(f64::from(f32::from_be_bytes([x[0], x[1], x[2], x[3]])))
            }
            PgType::Float8 => {
                let x = fixed(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(x);
                Value::Real(f64::from_be_bytes(a))
            }
            PgType::Bytea | PgType::Unknown => Value::Blob(b.to_vec()),
            PgType::Numeric => {
                let s = decode_numeric_binary(b).ok_or_else(|| bad_bin("malformed numeric"))?;
                text_number(&s).unwrap_or(Value::Text(s))
            }
            PgType::Uuid => {
                let x = fixed(16)?;
                Value::Text(format_uuid(x))
            }
            PgType::Timestamp | PgType::Timestamptz => {
                let x = fixed(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(x);
                timestamp_from_binary(t, i64::from_be_bytes(a))?
            }
            PgType::Date => {
                let x = fixed(4)?;
                date_from_binary(i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
            }
            PgType::Jsonb => {
                let s = b.get(1..).ok_or_else(|| bad_bin("empty jsonb"))?;
                Value::Text(
                    String::from_utf8(s.to_vec()).map_err(|_| bad_bin("jsonb is not UTF-8"))?,
                )
            }
            _ => Value::Text(
                String::from_utf8(b.to_vec()).map_err(|_| bad_bin("text is not UTF-8"))?,
            ),
        });
    }
    let s = std::str::from_utf8(b).map_err(|_| {
        PgError::new(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            "invalid byte sequence for encoding \"UTF8\"",
        )
    })?;
    let text_err = || {
        PgError::new(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {}: \"{s}\"", t.name()),
        )
    };
    Ok(match t {
        PgType::Bool => Value::Integer(i64::from(as_bool(t, &Value::Text(s.to_string()))?)),
        PgType::Int2 | PgType::Int4 | PgType::Int8 => {
            Value::Integer(s.trim().parse().map_err(|_| text_err())?)
        }
        PgType::Float4 | PgType::Float8 => Value::Real(as_f64(t, &Value::Text(s.to_string()))?),
        PgType::Numeric => text_number(s).ok_or_else(text_err)?,
        PgType::Bytea => Value::Blob(parse_bytea_text(s).ok_or_else(text_err)?),
        _ => Value::Text(s.to_string()),
    })
}

fn text_number(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Integer(i));
    }
    s.parse::<f64>().ok().map(Value::Real)
}

fn parse_bytea_text(s: &str) -> Option<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        if hex.len() % 2 != 0 {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect()
    } else {
        // Escape format: backslash-octal sequences and doubled backslashes.
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                if bytes.get(i + 1) == Some(&b'\\') {
                    out.push(b'\\');
                    i += 2;
                } else {
                    let oct = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
                    out.push(u8::from_str_radix(oct, 8).ok()?);
                    i += 4;
                }
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Some(out)
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s
        .chars()
        .filter(|c| *c != '-' && *c != '{' && *c != '}')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn format_uuid(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Days since the Unix epoch for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let date = s.get(..10)?;
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let mut it = hms.split(':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let sec: i64 = it.next().unwrap_or("0").parse().ok()?;
    let frac_digits: String = frac
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .take(6)
        .collect();
    let micros: i64 = if frac_digits.is_empty() {
        0
    } else {
        format!("{frac_digits:0<6}").parse().ok()?
    };
    // Checked: the fields come from stored text, which may hold anything.
    h.checked_mul(60)?
        .checked_add(m)?
        .checked_mul(60)?
        .checked_add(sec)?
        .checked_mul(1_000_000)?
        .checked_add(micros)
}

/// Unix micros of 'YYYY-MM-DD[ T]HH:MM:SS[.ffffff][Z|+00]' (offsets other than UTC are applied).
fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let days = parse_date(s)?;
    let rest = s.get(10..).unwrap_or("").trim_start_matches(['T', ' ']);
    let midnight = days.checked_mul(86_400_000_000)?;
    if rest.is_empty() {
        return Some(midnight);
    }
    let (time, offset_secs) = match rest.find(['+', '-', 'Z']) {
        Some(i) => {
            let (t, z) = rest.split_at(i);
            let off = if z == "Z" {
                0
            } else {
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let digits: Vec<&str> = z[1..].split(':').collect();
                let h: i64 = digits.first()?.get(..2)?.parse().ok()?;
                let m: i64 = digits.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
                sign * m.checked_mul(60)?.checked_add(h * 3600)?
            };
            (t, off)
        }
        None => (rest, 0),
    };
    midnight
        .checked_add(parse_time(time)?)?
        .checked_sub(offset_secs.checked_mul(1_000_000)?)
}

fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

pub(crate) fn format_timestamp(unix_micros: i64) -> String {
    let days = unix_micros.div_euclid(86_400_000_000);
    let rem = unix_micros.rem_euclid(86_400_000_000);
    let secs = rem / 1_000_000;
    let micros = rem % 1_000_000;
    let base = format!(
        "{} {:02}:{:02}:{:02}",
        format_date(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// PostgreSQL binary NUMERIC from decimal text.
fn encode_numeric_binary(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if s.eq_ignore_ascii_case("nan") {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&0xC000u16.to_be_bytes());
        out.extend_from_slice(&0i16.to_be_bytes());
        return Some(out);
    }
    // Normalise exponent forms (1e-7) through f64 formatting with enough digits.
    let owned;
    let s = if s.contains(['e', 'E']) {
        let f: f64 = s.parse().ok()?;
        owned = format!("{f:.17}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string();
        owned.as_str()
    } else {
        s
    };
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac_part) = s.split_once('.').unwrap_or((s, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.chars().all(|c| c.is_ascii_digit())
        || !frac_part.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let dscale = frac_part.len() as i16;
    let int_part = int_part.trim_start_matches('0');
    // Pad the integer part on the left and the fraction on the right to groups of 4.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let int_digits = format!("{}{}", "0".repeat(int_pad), int_part);
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let frac_digits = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let mut groups: Vec<i16> = Vec::new();
    for i in (0..int_digits.len()).step_by(4) {
        groups.push(int_digits[i..i + 4].parse().ok()?);
    }
    let int_groups = groups.len() as i16;
    for i in (0..frac_digits.len()).step_by(4) {
        groups.push(frac_digits[i..i + 4].parse().ok()?);
    }
    let mut weight = int_groups - 1;
    // Strip leading zero groups (adjusting weight) and trailing zero groups.
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(
        &(if neg && !groups.is_empty() {
            0x4000u16
        } else {
            0
        })
        .to_be_bytes(),
    );
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

fn decode_numeric_binary(b: &[u8]) -> Option<String> {
    let rd = |i: usize| -> Option<i16> { Some(i16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])) };
    // A negative count was taken as a huge usize (a panic in
    // Vec::with_capacity; fuzz/regressions/pg_values): the count must be
    // what the value holds, as PostgreSQL's numeric_recv requires.
    let ndigits = usize::try_from(rd(0)?).ok()?;
    if b.len() != 8 + 2 * ndigits {
        return None;
    }
    let weight = i64::from(rd(2)?);
    let sign = rd(4)? as u16;
    let dscale = rd(6)?.max(0) as usize;
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    if sign != 0 && sign != 0x4000 {
        return None;
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let d = rd(8 + 2 * i)?;
        if !(0..10_000).contains(&d) {
            return None;
        }
        digits.push(d);
    }
    let mut int_s = String::new();
    for w in 0..=weight.max(-1) {
        let idx = w as usize;
        let d = digits.get(idx).copied().unwrap_or(0);
        if int_s.is_empty() {
            int_s.push_str(&d.to_string())
        } else {
            int_s.push_str(&format!("{d:04}"))
        }
    }
    if int_s.is_empty() {
        int_s.push('0');
    }
    let mut frac_s = String::new();
    let mut pos = weight + 1;
    while frac_s.len() < dscale {
        let d = if pos < 0 {
            0
        } else {
            digits.get(pos as usize).copied().unwrap_or(0)
        };
        frac_s.push_str(&format!("{d:04}"));
        pos += 1;
    }
    frac_s.truncate(dscale);
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    s.push_str(&int_s);
    if dscale > 0 {
        s.push('.');
        s.push_str(&frac_s);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_round_trips() {
        for s in [
            "0",
            "1",
            "-1",
            "12345.678",
            "0.0001",
            "100000000",
            "-0.5",
            "3.14159265",
        ] {
            let b = encode_numeric_binary(s).unwrap();
            let back = decode_numeric_binary(&b).unwrap();
            assert_eq!(
                back.parse::<f64>().unwrap(),
                s.parse::<f64>().unwrap(),
                "{s} -> {back}"
            );
        }
    }

    /// Found by the fuzz target `pg_values` (fuzz/regressions/pg_values):
    /// a negative digit count panicked in Vec::with_capacity.
    #[test]
    fn malformed_binary_numerics_are_an_error_not_a_panic() {
        let crash = [0xf3, 0xa1, 0x00, 0xdd, 0x3d, 0x4b, 0x23, 0x64, 0x74];
        assert!(decode_param(Some(&crash), PgType::Numeric, true).is_err());
        let numeric = |ndigits: i16, sign: u16, digits: &[i16], extra: usize| {
            let mut b = ndigits.to_be_bytes().to_vec();
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&sign.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            for d in digits {
                b.extend_from_slice(&d.to_be_bytes());
            }
            b.resize(b.len() + extra, 0);
            decode_numeric_binary(&b)
        };
        assert_eq!(numeric(1, 0, &[42], 0).as_deref(), Some("42"));
        assert_eq!(numeric(1, 0x4000, &[42], 0).as_deref(), Some("-42"));
        assert_eq!(numeric(-1, 0, &[], 0), None);
        assert_eq!(numeric(2, 0, &[42], 0), None, "fewer digits than counted");
        assert_eq!(numeric(1, 0, &[42], 2), None, "bytes after the digits");
        assert_eq!(numeric(1, 0, &[10_000], 0), None, "a digit is base 10000");
        assert_eq!(numeric(1, 0x1234, &[1], 0), None, "unknown sign");
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_timestamp("2024-02-29 13:45:01.25").unwrap();
        assert_eq!(format_timestamp(t), "2024-02-29 13:45:01.250000");
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(format_date(parse_date("2000-01-01").unwrap()), "2000-01-01");
    }

    fn binary_timestamp(micros: i64) -> Result<Value, PgError> {
        decode_param(Some(&micros.to_be_bytes()), PgType::Timestamp, true)
    }

    #[test]
    fn infinite_timestamps_and_dates_map_to_infinity() {
        assert_eq!(binary_timestamp(i64::MAX).unwrap(), infinity(true));
        assert_eq!(binary_timestamp(i64::MIN).unwrap(), infinity(false));
        let date = |d: i32| decode_param(Some(&d.to_be_bytes()), PgType::Date, true).unwrap();
        assert_eq!(date(i32::MAX), infinity(true));
        assert_eq!(date(i32::MIN), infinity(false));
        assert_eq!(date(0), Value::Text("2000-01-01".into()));
        // And back: 'infinity' text encodes as the extreme value.
        for (text, ts, d) in [
            ("infinity", i64::MAX, i32::MAX),
            ("-infinity", i64::MIN, i32::MIN),
        ] {
            let v = Value::Text(text.into());
            assert_eq!(
                encode(&v, PgType::Timestamptz, true).unwrap(),
                ts.to_be_bytes()
            );
            assert_eq!(encode(&v, PgType::Date, true).unwrap(), d.to_be_bytes());
        }
    }

    #[test]
    fn timestamps_near_the_ends_of_i64_are_an_error_not_a_panic() {
        let e = binary_timestamp(i64::MAX - 1).unwrap_err();
        assert_eq!(e.code, sqlstate::DATETIME_FIELD_OVERFLOW);
        assert!(e.message.contains("out of range"), "{e}");
        // The far past still fits (the epoch offset is added, not subtracted).
        assert!(binary_timestamp(i64::MIN + 1).is_ok());
        // Stored text with absurd fields is refused, not overflowed.
        for text in [
            "2024-01-01 99999999999999:00:00",
            "2024-01-01 00:99999999999999999:00",
            "2024-01-01 00:00:00+01:99999999999999999",
        ] {
            let v = Value::Text(text.into());
            assert!(encode(&v, PgType::Timestamp, true).is_err(), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_binary_timestamp_decodes_without_panicking(
            // Uniform i64 seldom lands within the epoch offset (~9.5e14 µs)
            // of either end, where overflow lurks: weight the ends.
            micros in proptest::prop_oneof![
                proptest::num::i64::ANY,
                i64::MAX - 2 * PG_EPOCH_UNIX_MICROS..=i64::MAX,
                i64::MIN..=i64::MIN + 2 * PG_EPOCH_UNIX_MICROS,
            ],
        ) {
            let _ = binary_timestamp(micros);
            let _ = decode_param(Some(&(micros as i32).to_be_bytes()), PgType::Date, true);
        }

        #[test]
        fn binary_timestamps_of_years_1_to_9999_round_trip(
            // 0001-01-01 .. 9999-12-31 23:59:59.999999, in µs since 2000-01-01.
            micros in -63_082_281_600_000_000i64..252_455_615_999_999_999i64,
        ) {
            let text = binary_timestamp(micros).unwrap();
            let back = encode(&text, PgType::Timestamp, true).unwrap();
            proptest::prop_assert_eq!(back, micros.to_be_bytes().to_vec());
        }
    }

    #[test]
    fn coercion_never_mislabels() {
        assert_eq!(
            encode(&Value::Real(2.0), PgType::Int8, true).unwrap(),
            2i64.to_be_bytes()
        );
        assert!(encode(&Value::Text("abc".into()), PgType::Int8, false).is_err());
        assert_eq!(
            encode(&Value::Integer(7), PgType::Text, false).unwrap(),
            b"7"
        );
        assert_eq!(
            encode(&Value::Integer(1), PgType::Bool, false).unwrap(),
            b"t"
        );
        assert_eq!(
            encode(&Value::Blob(vec![0xde, 0xad]), PgType::Bytea, false).unwrap(),
            b"\\xdead"
        );
    }

    #[test]
    fn params_decode() {
        assert_eq!(
            decode_param(Some(b"42"), PgType::Int8, false).unwrap(),
            Value::Integer(42)
        );
        assert_eq!(
            decode_param(Some(&5i64.to_be_bytes()), PgType::Int8, true).unwrap(),
            Value::Integer(5)
        );
        assert!(decode_param(Some(&[1, 2, 3]), PgType::Int8, true).is_err());
        assert_eq!(
            decode_param(Some(b"\\x0102"), PgType::Bytea, false).unwrap(),
            Value::Blob(vec![1, 2])
        );
        assert_eq!(
            decode_param(None, PgType::Text, false).unwrap(),
            Value::Null
        );
    }
}
