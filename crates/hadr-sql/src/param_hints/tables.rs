//! Which tables a statement names, under which aliases, and the target of
//! its `INSERT ... VALUES`: what a column next to a parameter belongs to.

use super::statement::Statement;
use crate::keywords::{is_name, is_name_part, is_reserved};
use crate::lexer::{ident_value, Kind};

/// The tables a statement names and the aliases it gives them.
pub(super) struct Tables {
    /// (lowercased alias or table name, real table if it is one).
    aliases: Vec<(String, Option<String>)>,
    /// Distinct real tables the statement names.
    tables: Vec<String>,
}

impl Tables {
    /// The tables and aliases named after `FROM`, `JOIN`, `USING`, `UPDATE`
    /// and `INTO` anywhere in the statement.
    pub fn collect(st: &Statement<'_, '_>) -> Tables {
        let mut found = Tables {
            aliases: Vec::new(),
            tables: Vec::new(),
        };
        let n = st.sig.len();
        for i in 0..n {
            let ii = i as isize;
            let t = &st.sig[i];
            let mut into = false;
            let (start, list) = if t.is_kw("FROM") {
                if st.kw(ii - 1, "DISTINCT") {
                    continue;
                }
                // FROM inside EXTRACT(.. FROM ..), substring(.. FROM ..) etc. is no table.
                if let Some(o) = st.enclosing[i] {
                    if !(st.kw(o as isize + 1, "SELECT") || st.kw(o as isize + 1, "DELETE")) {
                        continue;
                    }
                }
                (i + 1, true)
            } else if t.is_kw("JOIN") {
                (i + 1, false)
            } else if t.is_kw("INTO") {
                into = true;
                (i + 1, false)
            } else if t.is_kw("USING") && !st.punct(ii + 1, "(") {
                (i + 1, true)
            } else if t.is_kw("UPDATE") {
                if st.kw(ii - 1, "FOR") || st.kw(ii + 1, "SET") {
                    continue;
                }
                if st.kw(ii + 1, "OR") {
                    (i + 3, false)
                } else {
                    (i + 1, false)
                }
            } else {
                continue;
            };
            let mut k = start;
            while let Some((real, alias, next)) = table_ref(st, k, !into) {
                if let Some(r) = &real {
                    if !found.tables.iter().any(|x| x.eq_ignore_ascii_case(r)) {
                        found.tables.push(r.clone());
                    }
                    found.aliases.push((r.to_lowercase(), Some(r.clone())));
                }
                if let Some(a) = alias {
                    found.aliases.push((a.to_lowercase(), real));
                }
                if list && st.punct(next as isize, ",") {
                    k = next + 1;
                } else {
                    break;
                }
            }
        }
        found
    }

    /// The real table a qualifier (or, without one, the statement) refers to.
    pub fn resolve(&self, qualifier: Option<String>) -> Option<String> {
        match qualifier {
            Some(q) => {
                let lower = q.to_lowercase();
                match self.aliases.iter().find(|(a, _)| *a == lower) {
                    Some((_, Some(real))) => Some(real.clone()),
                    _ => Some(q),
                }
            }
            None if self.tables.len() == 1 => self.tables.first().cloned(),
            None => None,
        }
    }
}

/// One `FROM`/`JOIN`/`UPDATE`/`INTO` item: (real table, alias, index after).
/// `allow_fn` is false after INTO, where `name(` starts a column list.
fn table_ref(
    st: &Statement<'_, '_>,
    mut k: usize,
    allow_fn: bool,
) -> Option<(Option<String>, Option<String>, usize)> {
    if st.kw(k as isize, "ONLY") || st.kw(k as isize, "LATERAL") {
        k += 1;
    }
    let real;
    if st.punct(k as isize, "(") {
        real = None;
        k = st.after_group(k)?;
    } else {
        let t = st.sig.get(k)?;
        if !(t.kind == Kind::QuotedIdent || (t.kind == Kind::Word && !is_reserved(t.text))) {
            return None;
        }
        let (parts, next) = st.qualified_name(k)?;
        k = next;
        if allow_fn && st.punct(k as isize, "(") {
            // A set-returning function, not a table.
            real = None;
            k = st.after_group(k)?;
        } else {
            real = parts.last().cloned();
        }
    }
    let mut alias = None;
    if st.kw(k as isize, "AS") {
        k += 1;
    }
    if let Some(t) = st.sig.get(k).filter(|t| is_name(t)) {
        alias = Some(ident_value(t));
        k += 1;
        if st.punct(k as isize, "(") {
            k = st.after_group(k)?;
        }
    }
    Some((real, alias, k))
}

/// The `INSERT ... VALUES` shape of a statement, for positional hints.
pub(super) struct InsertShape {
    pub table: String,
    pub columns: Option<Vec<String>>,
    /// Indices of the `(` of each VALUES row.
    pub rows: Vec<usize>,
}

impl InsertShape {
    /// The shape of the statement's `INSERT ... VALUES`, if it has one.
    pub fn find(st: &Statement<'_, '_>) -> Option<InsertShape> {
        let n = st.sig.len();
        let verb = (0..n).find(|&i| {
            st.enclosing[i].is_none()
                && (st.sig[i].is_kw("INSERT")
                    || (st.sig[i].is_kw("REPLACE") && st.kw(i as isize + 1, "INTO")))
        })?;
        let into = (verb + 1..n.min(verb + 4)).find(|&i| st.sig[i].is_kw("INTO"))?;
        let (parts, mut k) = st.qualified_name(into + 1)?;
        let table = parts.last()?.clone();
        if st.kw(k as isize, "AS") {
            k += 2;
        }
        let mut columns = None;
        if st.punct(k as isize, "(") {
            let close = st.close_of(k)?;
            let mut cols = Vec::new();
            let mut j = k + 1;
            while j < close {
                let t = &st.sig[j];
                // Any identifier can be listed here, keywords included.
                if !is_name_part(t) || t.text.starts_with('$') {
                    return None;
                }
                cols.push(ident_value(t));
                j += 1;
                if j < close {
                    if !st.punct(j as isize, ",") {
                        return None;
                    }
                    j += 1;
                }
            }
            columns = Some(cols);
            k = close + 1;
        }
        if !st.kw(k as isize, "VALUES") {
            return None;
        }
        k += 1;
        let mut rows = Vec::new();
        while st.punct(k as isize, "(") {
            rows.push(k);
            k = st.after_group(k)?;
            if !st.punct(k as isize, ",") {
                break;
            }
            k += 1;
        }
        Some(InsertShape {
            table,
            columns,
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::param_hints::tests::{col, hints};
    use crate::param_hints::ParamHint;
    use crate::types::PgType;

    #[test]
    fn joins_and_aliases() {
        let s = "select * from accounts a join branches b on a.bid = b.bid where a.aid = $1 and b.bbalance > $2 and x = $3";
        assert_eq!(
            hints(s),
            vec![
                col(Some("accounts"), "aid"),
                col(Some("branches"), "bbalance"),
                col(None, "x")
            ]
        );
        assert_eq!(
            hints("select * from main.t as q where q.a = $1"),
            vec![col(Some("t"), "a")]
        );
        assert_eq!(
            hints("select * from a, b where b.x = $1"),
            vec![col(Some("b"), "x")]
        );
        // A qualifier that is not a known alias is passed through.
        assert_eq!(
            hints("select * from t where other.x = $1"),
            vec![col(Some("other"), "x")]
        );
        // EXTRACT(.. FROM ..) names no table.
        assert_eq!(
            hints("select extract(year from ts) from t where id = $1"),
            vec![col(Some("t"), "id")]
        );
    }

    #[test]
    fn insert_values() {
        assert_eq!(
            hints("insert into t (a, b) values ($1, $2), ($3, $4)"),
            vec![
                col(Some("t"), "a"),
                col(Some("t"), "b"),
                col(Some("t"), "a"),
                col(Some("t"), "b")
            ]
        );
        assert_eq!(
            hints("insert into t values ($1, 5, $2)"),
            vec![col(Some("t"), "#0"), col(Some("t"), "#2")]
        );
        assert_eq!(
            hints("INSERT OR REPLACE INTO \"T\" (\"A\", b) VALUES ($1, f(1, 2), $2)"),
            vec![col(Some("T"), "A"), ParamHint::Unknown]
        );
        assert_eq!(
            hints("insert into t (a) values ($1, $2)"),
            vec![col(Some("t"), "a"), ParamHint::Unknown]
        );
        assert_eq!(
            hints("insert into t (a) values ($1::int8)"),
            vec![ParamHint::Type(PgType::Int8)]
        );
        assert_eq!(
            hints("insert into t (a, b) values ($1, $2) on conflict (a) do update set b = $3"),
            vec![
                col(Some("t"), "a"),
                col(Some("t"), "b"),
                col(Some("t"), "b")
            ]
        );
        assert_eq!(
            hints("with x as (select 1) insert into t (a) values ($1)"),
            vec![col(Some("t"), "a")]
        );
    }

    #[test]
    fn insert_keyword_columns() {
        // Regression: `by` (a keyword) in the column list made the whole
        // shape unrecognised, so every hint was Unknown.
        let cols = ["id", "i", "b", "f", "d", "t", "vc", "bl", "by", "ok"];
        assert_eq!(
            hints("INSERT INTO v(id, i, b, f, d, t, vc, bl, by, ok) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            cols.iter().map(|c| col(Some("v"), c)).collect::<Vec<_>>()
        );
        assert_eq!(
            hints("insert into t (\"select\", [from], `order`, set, values, by) values ($1, $2, $3, $4, $5, $6)"),
            ["select", "from", "order", "set", "values", "by"]
                .iter()
                .map(|c| col(Some("t"), c))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            hints("insert into t(by) values ($1)"),
            vec![col(Some("t"), "by")]
        );
    }
}
