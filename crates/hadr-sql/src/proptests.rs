//! Property tests: no public function panics on any input, splitting is
//! stable, and translation never touches string literals.

use crate::lexer::{dollar_value, string_value, tokenize, Kind};
use crate::*;
use proptest::prelude::*;

/// Fragments that exercise every lexical corner; concatenated at random
/// they produce far more interesting inputs than uniform random text.
const FRAGMENTS: &[&str] = &[
    "'",
    "''",
    "\"",
    "E'",
    "e'",
    "X'",
    "\\",
    "$$",
    "$a$",
    "$1",
    "$2",
    "$0",
    "$",
    "--",
    "/*",
    "*/",
    "\n",
    ";",
    "[",
    "]",
    "`",
    "(",
    ")",
    "::",
    ":",
    ".",
    ",",
    "=",
    "<",
    "+",
    "-",
    "*",
    "/",
    " ",
    " ",
    "x",
    "t.c",
    "1",
    "1.5e-3",
    "int",
    "bool",
    "double",
    "precision",
    "varchar",
    "(10)",
    "select",
    "SELECT",
    "from",
    "where",
    "in",
    "values",
    "insert",
    "into",
    "update",
    "set",
    "CREATE",
    "TEMP",
    "TRIGGER",
    "BEGIN",
    "END",
    "CASE",
    "WHEN",
    "cast",
    "as",
    "with",
    "limit",
    "union",
    "returning",
    "count(",
    "not",
    "is",
    "||",
    "distinct",
    "by",
    "é",
    "ü",
    "\u{0}",
    "\t",
];

fn sqlish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.concat())
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![sqlish(), any::<String>()]
}

/// Texts of the string-literal tokens of `s`, in order.
/// The values of the string literals of `s` (`X''` and `B''` as written):
/// translation may respell a literal (`E'…'` and `$$…$$` as `'…'`), never
/// change its value.
fn literals(s: &str) -> Vec<String> {
    tokenize(s)
        .into_iter()
        .filter(|t| matches!(t.kind, Kind::Str | Kind::DollarStr))
        .map(|t| match (t.kind, t.text.as_bytes().first()) {
            (Kind::DollarStr, _) => dollar_value(&t).to_string(),
            (_, Some(b'x' | b'X' | b'b' | b'B')) => t.text.to_string(),
            _ => string_value(&t),
        })
        .collect()
}

/// A SQL fragment paired with the string literals it contains.
fn piece() -> impl Strategy<Value = (String, Vec<String>)> {
    let plain = any::<String>().prop_map(|v| {
        let lit = format!("'{}'", v.replace('\'', "''"));
        (lit, vec![v])
    });
    let estr = "[a-z'\\\\ ;$]{0,8}".prop_map(|v| {
        let lit = format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        (lit, vec![v])
    });
    let dollar = any::<String>()
        .prop_filter("no delimiter", |v| !v.contains('$'))
        .prop_map(|v| (format!("$q${v}$q$"), vec![v]));
    let cast_lit = (
        any::<String>(),
        prop::sample::select(&["int", "text", "numeric(5,2)", "double precision", "json"][..]),
    )
        .prop_map(|(v, ty)| {
            let lit = format!("'{}'", v.replace('\'', "''"));
            (format!("{lit}::{ty}"), vec![v])
        });
    let code = prop::sample::select(
        &[
            " ",
            "x",
            "t.c",
            "$1",
            "$2::int",
            "=",
            "+",
            "(",
            ")",
            ",",
            "::text",
            "f(",
            "select",
            "where",
            "in",
            "cast(",
            " as bigint)",
            "1",
            "limit",
            "/* c */",
            "-- c\n",
        ][..],
    )
    .prop_map(|c| (c.to_string(), Vec::new()));
    prop_oneof![plain, estr, dollar, cast_lit, code.clone(), code]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn nothing_panics(s in any_input()) {
        let _ = split(&s);
        let _ = translate(&s);
        let cmd = classify(&s);
        let _ = command_tag(&cmd, 7);
        let _ = is_transaction_control(&cmd);
        let _ = PgType::from_name(&s);
        let _ = PgType::from_sqlite_decltype(&s);
        let _ = result_column_types(&s);
    }

    #[test]
    fn split_is_stable(s in any_input()) {
        let first = split(&s);
        let again = split(&first.join(";"));
        prop_assert_eq!(&again, &first);
        for stmt in &first {
            prop_assert!(!stmt.is_empty());
            // Each statement splits to itself.
            prop_assert_eq!(split(stmt), vec![stmt.clone()]);
        }
    }

    #[test]
    fn translate_keeps_generated_literals(parts in prop::collection::vec(piece(), 0..12)) {
        let stmt = parts.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(" ");
        let expected: Vec<String> = parts.iter().flat_map(|(_, l)| l.clone()).collect();
        // Lexing is context-free enough that each generated literal is one token.
        prop_assert_eq!(literals(&stmt), expected.clone());
        if let Ok(t) = translate(&stmt) {
            prop_assert_eq!(literals(&t.sql), expected);
        }
    }

    #[test]
    fn translate_keeps_literals_of_any_input(s in any_input()) {
        // Casts of literals to bool and bytea are evaluated, by design.
        let lower = s.to_lowercase();
        prop_assume!(!lower.contains("bool") && !lower.contains("bytea"));
        if let Ok(t) = translate(&s) {
            prop_assert_eq!(literals(&t.sql), literals(&s));
            prop_assert_eq!(t.param_hints.len(), t.param_count);
            prop_assert!(!t.sql.contains('$') || s.contains('$'));
        }
    }
}

/// Shrunk failures the properties once found, pinned as plain tests.
#[test]
fn regressions() {
    // `?1` must not fuse with a following E'' string.
    assert_eq!(translate("$1E''").map(|t| t.sql), Ok("?1 ''".to_string()));
    // A subscript after `$1` stays a subscript after `?1`.
    assert_eq!(
        literals(&translate("$1[E']E'").map(|t| t.sql).unwrap_or_default()),
        literals("$1[E']E'")
    );
    // Unterminated quoted identifier ending in a multi-byte character.
    assert_eq!(
        classify("set,`é"),
        Command::Set {
            name: String::new(),
            value: "é".into(),
            local: false
        }
    );
    assert_eq!(split("\" "), vec!["\" ".to_string()]);
}
