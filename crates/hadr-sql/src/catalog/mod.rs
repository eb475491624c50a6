//! PostgreSQL's system catalogs, as psql's `\d` family and drivers read
//! them, computed from SQLite's own schema (issue 12 item 1).
//!
//! Each catalog relation hadr answers is a SQLite `SELECT` over
//! `sqlite_schema` and the `pragma_table_info` / `pragma_index_list` /
//! `pragma_index_info` / `pragma_foreign_key_list` table functions. A
//! query that names one (`pg_catalog.pg_class`, or `pg_class` after FROM
//! or JOIN) gets that `SELECT` in its place as a subquery, so nothing is
//! stored, every connection (standbys included) sees the schema as it is
//! now, and nothing has to be created per session. The rest of what those
//! queries use is rewritten here too: `OPERATOR(pg_catalog.~)`, `~` and
//! `!~` become SQLite's `REGEXP` (the server registers `regexp()`),
//! `COLLATE pg_catalog.default` goes, `x::regclass` becomes the relation's
//! name (or, from a literal, its OID), and `pg_get_indexdef()` /
//! `pg_get_constraintdef()` become look-ups in these relations. The
//! functions that need no look-up (`pg_table_is_visible`, `format_type`,
//! `pg_get_userbyid`, `hadr_oid`…) are the server's
//! (crates/hadr-server/src/catalog_functions.rs).
//!
//! OIDs: a relation's is `hadr_oid(name)`, a hash of its name (stable
//! across sessions, nodes and restarts; 16384 and up, as PostgreSQL's
//! user objects); the one schema, `public`, is 2200 as in PostgreSQL.
//! Booleans come out as 1/0, which SQLite's conditions need; the server
//! announces the known boolean catalog columns as bool ([`is_bool_column`]).

use crate::lexer::{string_value, tokenize, Kind, Token};

mod columns;
mod information_schema;

pub use columns::column_type;

/// hadr's own tables, never shown.
pub(super) const HIDDEN: &str =
    "s.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND s.name NOT LIKE '\\_hadr\\_%' ESCAPE '\\' \
     AND s.name NOT IN ('hadr_roles', 'hadr_auth_secret', 'hadr_commit_tokens')";

/// Every index, SQLite's automatic ones under PostgreSQL's names
/// (`t_pkey`, `t_a_key`), plus the primary key of a table whose key is its
/// rowid (SQLite keeps no index for it).
fn indexes() -> String {
    format!(
        "SELECT s.name AS tbl, il.name AS sqlite_name, \
           CASE il.origin WHEN 'pk' THEN s.name || '_pkey' \
             WHEN 'u' THEN s.name || '_' || (SELECT group_concat(ii.name, '_') FROM pragma_index_info(il.name) ii) || '_key' \
             ELSE il.name END AS name, \
           il.\"unique\" AS isunique, il.origin = 'pk' AS isprimary, il.origin IN ('pk', 'u') AS isconstraint, \
           (SELECT group_concat(ii.name, ', ') FROM pragma_index_info(il.name) ii) AS cols, \
           (SELECT group_concat(ii.cid + 1, ' ') FROM pragma_index_info(il.name) ii) AS indkey, \
           (SELECT count(*) FROM pragma_index_info(il.name)) AS ncols \
         FROM sqlite_schema s, pragma_index_list(s.name) il WHERE s.type = 'table' AND {HIDDEN} \
         UNION ALL \
         SELECT s.name, NULL, s.name || '_pkey', 1, 1, 1, \
           (SELECT group_concat(p.name, ', ') FROM pragma_table_info(s.name) p WHERE p.pk > 0), \
           (SELECT group_concat(p.cid + 1, ' ') FROM pragma_table_info(s.name) p WHERE p.pk > 0), 1 \
         FROM sqlite_schema s WHERE s.type = 'table' AND {HIDDEN} \
           AND (SELECT count(*) FROM pragma_table_info(s.name) p WHERE p.pk > 0) = 1 \
           AND EXISTS (SELECT 1 FROM pragma_table_info(s.name) p WHERE p.pk > 0 AND upper(p.type) = 'INTEGER') \
           AND NOT EXISTS (SELECT 1 FROM pragma_index_list(s.name) il WHERE il.origin = 'pk')"
    )
}

fn namespace() -> String {
    "SELECT 2200 AS oid, 'public' AS nspname, 10 AS nspowner, NULL AS nspacl \
     UNION ALL SELECT 11, 'pg_catalog', 10, NULL \
     UNION ALL SELECT 13183, 'information_schema', 10, NULL"
        .to_string()
}

fn class() -> String {
    let common =
        "0 AS reltype, 0 AS reloftype, 10 AS relowner, 0 AS relfilenode, 0 AS reltablespace, \
        0 AS relpages, -1 AS reltuples, 0 AS relallvisible, 0 AS reltoastrelid, 0 AS relisshared, \
        'p' AS relpersistence, 0 AS relhasrules, 0 AS relhassubclass, 0 AS relrowsecurity, \
        0 AS relforcerowsecurity, 1 AS relispopulated, 'd' AS relreplident, 0 AS relispartition, \
        0 AS relrewrite, 0 AS relfrozenxid, 0 AS relminmxid, NULL AS relacl, NULL AS reloptions, \
        NULL AS relpartbound, 2200 AS relnamespace";
    format!(
        "SELECT CAST(hadr_oid(s.name) AS INTEGER) AS oid, s.name AS relname, {common}, \
           CASE s.type WHEN 'table' THEN 2 ELSE 0 END AS relam, \
           CASE s.type WHEN 'table' THEN 'r' ELSE 'v' END AS relkind, \
           (SELECT count(*) FROM pragma_table_info(s.name)) AS relnatts, \
           0 AS relchecks, \
           EXISTS (SELECT 1 FROM ({idx}) x WHERE x.tbl = s.name) AS relhasindex, \
           (EXISTS (SELECT 1 FROM sqlite_schema t WHERE t.type = 'trigger' AND t.tbl_name = s.name) \
            OR EXISTS (SELECT 1 FROM pragma_foreign_key_list(s.name)) \
            OR EXISTS (SELECT 1 FROM sqlite_schema o, pragma_foreign_key_list(o.name) k \
                       WHERE o.type = 'table' AND k.\"table\" = s.name COLLATE NOCASE)) AS relhastriggers \
         FROM sqlite_schema s WHERE s.type IN ('table', 'view') AND {HIDDEN} \
         UNION ALL \
         SELECT CAST(hadr_oid(x.name) AS INTEGER), x.name, {common}, 403, 'i', x.ncols, 0, 0, 0 FROM ({idx}) x",
        idx = indexes()
    )
}

fn index() -> String {
    format!(
        "SELECT CAST(hadr_oid(x.name) AS INTEGER) AS indexrelid, CAST(hadr_oid(x.tbl) AS INTEGER) AS indrelid, x.ncols AS indnatts, \
           x.ncols AS indnkeyatts, x.isunique AS indisunique, x.isprimary AS indisprimary, \
           0 AS indisexclusion, 1 AS indimmediate, 0 AS indisclustered, 1 AS indisvalid, \
           0 AS indcheckxmin, 1 AS indisready, 1 AS indislive, 0 AS indisreplident, \
           0 AS indnullsnotdistinct, \
           x.indkey AS indkey, NULL AS indexprs, NULL AS indpred, \
           'CREATE ' || CASE WHEN x.isunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || x.name || \
           ' ON public.' || x.tbl || ' USING btree (' || coalesce(x.cols, '') || ')' AS indexdef \
         FROM ({}) x",
        indexes()
    )
}

fn attribute() -> String {
    format!(
        "SELECT CAST(hadr_oid(s.name) AS INTEGER) AS attrelid, p.name AS attname, hadr_type_oid(p.type) AS atttypid, \
           -1 AS attstattarget, -1 AS attlen, p.cid + 1 AS attnum, 0 AS attndims, -1 AS attcacheoff, \
           hadr_typmod(p.type) AS atttypmod, 0 AS attbyval, \
           CASE WHEN hadr_type_oid(p.type) IN (16, 20, 21, 23, 700, 701, 1082, 1083, 1114, 1184, 1186, 2950) \
             THEN 'p' WHEN hadr_type_oid(p.type) = 1700 THEN 'm' ELSE 'x' END AS attstorage, 'i' AS attalign, \
           (p.\"notnull\" OR (p.pk > 0 AND upper(p.type) = 'INTEGER')) AS attnotnull, \
           p.dflt_value IS NOT NULL AS atthasdef, 0 AS atthasmissing, '' AS attidentity, \
           '' AS attgenerated, '' AS attcompression, 0 AS attisdropped, 1 AS attislocal, 0 AS attinhcount, 0 AS attcollation, \
           NULL AS attacl, NULL AS attoptions, NULL AS attfdwoptions, NULL AS attmissingval \
         FROM sqlite_schema s, pragma_table_info(s.name) p \
         WHERE s.type IN ('table', 'view') AND {HIDDEN}"
    )
}

fn attrdef() -> String {
    format!(
        "SELECT CAST(hadr_oid(s.name || '.' || p.name) AS INTEGER) AS oid, CAST(hadr_oid(s.name) AS INTEGER) AS adrelid, p.cid + 1 AS adnum, \
           {default} AS adbin \
         FROM sqlite_schema s, pragma_table_info(s.name) p \
         WHERE s.type = 'table' AND p.dflt_value IS NOT NULL AND {HIDDEN}",
        default = shown_default("p.dflt_value"),
    )
}

/// A column default as PostgreSQL would show it: the SQLite clock and
/// randomness hadr's DDL wrote for `now()` and `gen_random_uuid()`
/// (crates/hadr-sql/src/ddl.rs) shown as those calls.
pub(super) fn shown_default(column: &str) -> String {
    format!(
        "CASE WHEN {column} IN ({now}) THEN 'now()' WHEN {column} IN ({uuid}) THEN 'gen_random_uuid()' \
         ELSE {column} END",
        now = both_forms(crate::ddl::SQLITE_NOW),
        uuid = both_forms(crate::ddl::SQLITE_UUID),
    )
}

/// `(expr)` and `expr` as SQL string literals: SQLite reports a default
/// as written, with or without its parentheses.
fn both_forms(parenthesised: &str) -> String {
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let inner = parenthesised
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(parenthesised);
    format!("{}, {}", quoted(parenthesised), quoted(inner))
}

fn constraint() -> String {
    format!(
        "SELECT CAST(hadr_oid(x.name) AS INTEGER) AS oid, x.name AS conname, 2200 AS connamespace, \
           CASE WHEN x.isprimary THEN 'p' ELSE 'u' END AS contype, 0 AS condeferrable, 0 AS condeferred, \
           1 AS convalidated, CAST(hadr_oid(x.tbl) AS INTEGER) AS conrelid, 0 AS contypid, CAST(hadr_oid(x.name) AS INTEGER) AS conindid, \
           0 AS conparentid, 0 AS confrelid, ' ' AS confupdtype, ' ' AS confdeltype, ' ' AS confmatchtype, \
           1 AS conislocal, 0 AS coninhcount, 1 AS connoinherit, x.indkey AS conkey, NULL AS confkey, \
           CASE WHEN x.isprimary THEN 'PRIMARY KEY (' ELSE 'UNIQUE (' END || x.cols || ')' AS condef \
         FROM ({idx}) x WHERE x.isconstraint \
         UNION ALL \
         SELECT CAST(hadr_oid(f.name) AS INTEGER), f.name, 2200, 'f', 0, 0, 1, CAST(hadr_oid(f.tbl) AS INTEGER), 0, 0, 0, CAST(hadr_oid(f.ref) AS INTEGER), \
           ' ', ' ', 's', 1, 0, 1, NULL, NULL, \
           'FOREIGN KEY (' || f.cols || ') REFERENCES ' || f.ref || \
           CASE WHEN f.refcols IS NULL THEN '' ELSE '(' || f.refcols || ')' END || \
           CASE WHEN f.on_update <> 'NO ACTION' THEN ' ON UPDATE ' || f.on_update ELSE '' END || \
           CASE WHEN f.on_delete <> 'NO ACTION' THEN ' ON DELETE ' || f.on_delete ELSE '' END \
         FROM (SELECT s.name AS tbl, fk.\"table\" AS ref, fk.on_update, fk.on_delete, \
                 s.name || '_' || group_concat(fk.\"from\", '_') || '_fkey' AS name, \
                 group_concat(fk.\"from\", ', ') AS cols, coalesce(group_concat(fk.\"to\", ', '), \
                   (SELECT group_concat(p.name, ', ') FROM pragma_table_info(fk.\"table\") p WHERE p.pk > 0)) AS refcols \
               FROM sqlite_schema s, pragma_foreign_key_list(s.name) fk \
               WHERE s.type = 'table' AND {HIDDEN} GROUP BY s.name, fk.id) f",
        idx = indexes()
    )
}

pub(super) fn type_() -> String {
    let rows: Vec<String> = TYPES
        .iter()
        .map(|(oid, name, len, cat)| {
            let (byval, align) = if (1..=8).contains(len) { (1, 'd') } else { (0, 'i') };
            format!(
                "SELECT {oid}, '{name}', 11, 10, {len}, {byval}, 'b', '{cat}', 0, 1, ',', 0, 0, 0, \
                 '{name}in', '{name}out', '{name}recv', '{name}send', '{align}', 'p', 0, 0, -1, 0, 0, NULL"
            )
        })
        .collect();
    format!(
        "SELECT * FROM (SELECT 0 AS oid, '' AS typname, 0 AS typnamespace, 0 AS typowner, 0 AS typlen, \
           0 AS typbyval, '' AS typtype, '' AS typcategory, 0 AS typispreferred, 0 AS typisdefined, \
           '' AS typdelim, 0 AS typrelid, 0 AS typelem, 0 AS typarray, '' AS typinput, '' AS typoutput, \
           '' AS typreceive, '' AS typsend, '' AS typalign, '' AS typstorage, 0 AS typnotnull, \
           0 AS typbasetype, 0 AS typtypmod, 0 AS typndims, 0 AS typcollation, NULL AS typdefault WHERE 0 \
           UNION ALL {})",
        rows.join(" UNION ALL ")
    )
}

/// The types `pg_type` lists: (oid, name, length, category).
const TYPES: &[(u32, &str, i32, char)] = &[
    (16, "bool", 1, 'B'),
    (17, "bytea", -1, 'U'),
    (18, "char", 1, 'Z'),
    (19, "name", 64, 'S'),
    (20, "int8", 8, 'N'),
    (21, "int2", 2, 'N'),
    (23, "int4", 4, 'N'),
    (25, "text", -1, 'S'),
    (26, "oid", 4, 'N'),
    (114, "json", -1, 'U'),
    (700, "float4", 4, 'N'),
    (701, "float8", 8, 'N'),
    (1042, "bpchar", -1, 'S'),
    (1043, "varchar", -1, 'S'),
    (1082, "date", 4, 'D'),
    (1083, "time", 8, 'D'),
    (1114, "timestamp", 8, 'D'),
    (1184, "timestamptz", 8, 'D'),
    (1186, "interval", 16, 'T'),
    (1700, "numeric", -1, 'N'),
    (2950, "uuid", 16, 'U'),
    (3802, "jsonb", -1, 'U'),
];

/// The session's own role (hadr keeps its roles apart, in
/// crates/hadr-server/src/auth/roles.rs; catalog queries see who asks).
fn roles() -> String {
    "SELECT 10 AS oid, current_user() AS rolname, current_user() AS usename, 1 AS rolsuper, \
       1 AS rolinherit, 1 AS rolcreaterole, 1 AS rolcreatedb, 1 AS rolcanlogin, 0 AS rolreplication, \
       0 AS rolbypassrls, -1 AS rolconnlimit, NULL AS rolvaliduntil, NULL AS rolconfig, 10 AS usesysid"
        .to_string()
}

fn am() -> String {
    "SELECT 2 AS oid, 'heap' AS amname, 't' AS amtype UNION ALL SELECT 403, 'btree', 'i'"
        .to_string()
}

fn database() -> String {
    "SELECT 16384 AS oid, current_database() AS datname, 10 AS datdba, 6 AS encoding, 'c' AS datlocprovider, \
       0 AS datistemplate, 1 AS datallowconn, -1 AS datconnlimit, 'C.UTF-8' AS datcollate, \
       'C.UTF-8' AS datctype, NULL AS daticulocale, NULL AS datcollversion, NULL AS datacl"
        .to_string()
}

/// Relations with nothing in them in hadr, with the columns psql reads.
fn empty(columns: &[&str]) -> String {
    format!(
        "SELECT {} WHERE 0",
        columns
            .iter()
            .map(|c| format!("NULL AS {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The SQL of catalog relation `name` (lowercase), if hadr has it.
pub(crate) fn relation(name: &str) -> Option<String> {
    Some(match name {
        "pg_namespace" => namespace(),
        "pg_class" => class(),
        "pg_index" => index(),
        "pg_attribute" => attribute(),
        "pg_attrdef" => attrdef(),
        "pg_constraint" => constraint(),
        "pg_type" => type_(),
        "pg_am" => am(),
        "pg_database" => database(),
        "pg_inherits" => empty(&["inhrelid", "inhparent", "inhseqno", "inhdetachpending"]),
        "pg_description" => empty(&["objoid", "classoid", "objsubid", "description"]),
        "pg_trigger" => empty(&[
            "oid",
            "tgrelid",
            "tgparentid",
            "tgname",
            "tgfoid",
            "tgtype",
            "tgenabled",
            "tgisinternal",
            "tgconstrrelid",
            "tgconstrindid",
            "tgconstraint",
        ]),
        "pg_policy" => empty(&[
            "oid",
            "polname",
            "polrelid",
            "polcmd",
            "polpermissive",
            "polroles",
            "polqual",
            "polwithcheck",
        ]),
        "pg_statistic_ext" => empty(&[
            "oid",
            "stxrelid",
            "stxname",
            "stxnamespace",
            "stxowner",
            "stxstattarget",
            "stxkeys",
            "stxkind",
            "stxexprs",
        ]),
        "pg_publication" => empty(&["oid", "pubname", "puballtables"]),
        "pg_publication_rel" => empty(&["oid", "prpubid", "prrelid"]),
        "pg_publication_namespace" => empty(&["oid", "pnpubid", "pnnspid"]),
        "pg_partitioned_table" => empty(&["partrelid", "partstrat", "partnatts"]),
        "pg_collation" => empty(&["oid", "collname", "collnamespace"]),
        "pg_foreign_table" => empty(&["ftrelid", "ftserver", "ftoptions"]),
        "pg_auth_members" => empty(&["roleid", "member", "grantor", "admin_option"]),
        "pg_roles" | "pg_user" | "pg_authid" => roles(),
        "pg_enum" => empty(&["oid", "enumtypid", "enumsortorder", "enumlabel"]),
        "pg_sequence" => empty(&[
            "seqrelid",
            "seqtypid",
            "seqstart",
            "seqincrement",
            "seqmax",
            "seqmin",
            "seqcache",
            "seqcycle",
        ]),
        _ => return None,
    })
}

/// Result columns of the catalogs that are booleans in PostgreSQL: sent
/// as bool (t/f) rather than the 1/0 SQLite computes.
pub fn is_bool_column(name: &str) -> bool {
    const BOOLS: &[&str] = &[
        "relhasindex",
        "relisshared",
        "relhasrules",
        "relhastriggers",
        "relhassubclass",
        "relrowsecurity",
        "relforcerowsecurity",
        "relispopulated",
        "relispartition",
        "indisunique",
        "indisprimary",
        "indisexclusion",
        "indimmediate",
        "indisclustered",
        "indisvalid",
        "indcheckxmin",
        "indisready",
        "indislive",
        "indisreplident",
        "attnotnull",
        "atthasdef",
        "atthasmissing",
        "attisdropped",
        "attislocal",
        "condeferrable",
        "condeferred",
        "convalidated",
        "conislocal",
        "connoinherit",
        "datistemplate",
        "datallowconn",
        "rolsuper",
        "rolinherit",
        "rolcreaterole",
        "rolcreatedb",
        "rolcanlogin",
        "rolreplication",
        "rolbypassrls",
        "tgisinternal",
    ];
    BOOLS.contains(&name)
}

fn solid<'a>(toks: &[Token<'a>]) -> Vec<Token<'a>> {
    toks.iter().filter(|t| !t.is_trivia()).copied().collect()
}

/// Words after a relation that are not its alias.
const NOT_ALIAS: &[&str] = &[
    "WHERE",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "OUTER",
    "CROSS",
    "FULL",
    "NATURAL",
    "ON",
    "USING",
    "GROUP",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "HAVING",
    "WINDOW",
];

fn matching(s: &[Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in s.iter().enumerate().skip(open) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Whether `t` is the word `w` (any case).
fn is(t: Option<&Token<'_>>, w: &str) -> bool {
    t.is_some_and(|t| t.kind == Kind::Word && t.text.eq_ignore_ascii_case(w))
}

/// `stmt` with its catalog references rewritten for SQLite; None when it
/// names no catalog and uses none of the catalog-query forms.
pub(crate) fn rewrite(stmt: &str) -> Option<String> {
    let toks = tokenize(stmt);
    let s = solid(&toks);
    if let Some(none) = never_rows(stmt, &s) {
        return Some(none);
    }
    // (start byte, end byte, replacement)
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let t = &s[i];
        let not_after = !(i > 0 && (s[i - 1].is_punct(".") || s[i - 1].is_punct("::")));
        let dotted = s.get(i + 1).is_some_and(|d| d.is_punct(".")) && not_after;
        let qualified = is(Some(t), "pg_catalog") && dotted;
        let info = is(Some(t), "information_schema") && dotted;
        // pg_catalog.rel, or rel right after FROM / JOIN / a comma in FROM.
        let (name_at, start) = if qualified || info {
            (i + 2, t.start)
        } else if t.kind == Kind::Word
            && i > 0
            && (is(s.get(i - 1), "FROM") || is(s.get(i - 1), "JOIN"))
        {
            (i, t.start)
        } else {
            (usize::MAX, 0)
        };
        if let Some(name_tok) = s.get(name_at) {
            let name = name_tok.text.to_ascii_lowercase();
            let call = s.get(name_at + 1).is_some_and(|n| n.is_punct("("));
            // pg_catalog.pg_class.relname: a column of the relation, which
            // goes by its own name once replaced.
            if (qualified || info) && s.get(name_at + 1).is_some_and(|n| n.is_punct(".")) {
                edits.push((start, name_tok.start, String::new()));
                i = name_at + 1;
                continue;
            }
            let sql = if info {
                information_schema::relation(&name)
            } else {
                relation(&name)
            };
            if !call {
                if let Some(sql) = sql {
                    let next = s.get(name_at + 1);
                    let aliased = next.is_some_and(|n| {
                        n.kind == Kind::QuotedIdent
                            || (n.kind == Kind::Word
                                && !NOT_ALIAS.iter().any(|w| n.text.eq_ignore_ascii_case(w)))
                    });
                    let text = if aliased {
                        format!("({sql})")
                    } else {
                        format!("({sql}) AS {name}")
                    };
                    edits.push((start, name_tok.end(), text));
                    i = name_at + 1;
                    continue;
                }
            } else if qualified {
                if let Some((end, text)) = function(stmt, &s, name_at) {
                    edits.push((start, s[end].end(), text));
                    i = end + 1;
                    continue;
                }
            }
        }
        // ARRAY(SELECT x FROM …): the values as PostgreSQL's array text.
        if is(Some(t), "ARRAY")
            && s.get(i + 1).is_some_and(|p| p.is_punct("("))
            && is(s.get(i + 2), "SELECT")
        {
            if let Some(close) = matching(&s, i + 1) {
                let from = (i + 3..close)
                    .find(|&k| is(s.get(k), "FROM") && matching_depth(&s, i + 1, k) == 1);
                if let Some(from) = from.filter(|&f| f > i + 3) {
                    // What is inside is rewritten in its own right.
                    let inner = |a: usize, b: usize| {
                        let text = &stmt[s[a].start..s[b].end()];
                        rewrite(text).unwrap_or_else(|| text.to_string())
                    };
                    let expr = inner(i + 3, from - 1);
                    let rest = inner(from, close - 1);
                    edits.push((
                        t.start,
                        s[close].end(),
                        format!("(SELECT '{{' || coalesce(group_concat({expr}, ','), '') || '}}' {rest})"),
                    ));
                    i = close + 1;
                    continue;
                }
            }
        }
        // = ANY (ARRAY[a, b]) is IN (a, b), <> ALL (ARRAY[…]) NOT IN;
        // = ANY (x) of anything else: hadr has no arrays, so x is one value.
        let any = t.is_punct("=") && is(s.get(i + 1), "ANY");
        let all = (t.is_punct("!=") || t.is_punct("<>")) && is(s.get(i + 1), "ALL");
        if (any || all) && s.get(i + 2).is_some_and(|p| p.is_punct("(")) {
            let op = if any { " IN " } else { " NOT IN " };
            let array = is(s.get(i + 3), "ARRAY") && s.get(i + 4).is_some_and(|b| b.is_punct("["));
            if let (true, Some(close)) = (array, matching(&s, i + 2)) {
                // ( ARRAY [ … ] ): the brackets go, the parentheses stay.
                let rb = (i + 5..close).rev().find(|&k| s[k].is_punct("]"));
                if let Some(rb) = rb {
                    edits.push((t.start, s[i + 4].end(), format!("{op}(")));
                    edits.push((s[rb].start, s[rb].end(), String::new()));
                    i += 5;
                    continue;
                }
            }
            edits.push((t.start, s[i + 1].end(), op.to_string()));
            i += 2;
            continue;
        }
        // json_build_object(…) is SQLite's json_object(…).
        if is(Some(t), "json_build_object") && s.get(i + 1).is_some_and(|p| p.is_punct("(")) {
            edits.push((t.start, t.end(), "json_object".to_string()));
            i += 1;
            continue;
        }
        // OPERATOR(pg_catalog.~) and its negation.
        if is(Some(t), "OPERATOR") && s.get(i + 1).is_some_and(|p| p.is_punct("(")) {
            if let Some(close) = matching(&s, i + 1) {
                let op: String = s[i + 2..close].iter().map(|x| x.text).collect();
                let regexp = match op.trim_start_matches("pg_catalog.") {
                    "~" => Some(" REGEXP "),
                    "!~" => Some(" NOT REGEXP "),
                    _ => None,
                };
                if let Some(r) = regexp {
                    edits.push((t.start, s[close].end(), r.to_string()));
                    i = close + 1;
                    continue;
                }
            }
        }
        // a ~ b, a !~ b (not SQLite's unary ~).
        if t.kind == Kind::Op && (t.text == "~" || t.text == "!~") && i > 0 {
            let p = &s[i - 1];
            const KEYWORDS: &[&str] = &[
                "SELECT",
                "WHERE",
                "AND",
                "OR",
                "NOT",
                "ON",
                "WHEN",
                "THEN",
                "ELSE",
                "CASE",
                "SET",
                "BY",
                "HAVING",
                "RETURNING",
                "VALUES",
                "IN",
                "IS",
                "LIKE",
                "AS",
                "DISTINCT",
            ];
            let keyword =
                p.kind == Kind::Word && KEYWORDS.iter().any(|k| p.text.eq_ignore_ascii_case(k));
            let operand = matches!(
                p.kind,
                Kind::Word | Kind::QuotedIdent | Kind::Str | Kind::Number
            ) || p.is_punct(")");
            if operand && !keyword {
                let r = if t.text == "~" {
                    " REGEXP "
                } else {
                    " NOT REGEXP "
                };
                edits.push((t.start, t.end(), r.to_string()));
                i += 1;
                continue;
            }
        }
        // COLLATE pg_catalog.default / COLLATE "default".
        if is(Some(t), "COLLATE") {
            let dflt = |k: usize| {
                s.get(k).is_some_and(|x| {
                    x.text.eq_ignore_ascii_case("default") || x.text == "\"default\""
                })
            };
            if is(s.get(i + 1), "pg_catalog")
                && s.get(i + 2).is_some_and(|d| d.is_punct("."))
                && dflt(i + 3)
            {
                edits.push((t.start, s[i + 3].end(), String::new()));
                i += 4;
                continue;
            }
            if dflt(i + 1) {
                edits.push((t.start, s[i + 1].end(), String::new()));
                i += 2;
                continue;
            }
        }
        // x::regclass and its kind.
        if t.is_punct("::") {
            let mut k = i + 1;
            if is(s.get(k), "pg_catalog") && s.get(k + 1).is_some_and(|d| d.is_punct(".")) {
                k += 2;
            }
            let ty = s
                .get(k)
                .map(|x| x.text.to_ascii_lowercase())
                .unwrap_or_default();
            // A parameter keeps its cast (and its error: no type to send).
            let param = i > 0 && s[i - 1].kind == Kind::Param;
            if matches!(
                ty.as_str(),
                "regclass" | "regtype" | "regnamespace" | "regproc" | "oid"
            ) && i > 0
                && !param
            {
                let (from, operand) = operand_before(stmt, &s, i);
                let literal = s[i - 1].kind == Kind::Str && from == i - 1;
                let text = match (ty.as_str(), literal) {
                    ("oid", _) => format!("CAST({operand} AS INTEGER)"),
                    ("regclass", true) => {
                        let v = string_value(&s[i - 1]);
                        if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
                            v
                        } else {
                            format!("hadr_oid({operand})")
                        }
                    }
                    ("regclass", false) => format!(
                        "(SELECT hadr_c.hadr_name FROM (SELECT oid AS hadr_key, relname AS hadr_name FROM ({})) hadr_c \
                         WHERE hadr_c.hadr_key = ({operand}))",
                        class()
                    ),
                    ("regtype", _) => format!("format_type({operand}, NULL)"),
                    ("regnamespace", _) => "'public'".to_string(),
                    _ => operand.to_string(),
                };
                edits.push((s[from].start, s[k].end(), text));
                i = k + 1;
                continue;
            }
        }
        i += 1;
    }
    if edits.is_empty() {
        return None;
    }
    // Edits can overlap only where one starts inside an earlier one's
    // range (a cast whose operand was already replaced): keep the first.
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(stmt.len() * 2);
    let mut at = 0;
    for (a, b, text) in edits {
        if a < at {
            continue;
        }
        out.push_str(&stmt[at..a]);
        out.push_str(&text);
        at = b;
    }
    out.push_str(&stmt[at..]);
    Some(out)
}

/// Catalogs of things hadr never has (publications, PostgreSQL-style
/// triggers): a query that reads
/// one (psql's publication footer, with array subscripts and casts SQLite
/// cannot parse) is answered with no rows and its first SELECT's number
/// of columns.
fn never_rows(stmt: &str, s: &[Token<'_>]) -> Option<String> {
    // pg_trigger: SQLite's triggers are not PostgreSQL's (no trigger
    // functions); psql reads it with WITH ORDINALITY, which SQLite lacks.
    const NEVER: &[&str] = &[
        "pg_publication",
        "pg_publication_rel",
        "pg_publication_namespace",
        "pg_trigger",
    ];
    if !s
        .iter()
        .any(|t| NEVER.iter().any(|n| t.text.eq_ignore_ascii_case(n)))
    {
        return None;
    }
    let select = s.iter().position(|t| is(Some(t), "SELECT"))?;
    let mut depth = 0i32;
    let mut columns = 1;
    for t in &s[select + 1..] {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
        } else if depth == 0 && t.is_punct(",") {
            columns += 1;
        } else if depth == 0 && is(Some(t), "FROM") {
            break;
        }
    }
    let _ = stmt;
    let cols: Vec<String> = (1..=columns).map(|i| format!("NULL AS c{i}")).collect();
    Some(format!("SELECT {} WHERE 0", cols.join(", ")))
}

/// The operand a `::` at `s[colons]` applies to: its first token and text.
fn operand_before<'a>(stmt: &'a str, s: &[Token<'_>], colons: usize) -> (usize, &'a str) {
    let mut k = colons - 1;
    if s[k].is_punct(")") {
        // A parenthesised expression: back to its opening.
        let mut depth = 0usize;
        loop {
            if s[k].is_punct(")") {
                depth += 1;
            } else if s[k].is_punct("(") {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            if k == 0 {
                break;
            }
            k -= 1;
        }
    } else {
        // a.b.c
        while k >= 2
            && s[k - 1].is_punct(".")
            && matches!(s[k - 2].kind, Kind::Word | Kind::QuotedIdent)
        {
            k -= 2;
        }
    }
    (k, &stmt[s[k].start..s[colons - 1].end()])
}

/// `pg_catalog.f(…)` at `s[name]` that needs a look-up: (index of its
/// closing parenthesis, replacement).
fn function(stmt: &str, s: &[Token<'_>], name: usize) -> Option<(usize, String)> {
    let f = s[name].text.to_ascii_lowercase();
    let close = matching(s, name + 1)?;
    let first_end = (name + 2..close)
        .find(|&k| s[k].is_punct(",") && matching_depth(s, name + 1, k) == 1)
        .unwrap_or(close);
    let arg = if first_end > name + 2 {
        let text = &stmt[s[name + 2].start..s[first_end - 1].end()];
        rewrite(text).unwrap_or_else(|| text.to_string())
    } else {
        "NULL".to_string()
    };
    let text = match f.as_str() {
        // The look-ups' own columns are renamed, so that an unqualified
        // argument (`pg_get_constraintdef(oid)`) still means the caller's.
        "pg_get_indexdef" => format!(
            "(SELECT hadr_i.hadr_def FROM (SELECT indexrelid AS hadr_key, indexdef AS hadr_def FROM ({})) hadr_i \
             WHERE hadr_i.hadr_key = ({arg}))",
            index()
        ),
        "pg_get_constraintdef" => format!(
            "(SELECT hadr_k.hadr_def FROM (SELECT oid AS hadr_key, condef AS hadr_def FROM ({})) hadr_k \
             WHERE hadr_k.hadr_key = ({arg}))",
            constraint()
        ),
        "pg_get_expr" => format!("({arg})"),
        // In FROM: the relation itself (hadr has no partitions).
        "pg_partition_ancestors" => format!("(SELECT CAST({arg} AS INTEGER) AS relid)"),
        // hadr has no arrays: what psql unnests (reloptions) is always NULL.
        "unnest" => {
            let alias = s
                .get(close + 1)
                .filter(|t| matches!(t.kind, Kind::Word | Kind::QuotedIdent))
                .map_or("unnest", |t| t.text);
            format!("(SELECT NULL AS {alias} WHERE 0)")
        }
        _ => return None,
    };
    Some((close, text))
}

/// Parenthesis depth at `s[at]`, counting from the `(` at `open`.
fn matching_depth(s: &[Token<'_>], open: usize, at: usize) -> usize {
    s[open..at].iter().fold(0usize, |d, t| {
        if t.is_punct("(") {
            d + 1
        } else if t.is_punct(")") {
            d.saturating_sub(1)
        } else {
            d
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_become_subqueries_with_their_alias() {
        let out = rewrite("SELECT c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace").unwrap();
        assert!(
            out.starts_with(
                "SELECT c.relname FROM (SELECT CAST(hadr_oid(s.name) AS INTEGER) AS oid"
            ),
            "{out}"
        );
        assert!(out.contains(") c LEFT JOIN (SELECT 2200 AS oid"), "{out}");
        let out = rewrite("SELECT typname FROM pg_type WHERE oid = 23").unwrap();
        assert!(out.contains(") AS pg_type WHERE oid = 23"), "{out}");
        assert_eq!(rewrite("SELECT * FROM users"), None);
    }

    #[test]
    fn operators_collations_and_casts() {
        let out = rewrite("SELECT 1 WHERE x OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default AND n !~ '^pg_'").unwrap();
        assert_eq!(
            out,
            "SELECT 1 WHERE x  REGEXP  '^(t)$'  AND n  NOT REGEXP  '^pg_'"
        );
        assert_eq!(rewrite("SELECT ~5"), None);
        let out = rewrite("SELECT '16384'::pg_catalog.regclass, 't'::regclass, x::pg_catalog.oid")
            .unwrap();
        assert_eq!(out, "SELECT 16384, hadr_oid('t'), CAST(x AS INTEGER)");
        let out = rewrite("SELECT pg_catalog.pg_get_indexdef(i.indexrelid, 0, true)").unwrap();
        assert!(
            out.contains("WHERE hadr_i.hadr_key = (i.indexrelid))"),
            "{out}"
        );
    }
}
