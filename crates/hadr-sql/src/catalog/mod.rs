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

mod columns;
mod information_schema;
mod keys;
mod query;

pub use columns::column_type;
pub(crate) use query::rewrite;

/// hadr's own tables, never shown.
pub(super) const HIDDEN: &str =
    "s.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND s.name NOT LIKE '\\_hadr\\_%' ESCAPE '\\' \
     AND s.name NOT IN ('hadr_roles', 'hadr_auth_secret', 'hadr_commit_tokens')";

/// Every index, SQLite's automatic ones under PostgreSQL's names
/// (`t_pkey`, `t_a_key`), plus the primary key of a table whose key is its
/// rowid (SQLite keeps no index for it).
pub(super) fn indexes() -> String {
    format!(
        "SELECT s.name AS tbl, il.name AS sqlite_name, \
           CASE il.origin WHEN 'pk' THEN s.name || '_pkey' \
             WHEN 'u' THEN s.name || '_' || (SELECT group_concat(ii.name, '_') FROM pragma_index_info(il.name) ii) || '_key' \
             ELSE il.name END AS name, \
           il.\"unique\" AS isunique, il.origin = 'pk' AS isprimary, il.origin IN ('pk', 'u') AS isconstraint, \
           (SELECT group_concat(ii.name, ', ') FROM pragma_index_info(il.name) ii) AS cols, \
           (SELECT group_concat(xi.name || CASE xi.\"desc\" WHEN 1 THEN ' DESC' ELSE '' END, ', ') \
              FROM pragma_index_xinfo(il.name) xi WHERE xi.key = 1) AS coldefs, \
           (SELECT group_concat(ii.cid + 1, ' ') FROM pragma_index_info(il.name) ii) AS indkey, \
           (SELECT group_concat(CASE xi.\"desc\" WHEN 1 THEN 3 ELSE 0 END, ' ') \
              FROM pragma_index_xinfo(il.name) xi WHERE xi.key = 1) AS indoption, \
           (SELECT count(*) FROM pragma_index_info(il.name)) AS ncols \
         FROM sqlite_schema s, pragma_index_list(s.name) il WHERE s.type = 'table' AND {HIDDEN} \
         UNION ALL \
         SELECT s.name, NULL, s.name || '_pkey', 1, 1, 1, \
           (SELECT group_concat(p.name, ', ') FROM pragma_table_info(s.name) p WHERE p.pk > 0), \
           (SELECT group_concat(p.name, ', ') FROM pragma_table_info(s.name) p WHERE p.pk > 0), \
           (SELECT group_concat(p.cid + 1, ' ') FROM pragma_table_info(s.name) p WHERE p.pk > 0), '0', 1 \
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

pub(super) fn class() -> String {
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

pub(super) fn index() -> String {
    format!(
        "SELECT CAST(hadr_oid(x.name) AS INTEGER) AS indexrelid, CAST(hadr_oid(x.tbl) AS INTEGER) AS indrelid, x.ncols AS indnatts, \
           x.ncols AS indnkeyatts, x.isunique AS indisunique, x.isprimary AS indisprimary, \
           0 AS indisexclusion, 1 AS indimmediate, 0 AS indisclustered, 1 AS indisvalid, \
           0 AS indcheckxmin, 1 AS indisready, 1 AS indislive, 0 AS indisreplident, \
           0 AS indnullsnotdistinct, \
           x.indoption AS indoption, \
           substr('0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0', 1, 2 * x.ncols - 1) AS indcollation, \
           substr('0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0', 1, 2 * x.ncols - 1) AS indclass, \
           x.indkey AS indkey, NULL AS indexprs, NULL AS indpred, \
           'CREATE ' || CASE WHEN x.isunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || x.name || \
           ' ON public.' || x.tbl || ' USING btree (' || coalesce(x.coldefs, '') || ')' AS indexdef \
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
         WHERE s.type IN ('table', 'view') AND {HIDDEN} \
         UNION ALL \
         SELECT CAST(hadr_oid(k.idx) AS INTEGER), k.name, hadr_type_oid(k.type), -1, -1, k.ord, 0, -1, \
           hadr_typmod(k.type), 0, 'p', 'i', 0, 0, 0, '', '', '', 0, 1, 0, 0, NULL, NULL, NULL, NULL \
         FROM ({index_columns}) k",
        index_columns = index_columns()
    )
}

/// The columns of every index, as `pg_attribute` lists an index's own:
/// (index name, column name, its declared type, position from 1).
fn index_columns() -> String {
    format!(
        "SELECT x.name AS idx, ii.name AS name, \
           (SELECT p.type FROM pragma_table_info(x.tbl) p WHERE p.cid = ii.cid) AS type, ii.seqno + 1 AS ord \
         FROM ({idx}) x, pragma_index_info(x.sqlite_name) ii WHERE x.sqlite_name IS NOT NULL \
         UNION ALL \
         SELECT x.name, p.name, p.type, 1 FROM ({idx}) x, pragma_table_info(x.tbl) p \
         WHERE x.sqlite_name IS NULL AND p.pk > 0",
        idx = indexes()
    )
}

/// `pg_get_indexdef(index, column, pretty)`: the index's definition for
/// column 0, else that column's name.
pub(super) fn indexdef_lookup(index_oid: &str, column: Option<&str>) -> String {
    let def = format!(
        "(SELECT hadr_i.hadr_def FROM (SELECT indexrelid AS hadr_key, indexdef AS hadr_def FROM ({})) hadr_i \
         WHERE hadr_i.hadr_key = ({index_oid}))",
        index()
    );
    match column {
        None | Some("0") => def,
        Some(c) => format!(
            "CASE WHEN ({c}) = 0 THEN {def} ELSE (SELECT hadr_ic.name FROM ({}) hadr_ic \
             WHERE CAST(hadr_oid(hadr_ic.idx) AS INTEGER) = ({index_oid}) AND hadr_ic.ord = ({c})) END",
            index_columns()
        ),
    }
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

pub(super) fn constraint() -> String {
    format!(
        "SELECT CAST(hadr_oid(x.name) AS INTEGER) AS oid, x.name AS conname, 2200 AS connamespace, \
           CASE WHEN x.isprimary THEN 'p' ELSE 'u' END AS contype, 0 AS condeferrable, 0 AS condeferred, \
           1 AS convalidated, CAST(hadr_oid(x.tbl) AS INTEGER) AS conrelid, 0 AS contypid, CAST(hadr_oid(x.name) AS INTEGER) AS conindid, \
           0 AS conparentid, 0 AS confrelid, ' ' AS confupdtype, ' ' AS confdeltype, ' ' AS confmatchtype, \
           1 AS conislocal, 0 AS coninhcount, 1 AS connoinherit, '{{' || replace(x.indkey, ' ', ',') || '}}' AS conkey, \
           NULL AS confkey, \
           CASE WHEN x.isprimary THEN 'PRIMARY KEY (' ELSE 'UNIQUE (' END || x.cols || ')' AS condef \
         FROM ({idx}) x WHERE x.isconstraint \
         UNION ALL \
         SELECT CAST(hadr_oid(f.name) AS INTEGER), f.name, 2200, 'f', 0, 0, 1, CAST(hadr_oid(f.tbl) AS INTEGER), 0, \
           (SELECT CAST(hadr_oid(x.name) AS INTEGER) FROM ({idx}) x WHERE x.tbl = f.ref COLLATE NOCASE \
              AND x.isunique AND x.cols = f.refcols COLLATE NOCASE ORDER BY x.isprimary DESC LIMIT 1), \
           0, CAST(hadr_oid(f.ref) AS INTEGER), {upd}, {del}, 's', 1, 0, 1, \
           '{{' || f.conkey || '}}', '{{' || f.confkey || '}}', \
           'FOREIGN KEY (' || f.cols || ') REFERENCES ' || f.ref || \
           CASE WHEN f.refcols IS NULL THEN '' ELSE '(' || f.refcols || ')' END || \
           CASE WHEN f.on_update <> 'NO ACTION' THEN ' ON UPDATE ' || f.on_update ELSE '' END || \
           CASE WHEN f.on_delete <> 'NO ACTION' THEN ' ON DELETE ' || f.on_delete ELSE '' END \
         FROM (SELECT s.name AS tbl, fk.\"table\" AS ref, fk.on_update, fk.on_delete, \
                 s.name || '_' || group_concat(fk.\"from\", '_') || '_fkey' AS name, \
                 group_concat(fk.\"from\", ', ') AS cols, coalesce(group_concat(fk.\"to\", ', '), \
                   (SELECT group_concat(p.name, ', ') FROM pragma_table_info(fk.\"table\") p WHERE p.pk > 0)) AS refcols, \
                 group_concat((SELECT p.cid + 1 FROM pragma_table_info(s.name) p WHERE p.name = fk.\"from\"), ',') AS conkey, \
                 group_concat((SELECT p.cid + 1 FROM pragma_table_info(fk.\"table\") p WHERE p.name = coalesce(fk.\"to\", \
                   (SELECT q.name FROM pragma_table_info(fk.\"table\") q WHERE q.pk = fk.seq + 1))), ',') AS confkey \
               FROM sqlite_schema s, pragma_foreign_key_list(s.name) fk \
               WHERE s.type = 'table' AND {HIDDEN} GROUP BY s.name, fk.id) f",
        idx = indexes(),
        upd = action_code("f.on_update"),
        del = action_code("f.on_delete"),
    )
}

/// `confupdtype` / `confdeltype`: PostgreSQL's letter for the action
/// SQLite's `pragma_foreign_key_list` names.
fn action_code(column: &str) -> String {
    format!(
        "CASE {column} WHEN 'CASCADE' THEN 'c' WHEN 'SET NULL' THEN 'n' WHEN 'SET DEFAULT' THEN 'd' \
         WHEN 'RESTRICT' THEN 'r' ELSE 'a' END"
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

/// `pg_settings`: what `SHOW` answers for the session (through
/// `current_setting`, so a `SET` shows), and the fixed limits drivers
/// read from it (pgjdbc's `max_index_keys` before `getImportedKeys`).
fn settings() -> String {
    const FIXED: &[(&str, &str, &str)] = &[
        ("max_index_keys", "32", "integer"),
        ("max_identifier_length", "63", "integer"),
        ("block_size", "4096", "integer"),
        ("server_version_num", "150000", "integer"),
        ("search_path", "\"$user\", public", "string"),
    ];
    const SESSION: &[(&str, &str)] = &[
        ("server_version", "string"),
        ("server_encoding", "string"),
        ("client_encoding", "string"),
        ("DateStyle", "string"),
        ("IntervalStyle", "enum"),
        ("TimeZone", "string"),
        ("integer_datetimes", "bool"),
        ("standard_conforming_strings", "bool"),
        ("application_name", "string"),
        ("max_connections", "integer"),
        ("transaction_isolation", "enum"),
        ("default_transaction_isolation", "enum"),
        ("transaction_read_only", "bool"),
        ("idle_in_transaction_session_timeout", "integer"),
    ];
    let rows = FIXED
        .iter()
        .map(|(n, v, t)| format!("SELECT '{n}', '{v}', '{t}'"))
        .chain(
            SESSION
                .iter()
                .map(|(n, t)| format!("SELECT '{n}', current_setting('{n}', 1), '{t}'")),
        )
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!(
        "SELECT v.column1 AS name, v.column2 AS setting, NULL AS unit, 'hadr' AS category, \
           '' AS short_desc, NULL AS extra_desc, 'user' AS context, v.column3 AS vartype, \
           'default' AS source, NULL AS min_val, NULL AS max_val, NULL AS enumvals, \
           v.column2 AS boot_val, v.column2 AS reset_val, NULL AS sourcefile, NULL AS sourceline, \
           0 AS pending_restart \
         FROM (SELECT NULL AS column1, NULL AS column2, NULL AS column3 WHERE 0 UNION ALL {rows}) v"
    )
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

/// The SQL of catalog relation `name`, one row per key column where the
/// query expands its key arrays (see keys.rs).
pub(super) fn relation_for(name: &str, constraint: bool, index: bool) -> Option<String> {
    match name {
        "pg_constraint" if constraint => Some(keys::constraint_keys()),
        "pg_index" if index => Some(keys::index_keys()),
        _ => relation(name),
    }
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
        "pg_settings" => settings(),
        "pg_inherits" => empty(&["inhrelid", "inhparent", "inhseqno", "inhdetachpending"]),
        // COMMENT ON's rows (crates/hadr-sql/src/comment.rs), through the
        // server's hadr_descriptions(): the table exists only once a
        // comment is made, and a query must not fail before.
        "pg_description" => "SELECT CAST(json_extract(j.value, '$[0]') AS INTEGER) AS objoid, \
             1259 AS classoid, \
             CAST(json_extract(j.value, '$[1]') AS INTEGER) AS objsubid, \
             json_extract(j.value, '$[2]') AS description \
           FROM json_each(hadr_descriptions()) j"
            .to_string(),
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
pub(super) fn is_bool_column(name: &str) -> bool {
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
        "indnullsnotdistinct",
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
        "pending_restart",
    ];
    BOOLS.contains(&name)
}
