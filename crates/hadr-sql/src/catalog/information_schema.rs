//! `information_schema.tables`, `.columns` and `.schemata`, the views
//! migration tools and ORMs read, over the same schema facts as the
//! pg_catalog relations of this module's parent.

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
        "schemata" => "SELECT current_database() AS catalog_name, 'public' AS schema_name, \
               current_user() AS schema_owner, NULL AS default_character_set_catalog, \
               NULL AS default_character_set_schema, NULL AS default_character_set_name, NULL AS sql_path"
            .to_string(),
        _ => return None,
    })
}
