//! Splitting a simple-query string into statements.

use crate::lexer::{tokenize, Kind};

/// Whether a statement's leading words make it one whose body may contain
/// `;` between `BEGIN` and `END`: SQLite triggers and PostgreSQL
/// `BEGIN ATOMIC` functions/procedures.
fn has_block_body(head: &[String]) -> bool {
    let mut words = head.iter().map(String::as_str);
    if words.next() != Some("CREATE") {
        return false;
    }
    for w in words {
        match w {
            "OR" | "REPLACE" | "TEMP" | "TEMPORARY" => continue,
            "TRIGGER" | "FUNCTION" | "PROCEDURE" => return true,
            _ => return false,
        }
    }
    false
}

/// Split a simple-query string into statements (no trailing ';', trimmed; statements that are empty or only comments are dropped).
///
/// Leading and trailing comments of a statement are trimmed along with
/// whitespace, so that re-joining the result with `;` splits the same way.
pub fn split(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Byte range of the current statement's first..last significant token.
    let mut span: Option<(usize, usize)> = None;
    let mut head: Vec<String> = Vec::new();
    let mut block = false;
    let mut depth = 0u32;

    for t in tokenize(sql) {
        if t.is_trivia() {
            continue;
        }
        if t.kind == Kind::Punct && t.text == ";" && depth == 0 {
            if let Some((s, e)) = span.take() {
                out.push(sql[s..e].to_string());
            }
            head.clear();
            block = false;
            continue;
        }
        span = Some(match span {
            Some((s, _)) => (s, t.end()),
            None => (t.start, t.end()),
        });
        if head.len() < 6 {
            head.push(t.upper());
            block = has_block_body(&head);
        }
        if block && t.kind == Kind::Word {
            // CASE only nests inside the body; a WHEN clause's CASE..END
            // before BEGIN is balanced on its own.
            if t.is_kw("BEGIN") || (depth > 0 && t.is_kw("CASE")) {
                depth += 1;
            } else if depth > 0 && t.is_kw("END") {
                depth -= 1;
            }
        }
    }
    if let Some((s, e)) = span {
        out.push(sql[s..e].to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_comments_and_a_trigger_body() {
        let s = "select ';' ; select $$a;b$$; select 1 -- ;\n; CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES(1); UPDATE c SET x = CASE WHEN 1 THEN 2 END; END; select 2";
        assert_eq!(
            split(s),
            vec![
                "select ';'",
                "select $$a;b$$",
                "select 1",
                "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES(1); UPDATE c SET x = CASE WHEN 1 THEN 2 END; END",
                "select 2",
            ]
        );
    }

    #[test]
    fn plain() {
        assert_eq!(split("select 1; select 2;"), vec!["select 1", "select 2"]);
        assert_eq!(split("  select 1  "), vec!["select 1"]);
        assert!(split("").is_empty());
        assert!(split(" ; ;; \n").is_empty());
    }

    #[test]
    fn single_quotes() {
        assert_eq!(split("select 'a;''b;'; x"), vec!["select 'a;''b;'", "x"]);
    }

    #[test]
    fn e_strings() {
        assert_eq!(split(r"select E'a\';b'; x"), vec![r"select E'a\';b'", "x"]);
        // Outside E'' a backslash is an ordinary character.
        assert_eq!(split(r"select 'a\'; x"), vec![r"select 'a\'", "x"]);
    }

    #[test]
    fn quoted_identifiers() {
        assert_eq!(
            split(r#"select "a;""b"; x"#),
            vec![r#"select "a;""b""#, "x"]
        );
        assert_eq!(
            split("select [a;b] from t; x"),
            vec!["select [a;b] from t", "x"]
        );
        assert_eq!(split("select `a;b`; x"), vec!["select `a;b`", "x"]);
        // An array subscript is not a bracket identifier.
        assert_eq!(
            split("select a[1]; select ']'"),
            vec!["select a[1]", "select ']'"]
        );
    }

    #[test]
    fn dollar_quotes() {
        assert_eq!(split("select $$a;b$$; x"), vec!["select $$a;b$$", "x"]);
        assert_eq!(
            split("select $f$ $$;$$ $f$; x"),
            vec!["select $f$ $$;$$ $f$", "x"]
        );
        assert_eq!(
            split("select $1; select $2"),
            vec!["select $1", "select $2"]
        );
        let f = "CREATE FUNCTION f() RETURNS trigger AS $body$ BEGIN NEW.x := 1; RETURN NEW; END; $body$ LANGUAGE plpgsql";
        assert_eq!(split(&format!("{f}; select 1")), vec![f, "select 1"]);
    }

    #[test]
    fn comments() {
        assert_eq!(
            split("select 1 -- a;b\n + 1; x"),
            vec!["select 1 -- a;b\n + 1", "x"]
        );
        assert_eq!(
            split("select /* a; /* b; */ c; */ 1; x"),
            vec!["select /* a; /* b; */ c; */ 1", "x"]
        );
        assert_eq!(
            split("-- only a comment\n; /* and another */; select 1"),
            vec!["select 1"]
        );
        assert_eq!(split("/* lead */ select 1 /* trail */"), vec!["select 1"]);
    }

    #[test]
    fn unterminated_runs_to_end() {
        assert_eq!(
            split("select 1; select 'a;b"),
            vec!["select 1", "select 'a;b"]
        );
        assert_eq!(split("select 1; /* a; b"), vec!["select 1"]);
        assert_eq!(split("select $$a; b"), vec!["select $$a; b"]);
    }

    #[test]
    fn triggers() {
        let t = "CREATE TEMP TRIGGER IF NOT EXISTS tr BEFORE DELETE ON a WHEN old.x > 0 BEGIN DELETE FROM b WHERE y = old.x; SELECT CASE WHEN 1 THEN RAISE(ABORT, 'no;') ELSE 0 END; END";
        assert_eq!(
            split(&format!("{t}; BEGIN; COMMIT")),
            vec![t, "BEGIN", "COMMIT"]
        );
        // Nested CASE inside a trigger body.
        let t2 = "create trigger t after update on a begin update b set x = case when 1 then case when 2 then 3 end end; end";
        assert_eq!(split(&format!("{t2};select 1")), vec![t2, "select 1"]);
        // A PostgreSQL trigger has no body; its ';' ends it.
        assert_eq!(
            split(
                "CREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION f(); BEGIN; END"
            ),
            vec![
                "CREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION f()",
                "BEGIN",
                "END"
            ]
        );
    }

    #[test]
    fn begin_as_transaction_statement() {
        assert_eq!(
            split("BEGIN; INSERT INTO t VALUES (CASE WHEN 1 THEN 2 END); END; COMMIT"),
            vec![
                "BEGIN",
                "INSERT INTO t VALUES (CASE WHEN 1 THEN 2 END)",
                "END",
                "COMMIT"
            ]
        );
    }

    #[test]
    fn begin_atomic() {
        let f = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END";
        assert_eq!(split(&format!("{f}; select 3")), vec![f, "select 3"]);
    }
}
