//! Rewriting a query that reads PostgreSQL's catalogs into one SQLite
//! runs: each catalog relation becomes its subquery (the parent module),
//! and the PostgreSQL-only forms such queries use become SQLite's.

use super::{class, constraint, information_schema, keys, relation_for};
use crate::brackets::close_of as matching;
use crate::lexer::{string_value, tokenize, Kind, Token};

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

/// Whether `t` is the word `w` (any case).
fn is(t: Option<&Token<'_>>, w: &str) -> bool {
    t.is_some_and(|t| t.kind == Kind::Word && t.text.eq_ignore_ascii_case(w))
}

/// `stmt` with its catalog references rewritten for SQLite; None when it
/// names no catalog and uses none of the catalog-query forms.
pub(crate) fn rewrite(stmt: &str) -> Option<String> {
    if !may_need(stmt) {
        return None;
    }
    let toks = tokenize(stmt);
    let s = solid(&toks);
    if let Some(none) = never_rows(stmt, &s) {
        return Some(none);
    }
    // Key arrays expanded into rows (keys.rs)? Each relation only when a
    // call expands one of its own arrays.
    let expands = |arrays: &[&str]| {
        s.windows(2).enumerate().any(|(k, w)| {
            let call = w[1].is_punct("(")
                && ["unnest", "generate_subscripts", "_pg_expandarray"]
                    .iter()
                    .any(|f| is(Some(&w[0]), f));
            call && matching(&s, k + 1).is_some_and(|close| {
                s[k + 2..close]
                    .iter()
                    .any(|t| arrays.iter().any(|a| t.text.eq_ignore_ascii_case(a)))
            })
        })
    };
    let expand = Expand {
        constraint: expands(&["conkey", "confkey"]),
        index: expands(&["indkey"]),
    };
    // (start byte, end byte, replacement)
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let t = &s[i];
        if expand.constraint || expand.index {
            if let Some((from, to, text)) = key_call(stmt, &s, i) {
                edits.push((s[from].start, s[to].end(), text));
                i = to + 1;
                continue;
            }
        }
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
                relation_for(&name, expand.constraint, expand.index)
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
        if let Some((from, to, text)) = subscript(stmt, &s, i)
            .or_else(|| series(stmt, &s, i))
            .or_else(|| trim_from(stmt, &s, i))
            .or_else(|| cast_regclass(stmt, &s, i))
        {
            edits.push((s[from].start, s[to].end(), text));
            i = to + 1;
            continue;
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
                    let expr = inner(stmt, &s, i + 3, from - 1);
                    let rest = inner(stmt, &s, from, close - 1);
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
        // bool_and / bool_or over 1/0 are min / max.
        for (pg, sqlite) in [("bool_and", "min"), ("bool_or", "max")] {
            if is(Some(t), pg) && s.get(i + 1).is_some_and(|p| p.is_punct("(")) {
                edits.push((t.start, t.end(), sqlite.to_string()));
            }
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
                            // The server's: schema-qualified names and
                            // the system catalogs' fixed OIDs.
                            format!("hadr_regclass({operand})")
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

/// Whether `stmt` could hold anything [`rewrite`] changes: a cheap scan
/// that spares the common statement a second tokenization (every
/// statement a client prepares comes through here).
fn may_need(stmt: &str) -> bool {
    const NEEDLES: &[&[u8]] = &[
        b"pg_",
        b"information_schema",
        b"::oid",
        b"~",
        b"any",
        b"array",
        b"json_build_object",
        b"unnest",
        b"generate_subscripts",
        b"collate",
        b"operator",
        b"bool_and",
        b"bool_or",
        b"[",
        b"generate_series",
        b"trim",
        b"regclass",
    ];
    // One pass over the text: only at a byte some needle starts with are
    // the needles compared (a needle per pass cost 1.6% of a point
    // select's server time).
    const FIRST: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < NEEDLES.len() {
            let c = NEEDLES[i][0];
            t[c as usize] = true;
            t[c.to_ascii_uppercase() as usize] = true;
            i += 1;
        }
        t
    };
    let b = stmt.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        FIRST[c as usize]
            && NEEDLES.iter().any(|n| {
                n[0].eq_ignore_ascii_case(&c)
                    && b.get(i..i + n.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(n))
            })
    })
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

/// Which catalog relations a query gets one row per key column of.
struct Expand {
    constraint: bool,
    index: bool,
}

/// A key-array call at `s[i]` (keys.rs): `unnest(x.conkey)`,
/// `generate_subscripts(x.conkey, 1)`,
/// `information_schema._pg_expandarray(i.indkey)` with or without `(…).n`
/// / `(…).x` around it, and `(t.keys).x` of such a value: (first token,
/// last token, replacement).
fn key_call(stmt: &str, s: &[Token<'_>], i: usize) -> Option<(usize, usize, String)> {
    // (…).n / (…).x around a call, or (t.keys).x
    if s[i].is_punct("(") {
        let close = matching(s, i)?;
        let field = s
            .get(close + 2)
            .filter(|_| s.get(close + 1).is_some_and(|d| d.is_punct(".")))?;
        let position = match field.text.to_ascii_lowercase().as_str() {
            "n" => true,
            "x" => false,
            _ => return None,
        };
        // (t.keys).x: the value is the key already.
        let inner: Vec<&Token<'_>> = s[i + 1..close].iter().collect();
        if !position
            && inner
                .last()
                .is_some_and(|t| t.text.eq_ignore_ascii_case("keys"))
        {
            return Some((
                i,
                close + 2,
                stmt[s[i + 1].start..s[close - 1].end()].to_string(),
            ));
        }
        let (_, end, text) = expansion_call(s, i + 1, Some(position))?;
        return (end + 1 == close).then(|| (i, close + 2, text));
    }
    expansion_call(s, i, None)
}

/// `unnest(a)`, `generate_subscripts(a, 1)` or
/// `[information_schema.]_pg_expandarray(a)` starting at `s[i]` over a key
/// array `a`: (first token, its closing parenthesis, replacement);
/// `position` overrides what `_pg_expandarray` yields.
fn expansion_call(
    s: &[Token<'_>],
    i: usize,
    position: Option<bool>,
) -> Option<(usize, usize, String)> {
    let mut f = i;
    if is(s.get(f), "information_schema") || is(s.get(f), "pg_catalog") {
        if !s.get(f + 1).is_some_and(|d| d.is_punct(".")) {
            return None;
        }
        f += 2;
    }
    let func = s.get(f)?.text.to_ascii_lowercase();
    let wants_position = match func.as_str() {
        "unnest" => false,
        "generate_subscripts" => true,
        "_pg_expandarray" => position.unwrap_or(false),
        _ => return None,
    };
    if !s.get(f + 1).is_some_and(|p| p.is_punct("(")) {
        return None;
    }
    let close = matching(s, f + 1)?;
    let arg_end = (f + 2..close)
        .find(|&k| s[k].is_punct(",") && matching_depth(s, f + 1, k) == 1)
        .unwrap_or(close);
    let array = s.get(arg_end.checked_sub(1)?)?;
    let column = keys::column_for(array.text, wants_position)?;
    // The relation the array belongs to: what precedes `.array`.
    let chain: Vec<&str> = s[f + 2..arg_end - 1]
        .iter()
        .map(|t| t.text)
        .filter(|t| !t.eq_ignore_ascii_case("pg_catalog"))
        .collect();
    let chain = chain.join("");
    let chain = chain.trim_start_matches('.');
    let text = if chain.is_empty() {
        column.to_string()
    } else {
        format!("{chain}{column}")
    };
    Some((i, close, text))
}

/// The text of `s[a..=b]`, itself rewritten.
fn inner(stmt: &str, s: &[Token<'_>], a: usize, b: usize) -> String {
    let text = &stmt[s[a].start..s[b].end()];
    rewrite(text).unwrap_or_else(|| text.to_string())
}

/// `x[i]` at the `[` `s[open]`: the element, by `hadr_array_get` (the
/// server's), which takes the array's text as PostgreSQL writes it
/// (`{…}` from 1, an `int2vector`'s `1 2` from 0). Not a type's `int[]`,
/// not a slice.
fn subscript(stmt: &str, s: &[Token<'_>], open: usize) -> Option<(usize, usize, String)> {
    if !s[open].is_punct("[") || open == 0 {
        return None;
    }
    let before = &s[open - 1];
    let operand = matches!(before.kind, Kind::Word | Kind::QuotedIdent) || before.is_punct(")");
    // Not a keyword: `SELECT[a]` is SQLite's bracket-quoted name.
    if !operand || (before.kind == Kind::Word && crate::keywords::is_reserved(before.text)) {
        return None;
    }
    let close = matching(s, open)?;
    if close == open + 1 || s[open + 1..close].iter().any(|t| t.is_punct(":")) {
        return None;
    }
    let (from, array) = operand_before(stmt, s, open);
    // A type: `x::int[1]`, `CAST(x AS int[])`.
    if from > 0 && (s[from - 1].is_punct("::") || is(s.get(from - 1), "AS")) {
        return None;
    }
    let index = inner(stmt, s, open + 1, close - 1);
    let array = rewrite(array).unwrap_or_else(|| array.to_string());
    Some((from, close, format!("hadr_array_get({array}, {index})")))
}

/// `[pg_catalog.]generate_series(a, b [, step]) [AS] [alias[(column)]]` as
/// a relation (after FROM or JOIN, or with a column alias, which only a
/// relation has): a recursive common table expression, since the bundled
/// SQLite has no `generate_series`.
fn series(stmt: &str, s: &[Token<'_>], i: usize) -> Option<(usize, usize, String)> {
    let mut f = i;
    if is(s.get(f), "pg_catalog") && s.get(f + 1).is_some_and(|d| d.is_punct(".")) {
        f += 2;
    }
    if !is(s.get(f), "generate_series") || !s.get(f + 1).is_some_and(|p| p.is_punct("(")) {
        return None;
    }
    if i > 0 && s[i - 1].is_punct(".") {
        return None;
    }
    let close = matching(s, f + 1)?;
    let mut args = Vec::new();
    let mut from = f + 2;
    for k in f + 2..=close {
        if k == close || (s[k].is_punct(",") && matching_depth(s, f + 1, k) == 1) {
            if k == from {
                return None;
            }
            args.push(inner(stmt, s, from, k - 1));
            from = k + 1;
        }
    }
    let (start, stop, step) = match args.as_slice() {
        [a, b] => (a.clone(), b.clone(), "1".to_string()),
        [a, b, c] => (a.clone(), b.clone(), c.clone()),
        _ => return None,
    };
    // [AS] alias [( column )]
    let mut k = close + 1;
    if is(s.get(k), "AS") {
        k += 1;
    }
    let alias = s.get(k).filter(|t| {
        matches!(t.kind, Kind::Word | Kind::QuotedIdent)
            && !NOT_ALIAS.iter().any(|w| t.text.eq_ignore_ascii_case(w))
    });
    let column_list = alias.is_some()
        && s.get(k + 1).is_some_and(|p| p.is_punct("("))
        && s.get(k + 3).is_some_and(|p| p.is_punct(")"));
    let in_from = i > 0 && (is(s.get(i - 1), "FROM") || is(s.get(i - 1), "JOIN"));
    if !in_from && !column_list {
        return None;
    }
    let (end, column) = match alias {
        Some(_) if column_list => (k + 3, s[k + 2].text),
        Some(a) => (k, a.text),
        None => (close, "generate_series"),
    };
    let table = alias.map_or("generate_series", |a| a.text);
    Some((
        i,
        end,
        format!(
            "(WITH RECURSIVE hadr_gs(v) AS (SELECT ({start}) WHERE ({step}) > 0 AND ({start}) <= ({stop}) \
               OR ({step}) < 0 AND ({start}) >= ({stop}) \
             UNION ALL SELECT v + ({step}) FROM hadr_gs \
               WHERE ({step}) > 0 AND v + ({step}) <= ({stop}) OR ({step}) < 0 AND v + ({step}) >= ({stop})) \
             SELECT v AS {column} FROM hadr_gs) AS {table}"
        ),
    ))
}

/// `CAST(x AS [pg_catalog.]regclass)`, as SQLAlchemy writes it with `x` a
/// parameter: the OID at run time, by the server's `hadr_regclass`.
fn cast_regclass(stmt: &str, s: &[Token<'_>], i: usize) -> Option<(usize, usize, String)> {
    if !is(s.get(i), "CAST") || !s.get(i + 1).is_some_and(|p| p.is_punct("(")) {
        return None;
    }
    let close = matching(s, i + 1)?;
    let mut ty = close.checked_sub(1)?;
    if !is(s.get(ty), "regclass") {
        return None;
    }
    if ty >= 2 && s[ty - 1].is_punct(".") && is(s.get(ty - 2), "pg_catalog") {
        ty -= 2;
    }
    let as_at = ty - 1;
    if !is(s.get(as_at), "AS") || as_at <= i + 2 || matching_depth(s, i + 1, as_at) != 1 {
        return None;
    }
    Some((
        i,
        close,
        format!("hadr_regclass({})", inner(stmt, s, i + 2, as_at - 1)),
    ))
}

/// SQL's `trim([BOTH | LEADING | TRAILING] [chars] FROM x)`: SQLite's
/// `trim(x, chars)`, `ltrim`, `rtrim`.
fn trim_from(stmt: &str, s: &[Token<'_>], i: usize) -> Option<(usize, usize, String)> {
    if !is(s.get(i), "trim") || !s.get(i + 1).is_some_and(|p| p.is_punct("(")) {
        return None;
    }
    if i > 0 && s[i - 1].is_punct(".") {
        return None;
    }
    let close = matching(s, i + 1)?;
    let from =
        (i + 2..close).find(|&k| is(s.get(k), "FROM") && matching_depth(s, i + 1, k) == 1)?;
    let mut k = i + 2;
    let func = match s[k].text.to_ascii_lowercase().as_str() {
        "both" => "trim",
        "leading" => "ltrim",
        "trailing" => "rtrim",
        _ => {
            k -= 1;
            "trim"
        }
    };
    k += 1;
    if from + 1 >= close {
        return None;
    }
    let value = inner(stmt, s, from + 1, close - 1);
    let text = if k < from {
        format!("{func}({value}, {})", inner(stmt, s, k, from - 1))
    } else {
        format!("{func}({value})")
    };
    Some((i, close, text))
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
    // The second argument, if any (pg_get_indexdef's column number).
    let second = (first_end < close)
        .then(|| {
            let from = first_end + 1;
            let to = (from..close)
                .find(|&k| s[k].is_punct(",") && matching_depth(s, name + 1, k) == 1)
                .unwrap_or(close);
            (to > from).then(|| stmt[s[from].start..s[to - 1].end()].trim().to_string())
        })
        .flatten();
    let arg = if first_end > name + 2 {
        let text = &stmt[s[name + 2].start..s[first_end - 1].end()];
        rewrite(text).unwrap_or_else(|| text.to_string())
    } else {
        "NULL".to_string()
    };
    let text = match f.as_str() {
        // The look-ups' own columns are renamed, so that an unqualified
        // argument (`pg_get_constraintdef(oid)`) still means the caller's.
        "pg_get_indexdef" => super::indexdef_lookup(&arg, second.as_deref()),
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
    fn ordinary_statements_are_not_tokenized_twice() {
        assert!(!may_need(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        ));
        assert!(!may_need("UPDATE t SET v = v + 1"));
        assert!(!may_need("SELECT $1::int8 + 1"));
        assert!(may_need("SELECT 't'::pg_catalog.regclass"));
        assert!(may_need("SELECT * FROM PG_CATALOG.pg_class"));
        assert!(may_need("SELECT 1 WHERE x = ANY (ARRAY[1])"));
        assert!(may_need("select * from PG_CLASS"));
        assert!(may_need("SELECT x[1]"));
        assert!(!may_need("SELECT p, g, t, r, a FROM u"));
    }

    #[test]
    fn subscripts_series_and_trim() {
        assert_eq!(
            rewrite("SELECT a.attname FROM t a WHERE a.attnum = con.conkey[pos.n]").unwrap(),
            "SELECT a.attname FROM t a WHERE a.attnum = hadr_array_get(con.conkey, pos.n)"
        );
        assert_eq!(
            rewrite("SELECT CASE tmp.I_INDOPTION[tmp.ORDINAL_POSITION - 1] & 1 WHEN 1 THEN 'D' END").unwrap(),
            "SELECT CASE hadr_array_get(tmp.I_INDOPTION, tmp.ORDINAL_POSITION - 1) & 1 WHEN 1 THEN 'D' END"
        );
        // Types and literals are not subscripts.
        assert_eq!(rewrite("SELECT x::int[] FROM t"), None);
        assert_eq!(rewrite("SELECT '[1]' FROM t"), None);
        assert_eq!(rewrite("SELECT ARRAY[1, 2]"), None);
        assert_eq!(rewrite("SELECT[a] FROM[t] WHERE[a]=1"), None);
        let out = rewrite("SELECT n FROM pg_catalog.generate_series(1, 32) pos(n), t").unwrap();
        assert!(
            out.contains("SELECT v AS n FROM hadr_gs) AS pos, t"),
            "{out}"
        );
        assert!(
            out.contains("SELECT (1) WHERE (1) > 0 AND (1) <= (32)"),
            "{out}"
        );
        let out = rewrite("SELECT g FROM generate_series(1, 10, 2) g").unwrap();
        assert!(out.contains("SELECT v AS g FROM hadr_gs) AS g"), "{out}");
        let out = rewrite("SELECT * FROM generate_series(1, 3)").unwrap();
        assert!(
            out.ends_with("SELECT v AS generate_series FROM hadr_gs) AS generate_series"),
            "{out}"
        );
        // A set-returning call in a select list is left alone.
        assert_eq!(rewrite("SELECT generate_series(1, 3)"), None);
        assert_eq!(
            rewrite("SELECT trim(both '\"' from x), trim(leading from y), trim(z, 'a')").unwrap(),
            "SELECT trim(x, '\"'), ltrim(y), trim(z, 'a')"
        );
        assert_eq!(rewrite("SELECT trim(x)"), None);
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
        assert_eq!(out, "SELECT 16384, hadr_regclass('t'), CAST(x AS INTEGER)");
        let out = rewrite("SELECT 'pg_class'::regclass, 'pg_catalog.pg_type'::regclass").unwrap();
        assert_eq!(
            out,
            "SELECT hadr_regclass('pg_class'), hadr_regclass('pg_catalog.pg_type')"
        );
        let out = rewrite("SELECT 1 WHERE d.classoid = CAST($1::VARCHAR AS pg_catalog.REGCLASS)")
            .unwrap();
        assert_eq!(
            out,
            "SELECT 1 WHERE d.classoid = hadr_regclass($1::VARCHAR)"
        );
        let out = rewrite("SELECT pg_catalog.pg_get_indexdef(i.indexrelid, 0, true)").unwrap();
        assert!(
            out.contains("WHERE hadr_i.hadr_key = (i.indexrelid))"),
            "{out}"
        );
    }
}
