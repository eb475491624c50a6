//! Values written with units in the configuration and on the command line:
//! sizes (`64MiB`) and durations (`500ms`), and the error for a value that
//! does not parse. Shared by `config` and `resource_config`.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// A value that does not parse (a flag or a TOML value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a size.
    #[error("{0:?} is not a size (examples: 4096, 512KiB, 64MiB, 1GiB)")]
    Size(String),
    /// A size with an unknown unit.
    #[error("unknown size unit {unit:?} in {value:?} (use KiB, MiB, GiB)")]
    SizeUnit {
        /// The unit.
        unit: String,
        /// The whole value.
        value: String,
    },
    /// A size that overflows.
    #[error("{0:?} is too large")]
    SizeTooLarge(String),
    /// Not a duration.
    #[error("{0:?} is not a duration (examples: 500ms, 3s, 2m)")]
    Duration(String),
    /// A duration with an unknown unit.
    #[error("unknown duration unit {unit:?} in {value:?} (use ms, s, m, h)")]
    DurationUnit {
        /// The unit.
        unit: String,
        /// The whole value.
        value: String,
    },
    /// Not a role.
    #[error("{0:?} is not a role (primary or standby)")]
    Role(String),
    /// Not a failover mode.
    #[error("{0:?} is not a failover mode (auto or manual)")]
    Failover(String),
    /// Not a sync mode.
    #[error(transparent)]
    SyncMode(#[from] hadr_ha::pair::UnknownSyncMode),
}

/// A byte size written with an optional binary unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| ValueError::Size(s.to_string()))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            other => {
                return Err(ValueError::SizeUnit {
                    unit: other.to_string(),
                    value: s.to_string(),
                })
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| ValueError::SizeTooLarge(s.to_string()))
    }
}

/// A duration written with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dur(#[serde(with = "dur_ms")] pub Duration);

mod dur_ms {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

impl FromStr for Dur {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| ValueError::Duration(s.to_string()))?;
        let secs = match unit.trim().to_ascii_lowercase().as_str() {
            "ms" => n / 1000.0,
            "" | "s" | "sec" | "secs" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            other => {
                return Err(ValueError::DurationUnit {
                    unit: other.to_string(),
                    value: s.to_string(),
                })
            }
        };
        // try_: from_secs_f64 panics past u64::MAX seconds ("3e30s", found
        // by the fuzz target `config`, fuzz/regressions/config).
        Duration::try_from_secs_f64(secs)
            .map(Dur)
            .map_err(|_| ValueError::Duration(s.to_string()))
    }
}

fn de_from_str_or_int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = ValueError>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Str(String),
    }
    let s = match Raw::deserialize(d)? {
        Raw::Int(i) => i.to_string(),
        Raw::Str(s) => s,
    };
    T::from_str(&s).map_err(serde::de::Error::custom)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_from_str_or_int(d)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_from_str_or_int(d)
    }
}
