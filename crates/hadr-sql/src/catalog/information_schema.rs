//! `information_schema.tables`, `.columns`, `.schemata`, `.views`,
//! `.table_constraints`, `.key_column_usage`,
//! `.referential_constraints` and `.constraint_column_usage`: the views
//! migration tools and ORMs read, over the same schema facts as the
//! pg_catalog relations of this module's parent (constraints are
//! `pg_constraint`'s rows, their columns `keys.rs`'s).

use super::HIDDEN;

/// The SQL of `information_schema.NAME`, if hadr has it.
pub(super) fn relation(name: &str) -> Option<String> {
    Some(match name {
        "tables" => format!(
            "SELECT current_database() AS table_catalog, 'public' AS table_schema, s.name AS table_name, \
               CASE s.type WHEN 'view' THEN 'VIEW' ELSE 'BASE TABLE' END AS table_type, \
               NULL AS self_referencing_column_name, NULL AS reference_generation, \
               NULL AS user_defined_type_catalog, NULL AS user_defined_type_schema, \
               NULL AS user_defined_type_name, \
               CASE s.type WHEN 'view' THEN 'NO' ELSE 'YES' END AS is_insertable_into, \
               'NO' AS is_typed, NULL AS commit_action \
             FROM sqlite_schema s WHERE s.type IN ('table', 'view') AND {HIDDEN}"
        ),
        "columns" => format!(
            "SELECT current_database() AS table_catalog, 'public' AS table_schema, s.name AS table_name, \
               p.name AS column_name, p.cid + 1 AS ordinal_position, {default} AS column_default, \
               CASE WHEN p.\"notnull\" OR (p.pk > 0 AND upper(p.type) = 'INTEGER') THEN 'NO' ELSE 'YES' END AS is_nullable, \
               format_type(hadr_type_oid(p.type), NULL) AS data_type, \
               CASE WHEN hadr_type_oid(p.type) IN (1042, 1043) AND hadr_typmod(p.type) >= 4 \
                 THEN hadr_typmod(p.type) - 4 END AS character_maximum_length, \
               CASE hadr_type_oid(p.type) WHEN 21 THEN 16 WHEN 23 THEN 32 WHEN 20 THEN 64 WHEN 700 THEN 24 \
                 WHEN 701 THEN 53 WHEN 1700 THEN CASE WHEN hadr_typmod(p.type) >= 4 \
                 THEN (hadr_typmod(p.type) - 4) >> 16 END END AS numeric_precision, \
               CASE WHEN hadr_type_oid(p.type) IN (21, 23, 20, 1700) THEN 2 \
                 WHEN hadr_type_oid(p.type) IN (700, 701) THEN 2 END AS numeric_precision_radix, \
               CASE hadr_type_oid(p.type) WHEN 21 THEN 0 WHEN 23 THEN 0 WHEN 20 THEN 0 \
                 WHEN 1700 THEN CASE WHEN hadr_typmod(p.type) >= 4 THEN (hadr_typmod(p.type) - 4) & 65535 END \
                 END AS numeric_scale, \
               NULL AS datetime_precision, current_database() AS udt_catalog, 'pg_catalog' AS udt_schema, \
               (SELECT t.typname FROM ({types}) t WHERE t.oid = hadr_type_oid(p.type)) AS udt_name, \
               CAST(p.cid + 1 AS TEXT) AS dtd_identifier, 'NO' AS is_identity, NULL AS identity_generation, \
               'NEVER' AS is_generated, NULL AS generation_expression, \
               CASE s.type WHEN 'view' THEN 'NO' ELSE 'YES' END AS is_updatable \
             FROM sqlite_schema s, pragma_table_info(s.name) p \
             WHERE s.type IN ('table', 'view') AND {HIDDEN}",
            types = super::type_(),
            default = super::shown_default("p.dflt_value"),
        ),
        "views" => format!(
            "SELECT current_database() AS table_catalog, 'public' AS table_schema, s.name AS table_name, \
               ltrim(substr(s.sql, instr(upper(s.sql), ' AS ') + 4)) AS view_definition, \
               'NONE' AS check_option, 'NO' AS is_updatable, 'NO' AS is_insertable_into, \
               'NO' AS is_trigger_updatable, 'NO' AS is_trigger_deletable, 'NO' AS is_trigger_insertable_into \
             FROM sqlite_schema s WHERE s.type = 'view' AND {HIDDEN}"
        ),
        "table_constraints" => format!(
            "SELECT current_database() AS constraint_catalog, 'public' AS constraint_schema, \
               c.conname AS constraint_name, current_database() AS table_catalog, 'public' AS table_schema, \
               {table} AS table_name, \
               CASE c.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' WHEN 'f' THEN 'FOREIGN KEY' \
                 ELSE 'CHECK' END AS constraint_type, \
               'NO' AS is_deferrable, 'NO' AS initially_deferred, 'YES' AS enforced, \
               CASE c.contype WHEN 'u' THEN 'YES' WHEN 'p' THEN 'YES' END AS nulls_distinct \
             FROM ({constraint}) c",
            table = table_of("c.conrelid"),
            constraint = super::constraint(),
        ),
        "key_column_usage" => format!(
            "SELECT current_database() AS constraint_catalog, 'public' AS constraint_schema, \
               c.conname AS constraint_name, current_database() AS table_catalog, 'public' AS table_schema, \
               {table} AS table_name, \
               (SELECT p.name FROM pragma_table_info({table}) p WHERE p.cid + 1 = e.hadr_key) AS column_name, \
               e.hadr_ord AS ordinal_position, \
               CASE WHEN c.contype = 'f' THEN e.hadr_ord END AS position_in_unique_constraint \
             FROM ({constraint}) c JOIN ({keys}) e ON e.hadr_con = c.oid WHERE c.contype IN ('p', 'u', 'f')",
            table = table_of("c.conrelid"),
            constraint = super::constraint(),
            keys = super::keys::keys(),
        ),
        "constraint_column_usage" => format!(
            "SELECT current_database() AS table_catalog, 'public' AS table_schema, {table} AS table_name, \
               (SELECT p.name FROM pragma_table_info({table}) p \
                 WHERE p.cid + 1 = CASE c.contype WHEN 'f' THEN e.hadr_fkey ELSE e.hadr_key END) AS column_name, \
               current_database() AS constraint_catalog, 'public' AS constraint_schema, c.conname AS constraint_name \
             FROM ({constraint}) c JOIN ({keys}) e ON e.hadr_con = c.oid WHERE c.contype IN ('p', 'u', 'f')",
            table = table_of("CASE c.contype WHEN 'f' THEN c.confrelid ELSE c.conrelid END"),
            constraint = super::constraint(),
            keys = super::keys::keys(),
        ),
        "referential_constraints" => format!(
            "SELECT current_database() AS constraint_catalog, 'public' AS constraint_schema, \
               c.conname AS constraint_name, current_database() AS unique_constraint_catalog, \
               'public' AS unique_constraint_schema, \
               (SELECT u.conname FROM ({constraint}) u WHERE u.oid = c.conindid) AS unique_constraint_name, \
               'NONE' AS match_option, {update} AS update_rule, {delete} AS delete_rule \
             FROM ({constraint}) c WHERE c.contype = 'f'",
            constraint = super::constraint(),
            update = rule("c.confupdtype"),
            delete = rule("c.confdeltype"),
        ),
        "schemata" => "SELECT current_database() AS catalog_name, 'public' AS schema_name, \
               current_user() AS schema_owner, NULL AS default_character_set_catalog, \
               NULL AS default_character_set_schema, NULL AS default_character_set_name, NULL AS sql_path"
            .to_string(),
        _ => return None,
    })
}

/// The name of the relation whose OID is `oid` (an SQL expression).
fn table_of(oid: &str) -> String {
    format!(
        "(SELECT t.name FROM sqlite_schema t WHERE t.type IN ('table', 'view') \
           AND CAST(hadr_oid(t.name) AS INTEGER) = ({oid}))"
    )
}

/// information_schema's words for a foreign key action letter.
fn rule(column: &str) -> String {
    format!(
        "CASE {column} WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' \
         WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END"
    )
}
