//! PostgreSQL types hadr announces, and how they relate to SQLite.

/// A PostgreSQL type hadr announces on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PgType {
    /// `bool`.
    Bool,
    /// `int2` / `smallint`.
    Int2,
    /// `int4` / `integer`.
    Int4,
    /// `int8` / `bigint`.
    Int8,
    /// `float4` / `real`.
    Float4,
    /// `float8` / `double precision`.
    Float8,
    /// `numeric` / `decimal`.
    Numeric,
    /// `text`.
    Text,
    /// `varchar` / `character varying`.
    Varchar,
    /// `bpchar` / `char(n)`.
    Bpchar,
    /// `bytea`.
    Bytea,
    /// `date`.
    Date,
    /// `time` (without time zone).
    Time,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`.
    Timestamptz,
    /// `json`.
    Json,
    /// `jsonb`.
    Jsonb,
    /// `uuid`.
    Uuid,
    /// `unknown` (an untyped literal or parameter).
    Unknown,
    /// `text[]`: only what catalog queries' `array_agg` makes, in
    /// PostgreSQL's array text (crates/hadr-sql/src/catalog/columns.rs).
    TextArray,
    /// `int2vector` (`pg_index.indkey`, `indoption`): numbers separated
    /// by spaces.
    Int2Vector,
    /// `bool[]`: `array_agg` of a comparison in a catalog query.
    BoolArray,
}

/// Every variant, for table-driven lookups and tests.
const ALL: [PgType; 22] = [
    PgType::Bool,
    PgType::Int2,
    PgType::Int4,
    PgType::Int8,
    PgType::Float4,
    PgType::Float8,
    PgType::Numeric,
    PgType::Text,
    PgType::Varchar,
    PgType::Bpchar,
    PgType::Bytea,
    PgType::Date,
    PgType::Time,
    PgType::Timestamp,
    PgType::Timestamptz,
    PgType::Json,
    PgType::Jsonb,
    PgType::Uuid,
    PgType::Unknown,
    PgType::TextArray,
    PgType::Int2Vector,
    PgType::BoolArray,
];

impl PgType {
    /// The type's OID in PostgreSQL's `pg_type` catalog.
    pub fn oid(self) -> u32 {
        match self {
            PgType::Bool => 16,
            PgType::Bytea => 17,
            PgType::Int8 => 20,
            PgType::Int2 => 21,
            PgType::Int4 => 23,
            PgType::Text => 25,
            PgType::Json => 114,
            PgType::Float4 => 700,
            PgType::Float8 => 701,
            PgType::Unknown => 705,
            PgType::Bpchar => 1042,
            PgType::Varchar => 1043,
            PgType::Date => 1082,
            PgType::Time => 1083,
            PgType::Timestamp => 1114,
            PgType::Timestamptz => 1184,
            PgType::Numeric => 1700,
            PgType::Uuid => 2950,
            PgType::Jsonb => 3802,
            PgType::TextArray => 1009,
            PgType::Int2Vector => 22,
            PgType::BoolArray => 1000,
        }
    }

    /// The type with this OID, if hadr knows it.
    pub fn from_oid(oid: u32) -> Option<PgType> {
        ALL.into_iter().find(|t| t.oid() == oid)
    }

    /// The canonical PostgreSQL name (`typname`), e.g. `"int8"`.
    pub fn name(self) -> &'static str {
        match self {
            PgType::Bool => "bool",
            PgType::Int2 => "int2",
            PgType::Int4 => "int4",
            PgType::Int8 => "int8",
            PgType::Float4 => "float4",
            PgType::Float8 => "float8",
            PgType::Numeric => "numeric",
            PgType::Text => "text",
            PgType::Varchar => "varchar",
            PgType::Bpchar => "bpchar",
            PgType::Bytea => "bytea",
            PgType::Date => "date",
            PgType::Time => "time",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Uuid => "uuid",
            PgType::Unknown => "unknown",
            PgType::TextArray => "_text",
            PgType::Int2Vector => "int2vector",
            PgType::BoolArray => "_bool",
        }
    }

    /// The type a PostgreSQL type name denotes (aliases, `pg_catalog.` prefix,
    /// type modifiers and case are all accepted); `None` for other types,
    /// including arrays.
    pub fn from_name(name: &str) -> Option<PgType> {
        // Drop modifiers wherever they sit (`timestamp(3) with time zone`),
        // remembering the first one for `float(p)`.
        let mut bare = String::with_capacity(name.len());
        let mut first_modifier = String::new();
        let mut depth = 0usize;
        let mut seen_modifier = false;
        for c in name.chars() {
            match c {
                '(' => depth += 1,
                ')' => {
                    if depth == 0 {
                        return None;
                    }
                    depth -= 1;
                    if depth == 0 {
                        seen_modifier = true;
                        bare.push(' ');
                    }
                }
                _ if depth > 0 => {
                    if !seen_modifier {
                        first_modifier.push(c);
                    }
                }
                _ => bare.push(c.to_ascii_lowercase()),
            }
        }
        if depth != 0 {
            return None;
        }
        let words: Vec<&str> = bare.split_whitespace().collect();
        let joined = words.join(" ");
        let joined = joined.strip_prefix("pg_catalog.").unwrap_or(&joined);
        let joined = joined.trim_matches('"');
        let t = match joined {
            "bool" | "boolean" => PgType::Bool,
            "int2" | "smallint" | "smallserial" | "serial2" => PgType::Int2,
            "int" | "int4" | "integer" | "serial" | "serial4" => PgType::Int4,
            "int8" | "bigint" | "bigserial" | "serial8" => PgType::Int8,
            "real" | "float4" => PgType::Float4,
            "float" => match first_modifier.trim().parse::<u32>() {
                // PostgreSQL: float(1..24) is real, float(25..53) and bare float are double.
                Ok(p) if (1..=24).contains(&p) => PgType::Float4,
                _ => PgType::Float8,
            },
            "float8" | "double precision" | "double" => PgType::Float8,
            "numeric" | "decimal" | "dec" => PgType::Numeric,
            "text" => PgType::Text,
            "varchar" | "character varying" | "char varying" => PgType::Varchar,
            "char" | "character" | "bpchar" => PgType::Bpchar,
            "bytea" => PgType::Bytea,
            "date" => PgType::Date,
            "time" | "time without time zone" => PgType::Time,
            "timestamp" | "timestamp without time zone" => PgType::Timestamp,
            "timestamptz" | "timestamp with time zone" => PgType::Timestamptz,
            "json" => PgType::Json,
            "jsonb" => PgType::Jsonb,
            "uuid" => PgType::Uuid,
            "unknown" => PgType::Unknown,
            "_text" => PgType::TextArray,
            "int2vector" => PgType::Int2Vector,
            "_bool" => PgType::BoolArray,
            _ => return None,
        };
        Some(t)
    }

    /// The type a SQLite column with this declared type is announced as
    /// (SQLite affinity rules, refined); `None` for an empty declared type.
    pub fn from_sqlite_decltype(decl: &str) -> Option<PgType> {
        let d = decl.trim().to_ascii_uppercase();
        if d.is_empty() {
            return None;
        }
        // BOOL and the PostgreSQL names SQLite would otherwise misfile
        // (SERIAL and BYTEA have NUMERIC affinity) go first; the rest follows
        // the order of SQLite's affinity rules so the announced type matches
        // what SQLite actually stores.
        // PostgreSQL-only type names (a table made by PostgreSQL DDL, whose
        // values came from PostgreSQL clients) are announced as what they
        // name. DATE, TIME and TIMESTAMP are not: SQLite schemas use them
        // for whatever their application stored (epoch numbers often), which
        // could not be sent as those types.
        if let Some(t @ (PgType::Timestamptz | PgType::Uuid | PgType::Json | PgType::Jsonb)) =
            PgType::from_name(decl)
        {
            return Some(t);
        }
        let t = if d.contains("BOOL") {
            PgType::Bool
        } else if d.contains("INT") || d.contains("SERIAL") {
            PgType::Int8
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            PgType::Text
        } else if d.contains("BLOB") || d.contains("BYTEA") {
            PgType::Bytea
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            PgType::Float8
        } else if d.contains("NUMERIC") || d.contains("DECIMAL") {
            PgType::Numeric
        } else {
            PgType::Text
        };
        Some(t)
    }

    /// The SQLite type name to `CAST(.. AS ..)` to for this type.
    pub(crate) fn sqlite_cast_type(self) -> &'static str {
        match self {
            PgType::Bool | PgType::Int2 | PgType::Int4 | PgType::Int8 => "INTEGER",
            PgType::Float4 | PgType::Float8 => "REAL",
            PgType::Numeric => "NUMERIC",
            PgType::Bytea => "BLOB",
            PgType::Text
            | PgType::Varchar
            | PgType::Bpchar
            | PgType::Date
            | PgType::Time
            | PgType::Timestamp
            | PgType::Timestamptz
            | PgType::Json
            | PgType::Jsonb
            | PgType::Uuid
            | PgType::Unknown
            | PgType::TextArray
            | PgType::Int2Vector
            | PgType::BoolArray => "TEXT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip() {
        for t in ALL {
            assert_eq!(PgType::from_oid(t.oid()), Some(t));
            assert_eq!(PgType::from_name(t.name()), Some(t), "{}", t.name());
        }
        assert_eq!(PgType::Int8.oid(), 20);
        assert_eq!(PgType::Jsonb.oid(), 3802);
        assert_eq!(PgType::Unknown.oid(), 705);
        assert_eq!(PgType::from_oid(0), None);
        assert_eq!(PgType::from_oid(1266), None);
    }

    #[test]
    fn names_and_aliases() {
        use PgType::*;
        let cases = [
            ("int", Int4),
            ("INTEGER", Int4),
            ("serial", Int4),
            ("bigint", Int8),
            ("BigSerial", Int8),
            ("smallint", Int2),
            ("real", Float4),
            ("float", Float8),
            ("float(10)", Float4),
            ("float(53)", Float8),
            ("double precision", Float8),
            ("Double   Precision", Float8),
            ("numeric(10,2)", Numeric),
            ("numeric (10, 2)", Numeric),
            ("decimal", Numeric),
            ("varchar(20)", Varchar),
            ("character varying(20)", Varchar),
            ("char(3)", Bpchar),
            ("character", Bpchar),
            ("boolean", Bool),
            ("timestamp without time zone", Timestamp),
            ("timestamp(3) with time zone", Timestamptz),
            ("timestamptz", Timestamptz),
            ("time", Time),
            ("pg_catalog.int4", Int4),
            ("\"text\"", Text),
        ];
        for (n, t) in cases {
            assert_eq!(PgType::from_name(n), Some(t), "{n}");
        }
        for n in [
            "",
            "int[]",
            "interval",
            "regclass",
            "time with time zone",
            "numeric(",
            "x)",
        ] {
            assert_eq!(PgType::from_name(n), None, "{n}");
        }
    }

    #[test]
    fn decltypes() {
        use PgType::*;
        let cases = [
            ("INTEGER", Some(Int8)),
            ("smallint", Some(Int8)),
            ("BIGSERIAL", Some(Int8)),
            ("boolean", Some(Bool)),
            ("VARCHAR(20)", Some(Text)),
            ("CLOB", Some(Text)),
            ("BLOB", Some(Bytea)),
            ("bytea", Some(Bytea)),
            ("REAL", Some(Float8)),
            ("DOUBLE PRECISION", Some(Float8)),
            ("FLOAT", Some(Float8)),
            ("NUMERIC(10,2)", Some(Numeric)),
            ("DECIMAL", Some(Numeric)),
            ("DATE", Some(Text)),
            ("TIMESTAMP", Some(Text)),
            ("uuid", Some(Uuid)),
            ("UUID", Some(Uuid)),
            ("timestamptz", Some(Timestamptz)),
            ("timestamp with time zone", Some(Timestamptz)),
            ("jsonb", Some(Jsonb)),
            ("json", Some(Json)),
            ("DATETIME", Some(Text)),
            // SQLite's documented quirk: "FLOATING POINT" contains INT.
            ("FLOATING POINT", Some(Int8)),
            ("", None),
            ("   ", None),
        ];
        for (d, t) in cases {
            assert_eq!(PgType::from_sqlite_decltype(d), t, "{d}");
        }
    }
}
