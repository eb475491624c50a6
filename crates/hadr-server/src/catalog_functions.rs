//! The functions PostgreSQL's catalog queries call that need no look-up,
//! registered on every session's connection beside
//! crates/hadr-server/src/pg_functions.rs: the OIDs and type facts the
//! catalog relations of crates/hadr-sql/src/catalog/ are computed with
//! (`hadr_oid`, `hadr_type_oid`, `hadr_typmod`), `regexp()` behind SQLite's
//! REGEXP operator (psql's `~`), and `pg_table_is_visible`, `format_type`,
//! `pg_get_userbyid`, `pg_encoding_to_char`, `obj_description`…
//!
//! What hadr does not keep (sizes per relation) is NULL, which psql shows
//! as empty; comments are COMMENT ON's rows (crates/hadr-sql/src/comment.rs).

use hadr_sql::PgType;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// The first OID PostgreSQL gives user objects.
const FIRST_USER_OID: u32 = 16384;

/// A relation's OID: FNV-1a of its lower-cased name, in PostgreSQL's
/// user range (16384 up to 2^31 − 1), the same on every node and in every
/// session.
pub fn oid_of(name: &str) -> i64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes().map(|b| b.to_ascii_lowercase()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i64::from(FIRST_USER_OID + h % ((1u32 << 31) - FIRST_USER_OID))
}

/// The OID `'name'::regclass` names: digits are one, a system catalog's
/// is PostgreSQL's, a relation's its name's hash (`public.` dropped).
pub fn regclass(name: &str) -> i64 {
    let t = name.trim();
    if let Ok(n) = t.parse::<i64>() {
        return n;
    }
    if let Some(oid) = system_oid(t) {
        return i64::from(oid);
    }
    let t = t.strip_prefix("public.").unwrap_or(t);
    oid_of(t.trim_matches('"'))
}

/// PostgreSQL's fixed OIDs of the catalogs clients name in
/// `'pg_class'::regclass` (`pg_description.classoid` is one of them).
fn system_oid(name: &str) -> Option<u32> {
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    Some(match name {
        "pg_type" => 1247,
        "pg_attribute" => 1249,
        "pg_proc" => 1255,
        "pg_class" => 1259,
        "pg_database" => 1262,
        "pg_constraint" => 2606,
        "pg_description" => 2609,
        "pg_index" => 2610,
        "pg_namespace" => 2615,
        _ => return None,
    })
}

/// The base name of a declared type, lower-cased, its modifiers dropped.
fn base(decl: &str) -> String {
    decl.split('(')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `n` of `varchar(n)`, the `p, s` of `numeric(p, s)`.
fn modifiers(decl: &str) -> Vec<i64> {
    let Some(open) = decl.find('(') else {
        return Vec::new();
    };
    decl[open + 1..]
        .trim_end()
        .trim_end_matches(')')
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

/// The type OID of a column declared `decl`.
pub fn type_oid(decl: &str) -> i64 {
    let b = base(decl);
    let oid = match b.as_str() {
        "char" | "character" | "bpchar" | "nchar" => 1042,
        "varchar" | "character varying" | "nvarchar" => 1043,
        "" => 25,
        _ => PgType::from_name(decl)
            .or_else(|| PgType::from_sqlite_decltype(decl))
            .map(|t| t.oid())
            .unwrap_or(25),
    };
    i64::from(oid)
}

/// PostgreSQL's `atttypmod` of a column declared `decl` (−1: none).
pub fn typmod(decl: &str) -> i64 {
    let m = modifiers(decl);
    match (type_oid(decl), m.as_slice()) {
        (1042 | 1043, [n, ..]) => n + 4,
        (1700, [p]) => (p << 16) + 4,
        (1700, [p, s, ..]) => (p << 16) + s + 4,
        _ => -1,
    }
}

/// `format_type(oid, typmod)`: PostgreSQL's SQL name of a type.
pub fn format_type(oid: i64, typmod: Option<i64>) -> Option<String> {
    let m = typmod.filter(|m| *m >= 4).map(|m| m - 4);
    Some(match (oid, m) {
        (16, _) => "boolean".into(),
        (17, _) => "bytea".into(),
        (18, _) => "\"char\"".into(),
        (19, _) => "name".into(),
        (20, _) => "bigint".into(),
        (21, _) => "smallint".into(),
        (23, _) => "integer".into(),
        (25, _) => "text".into(),
        (26, _) => "oid".into(),
        (114, _) => "json".into(),
        (700, _) => "real".into(),
        (701, _) => "double precision".into(),
        (1042, Some(n)) => format!("character({n})"),
        (1042, None) => "character".into(),
        (1043, Some(n)) => format!("character varying({n})"),
        (1043, None) => "character varying".into(),
        (1082, _) => "date".into(),
        (1083, _) => "time without time zone".into(),
        (1114, _) => "timestamp without time zone".into(),
        (1184, _) => "timestamp with time zone".into(),
        (1186, _) => "interval".into(),
        (1700, Some(m)) => format!("numeric({},{})", m >> 16, m & 0xffff),
        (1700, None) => "numeric".into(),
        (2950, _) => "uuid".into(),
        (3802, _) => "jsonb".into(),
        _ => return None,
    })
}

fn text_arg(ctx: &Context<'_>, i: usize) -> Option<String> {
    match ctx.get_raw(i) {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        _ => None,
    }
}

fn int_arg(ctx: &Context<'_>, i: usize) -> Option<i64> {
    match ctx.get_raw(i) {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        ValueRef::Real(f) => Some(f as i64),
        _ => None,
    }
}

/// Register the functions on `conn`; `user` answers `pg_get_userbyid`
/// (hadr keeps no owners: everything belongs to whoever asks).
pub fn register(conn: &Connection, user: &str) -> rusqlite::Result<()> {
    let fixed = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("hadr_oid", 1, fixed, |ctx| {
        Ok(text_arg(ctx, 0).map(|n| oid_of(&n)))
    })?;
    // CAST(x AS regclass) with x known only at run time: a number is
    // the OID, a name the relation's (or a system catalog's) OID.
    conn.create_scalar_function("hadr_regclass", 1, fixed, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Integer(n) => Some(n),
            ValueRef::Null => None,
            _ => text_arg(ctx, 0).map(|t| regclass(&t)),
        })
    })?;
    conn.create_scalar_function("hadr_type_oid", 1, fixed, |ctx| {
        Ok(type_oid(&text_arg(ctx, 0).unwrap_or_default()))
    })?;
    conn.create_scalar_function("hadr_typmod", 1, fixed, |ctx| {
        Ok(typmod(&text_arg(ctx, 0).unwrap_or_default()))
    })?;
    conn.create_scalar_function("format_type", 2, fixed, |ctx| {
        Ok(int_arg(ctx, 0).and_then(|oid| format_type(oid, int_arg(ctx, 1))))
    })?;
    conn.create_scalar_function("pg_table_is_visible", 1, fixed, |_| Ok(true))?;
    conn.create_scalar_function("pg_type_is_visible", 1, fixed, |_| Ok(true))?;
    conn.create_aggregate_function("array_agg", 1, fixed, ArrayAgg)?;
    // psycopg's TypeInfo.fetch (SQLAlchemy asks for hstore at connect):
    // a type hadr knows, or NULL.
    conn.create_scalar_function("to_regtype", 1, fixed, |ctx| {
        Ok(text_arg(ctx, 0)
            .and_then(|n| PgType::from_name(&n))
            .map(|t| i64::from(t.oid())))
    })?;
    let owner = user.to_string();
    conn.create_scalar_function("pg_get_userbyid", 1, fixed, move |_| Ok(owner.clone()))?;
    conn.create_scalar_function("hadr_array_get", 2, fixed, |ctx| {
        Ok(match (text_arg(ctx, 0), int_arg(ctx, 1)) {
            (Some(a), Some(i)) => array_get(&a, i),
            _ => None,
        })
    })?;
    conn.create_scalar_function("pg_encoding_to_char", 1, fixed, |_| Ok("UTF8"))?;
    conn.create_scalar_function("array_to_string", 2, fixed, |ctx| Ok(text_arg(ctx, 0)))?;
    conn.create_scalar_function("pg_get_expr", 2, fixed, |ctx| Ok(text_arg(ctx, 0)))?;
    conn.create_scalar_function("pg_get_expr", 3, fixed, |ctx| Ok(text_arg(ctx, 0)))?;
    register_comments(conn)?;
    for (name, args) in [
        ("shobj_description", 2),
        ("pg_table_size", 1),
        ("pg_relation_size", 1),
        ("pg_total_relation_size", 1),
        ("pg_indexes_size", 1),
        ("pg_get_statisticsobjdef_columns", 1),
        ("pg_get_triggerdef", 1),
        ("pg_get_triggerdef", 2),
        ("pg_get_viewdef", 1),
        ("pg_get_viewdef", 2),
        ("pg_partition_ancestors", 1),
        ("pg_get_serial_sequence", 2),
    ] {
        conn.create_scalar_function(name, args, fixed, |_| Ok(None::<String>))?;
    }
    conn.create_scalar_function("pg_size_pretty", 1, fixed, |ctx| {
        Ok(int_arg(ctx, 0).map(|n| format!("{n} bytes")))
    })?;
    // X REGEXP Y calls regexp(Y, X); the compiled pattern is kept for the
    // statement when the pattern is a constant.
    conn.create_scalar_function("regexp", 2, fixed, |ctx| {
        let re = ctx.get_or_create_aux(
            0,
            |v| -> Result<regex::Regex, Box<dyn std::error::Error + Send + Sync>> {
                let pattern = v.as_str().map_err(|e| Box::new(e) as Box<_>)?;
                Ok(regex::Regex::new(pattern)?)
            },
        )?;
        Ok(match ctx.get_raw(1) {
            ValueRef::Text(t) => std::str::from_utf8(t).ok().map(|t| re.is_match(t)),
            ValueRef::Null => None,
            _ => text_arg(ctx, 1).map(|t| re.is_match(&t)),
        })
    })?;
    Ok(())
}

/// `obj_description`, `col_description` and `hadr_descriptions()` (what
/// `pg_description` lists) over COMMENT ON's table
/// (crates/hadr-sql/src/comment.rs), which exists only once a comment has
/// been made: before, every answer is NULL / none.
fn register_comments(conn: &Connection) -> rusqlite::Result<()> {
    // Not deterministic: they read a table.
    let reads = FunctionFlags::SQLITE_UTF8;
    let table = hadr_sql::COMMENTS_TABLE;
    let object = format!("SELECT description FROM {table} WHERE objoid = ?1 AND sub = ''");
    for args in [1, 2] {
        let sql = object.clone();
        conn.create_scalar_function("obj_description", args, reads, move |ctx| {
            let Some(oid) = int_arg(ctx, 0) else {
                return Ok(None);
            };
            comments_query(ctx, &sql, rusqlite::params![oid])
        })?;
    }
    let column = format!(
        "SELECT c.description FROM {table} c WHERE c.objoid = ?1 AND c.kind = 'column' \
         AND c.sub = (SELECT p.name FROM pragma_table_info(c.object) p WHERE p.cid = ?2 - 1)"
    );
    conn.create_scalar_function("col_description", 2, reads, move |ctx| {
        let (Some(oid), Some(n)) = (int_arg(ctx, 0), int_arg(ctx, 1)) else {
            return Ok(None);
        };
        comments_query(ctx, &column, rusqlite::params![oid, n])
    })?;
    let all = format!(
        "SELECT json_group_array(json_array(c.objoid, \
           CASE c.sub WHEN '' THEN 0 ELSE (SELECT p.cid + 1 FROM pragma_table_info(c.object) p \
             WHERE p.name = c.sub) END, c.description)) FROM {table} c"
    );
    conn.create_scalar_function("hadr_descriptions", 0, reads, move |ctx| {
        Ok(comments_query(ctx, &all, [])?.unwrap_or_else(|| "[]".to_string()))
    })?;
    Ok(())
}

/// The one value `sql` answers on the connection the function runs on;
/// None when it answers no row or the comments table does not exist yet.
fn comments_query<P: rusqlite::Params>(
    ctx: &Context<'_>,
    sql: &str,
    params: P,
) -> rusqlite::Result<Option<String>> {
    // SAFETY: the handle is used only within this call, on the thread
    // running the statement that called the function, and is not closed;
    // SQLite allows a function to run statements on its own connection.
    let conn = unsafe { ctx.get_connection()? };
    // Not prepare_cached: the handle's statement cache ends with this call.
    let r = conn
        .prepare(sql)
        .and_then(|mut st| st.query_row(params, |r| r.get::<_, Option<String>>(0)));
    match r {
        Ok(v) => Ok(v),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        // Only the comments table's absence means "no comments yet".
        Err(rusqlite::Error::SqliteFailure(_, Some(m)))
            if m.contains("no such table") && m.contains(hadr_sql::COMMENTS_TABLE) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `array_agg(x)`: the values as PostgreSQL's array text, `{a,b,"c d"}`
/// (hadr has no array type; what clients read is this text).
struct ArrayAgg;

impl rusqlite::functions::Aggregate<Vec<Option<String>>, Option<String>> for ArrayAgg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Vec<Option<String>>> {
        Ok(Vec::new())
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut Vec<Option<String>>) -> rusqlite::Result<()> {
        acc.push(text_arg(ctx, 0));
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        acc: Option<Vec<Option<String>>>,
    ) -> rusqlite::Result<Option<String>> {
        Ok(acc.map(|items| array_text(&items)))
    }
}

/// Element `i` of an array in PostgreSQL's text form: `{a,b}` counts
/// from 1, a vector (`int2vector`, `oidvector`: `1 2`) from 0, as
/// PostgreSQL subscripts them. A number comes back as one; NULL past
/// either end.
pub fn array_get(array: &str, i: i64) -> Option<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let t = array.trim();
    let (items, first): (Vec<String>, i64) =
        match t.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            Some(body) => (array_items(body), 1),
            None => (t.split_whitespace().map(str::to_string).collect(), 0),
        };
    let item = items.get(usize::try_from(i.checked_sub(first)?).ok()?)?;
    Some(match item.parse::<i64>() {
        Ok(n) => Value::Integer(n),
        Err(_) if item == "NULL" => Value::Null,
        Err(_) => Value::Text(item.clone()),
    })
}

/// The elements of a one-dimensional array's text between its braces,
/// quotes and backslashes undone.
fn array_items(body: &str) -> Vec<String> {
    let mut items = Vec::new();
    if body.is_empty() {
        return items;
    }
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in body.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    items.push(cur);
    items
}

/// PostgreSQL's text form of a one-dimensional array.
pub fn array_text(items: &[Option<String>]) -> String {
    let element = |v: &Option<String>| match v {
        None => "NULL".to_string(),
        Some(s)
            if s.is_empty()
                || s.eq_ignore_ascii_case("null")
                || s.chars()
                    .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace()) =>
        {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
        Some(s) => s.clone(),
    };
    format!(
        "{{{}}}",
        items.iter().map(element).collect::<Vec<_>>().join(",")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn arrays_as_postgres_writes_them() {
        let a = super::array_text(&[
            Some("a".into()),
            None,
            Some("c d".into()),
            Some("x\"y".into()),
        ]);
        assert_eq!(a, "{a,NULL,\"c d\",\"x\\\"y\"}");
        assert_eq!(super::array_text(&[]), "{}");
    }

    use super::*;

    #[test]
    fn subscripts_count_as_postgres_does() {
        use rusqlite::types::Value;
        assert_eq!(array_get("{3,1}", 1), Some(Value::Integer(3)));
        assert_eq!(array_get("{3,1}", 2), Some(Value::Integer(1)));
        assert_eq!(array_get("{3,1}", 0), None);
        assert_eq!(array_get("{3,1}", 3), None);
        assert_eq!(array_get("3 1", 0), Some(Value::Integer(3)));
        assert_eq!(array_get("3 1", 1), Some(Value::Integer(1)));
        assert_eq!(array_get("3 1", -1), None);
        assert_eq!(
            array_get("{a,\"b,c\",NULL}", 2),
            Some(Value::Text("b,c".into()))
        );
        assert_eq!(array_get("{a,\"b,c\",NULL}", 3), Some(Value::Null));
        assert_eq!(array_get("{}", 1), None);
    }

    #[test]
    fn regclass_names_and_numbers() {
        assert_eq!(regclass("pg_catalog.pg_class"), 1259);
        assert_eq!(regclass("16385"), 16385);
        assert_eq!(regclass("public.t"), oid_of("t"));
        assert_eq!(regclass("t"), oid_of("t"));
    }

    #[test]
    fn oids_are_stable_and_in_the_user_range() {
        assert_eq!(oid_of("accounts"), oid_of("ACCOUNTS"));
        assert_ne!(oid_of("a"), oid_of("b"));
        for n in ["", "t", "pgbench_accounts", "a very long name indeed"] {
            let o = oid_of(n);
            assert!((16384..(1 << 31)).contains(&o), "{n}: {o}");
        }
        // Pinned: an OID must not change between releases (clients cache them).
        assert_eq!(oid_of("t"), 1_896_660_387);
    }

    #[test]
    fn declared_types_as_postgres_shows_them() {
        let shown = |d: &str| format_type(type_oid(d), Some(typmod(d))).unwrap();
        assert_eq!(shown("int"), "integer");
        assert_eq!(shown("INTEGER"), "integer");
        assert_eq!(shown("bigint"), "bigint");
        assert_eq!(shown("char(84)"), "character(84)");
        assert_eq!(shown("varchar(20)"), "character varying(20)");
        assert_eq!(shown("numeric(10,2)"), "numeric(10,2)");
        assert_eq!(shown("timestamptz"), "timestamp with time zone");
        assert_eq!(shown("text"), "text");
        assert_eq!(shown(""), "text");
        assert_eq!(shown("boolean"), "boolean");
        assert_eq!(shown("double precision"), "double precision");
    }
}
