//! A lossless tokenizer for the union of PostgreSQL and SQLite lexical syntax.
//!
//! Every byte of the input belongs to exactly one token, so callers can rebuild
//! the text (or slices of it) exactly. Token boundaries always fall on ASCII
//! bytes or the end of input, which keeps every `&str` slice valid UTF-8.

/// PostgreSQL accepts at most this many parameters per statement.
const MAX_PARAM: usize = 65535;

/// What a token is; only as fine-grained as splitting, translation and
/// classification need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Space,
    LineComment,
    BlockComment,
    /// Keyword or unquoted identifier (also SQLite `$name` parameters).
    Word,
    /// `"x"`, `[x]` or `` `x` ``.
    QuotedIdent,
    /// `'x'`, `E'x'`, `X'x'`, `B'x'`, `N'x'`.
    Str,
    /// `$$x$$` or `$tag$x$tag$`.
    DollarStr,
    Number,
    /// `$N`.
    Param,
    /// Operator made of PostgreSQL operator characters.
    Op,
    /// `( ) , ; . :: : [ ] { }`.
    Punct,
    Other,
}

/// One token: its kind, its exact text and where it starts in the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub start: usize,
    /// False when a string, quoted identifier or comment runs to end of input.
    pub terminated: bool,
}

impl Token<'_> {
    /// Byte offset just past the token.
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }

    /// Whitespace and comments.
    pub fn is_trivia(&self) -> bool {
        matches!(
            self.kind,
            Kind::Space | Kind::LineComment | Kind::BlockComment
        )
    }

    /// Whether this is the keyword `kw` (given in upper case).
    pub fn is_kw(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(kw)
    }

    /// Whether this is the punctuation or operator `p`.
    pub fn is_punct(&self, p: &str) -> bool {
        matches!(self.kind, Kind::Punct | Kind::Op) && self.text == p
    }

    /// The `N` of a `$N` token, unless it is outside PostgreSQL's `1..=65535`.
    pub fn param_number(&self) -> Option<usize> {
        self.text
            .get(1..)
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|n| (1..=MAX_PARAM).contains(n))
    }

    /// Upper-cased text, for keyword comparisons.
    pub fn upper(&self) -> String {
        self.text.to_ascii_uppercase()
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn is_tag_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn is_op_char(c: u8) -> bool {
    b"+-*/<>=~!@#%^&|?".contains(&c)
}

/// Scan a quoted run whose opening quote is just before `from`.
/// `backslash` enables E-string escapes; `doubling` makes a doubled close
/// character an escaped one. Returns (end, terminated).
fn scan_quoted(b: &[u8], from: usize, close: u8, backslash: bool, doubling: bool) -> (usize, bool) {
    let mut j = from;
    while j < b.len() {
        let c = b[j];
        if backslash && c == b'\\' {
            if j + 1 >= b.len() {
                return (b.len(), false);
            }
            // A backslash may precede a multi-byte character; landing inside
            // it is harmless because continuation bytes never match a quote.
            j += 2;
            continue;
        }
        if c == close {
            if doubling && b.get(j + 1) == Some(&close) {
                j += 2;
                continue;
            }
            return (j + 1, true);
        }
        j += 1;
    }
    (b.len(), false)
}

/// Nested `/* */` comment starting at `i`. Returns (end, terminated).
fn scan_block_comment(b: &[u8], i: usize) -> (usize, bool) {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
            depth += 1;
            j += 2;
        } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return (j, true);
            }
        } else {
            j += 1;
        }
    }
    (b.len(), false)
}

/// PostgreSQL operator lexing: maximal munch, but never swallowing a comment
/// start, and a multi-character operator may not end in `+`/`-` unless it
/// contains one of `~ ! @ # % ^ & | ?` (so `=-1` is `=` then `-1`).
fn scan_op(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < b.len() && is_op_char(b[j]) {
        if j > i && ((b[j] == b'-' && b[j - 1] == b'-') || (b[j] == b'*' && b[j - 1] == b'/')) {
            j -= 1;
            break;
        }
        j += 1;
    }
    let run = &b[i..j];
    if run.len() > 1 && !run.iter().any(|c| b"~!@#%^&|?".contains(c)) {
        while j > i + 1 && (b[j - 1] == b'+' || b[j - 1] == b'-') {
            j -= 1;
        }
    }
    j.max(i + 1)
}

fn scan_number(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < b.len() {
        let c = b[j];
        if (c == b'e' || c == b'E')
            && matches!(b.get(j + 1), Some(b'+') | Some(b'-'))
            && b.get(j + 2).is_some_and(u8::is_ascii_digit)
        {
            j += 3;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
            j += 1;
        } else {
            break;
        }
    }
    j
}

/// Whether a `[` at this point opens a SQLite bracket identifier rather than a
/// PostgreSQL array subscript / array type suffix.
fn bracket_is_ident(prev: Option<&Token<'_>>, adjacent: bool) -> bool {
    let Some(p) = prev else { return true };
    if p.is_kw("ARRAY") {
        return false;
    }
    let ends_operand = matches!(
        p.kind,
        Kind::Word | Kind::QuotedIdent | Kind::Param | Kind::Str | Kind::Number
    ) || p.is_punct(")")
        || p.is_punct("]");
    !(adjacent && ends_operand)
}

/// Tokenize `src` completely; never fails (unterminated constructs become
/// tokens with `terminated == false` that run to end of input).
pub(crate) fn tokenize(src: &str) -> Vec<Token<'_>> {
    let b = src.as_bytes();
    let mut out: Vec<Token<'_>> = Vec::new();
    let mut prev_sig: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let (kind, end, terminated) = match c {
            c if c.is_ascii_whitespace() => {
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                (Kind::Space, j, true)
            }
            b'-' if next == Some(b'-') => {
                let j = b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| i + p);
                (Kind::LineComment, j, true)
            }
            b'/' if next == Some(b'*') => {
                let (j, t) = scan_block_comment(b, i);
                (Kind::BlockComment, j, t)
            }
            b'\'' => {
                let (j, t) = scan_quoted(b, i + 1, b'\'', false, true);
                (Kind::Str, j, t)
            }
            b'"' => {
                let (j, t) = scan_quoted(b, i + 1, b'"', false, true);
                (Kind::QuotedIdent, j, t)
            }
            b'`' => {
                let (j, t) = scan_quoted(b, i + 1, b'`', false, true);
                (Kind::QuotedIdent, j, t)
            }
            b'[' => {
                let adjacent = out.last().is_some_and(|t| !t.is_trivia());
                let close = b[i + 1..].iter().position(|&x| x == b']');
                match close {
                    Some(p) if p > 0 && bracket_is_ident(prev_sig.map(|k| &out[k]), adjacent) => {
                        (Kind::QuotedIdent, i + 1 + p + 1, true)
                    }
                    _ => (Kind::Punct, i + 1, true),
                }
            }
            b'$' => match next {
                Some(d) if d.is_ascii_digit() => {
                    let mut j = i + 1;
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                    (Kind::Param, j, true)
                }
                Some(d) if d == b'$' || (is_tag_char(d) && !d.is_ascii_digit()) => {
                    let mut k = i + 1;
                    while k < b.len() && is_tag_char(b[k]) {
                        k += 1;
                    }
                    if b.get(k) == Some(&b'$') {
                        let delim = &src[i..=k];
                        match src[k + 1..].find(delim) {
                            Some(p) => (Kind::DollarStr, k + 1 + p + delim.len(), true),
                            None => (Kind::DollarStr, b.len(), false),
                        }
                    } else {
                        // SQLite's `$name` parameter syntax.
                        (Kind::Word, k, true)
                    }
                }
                _ => (Kind::Other, i + 1, true),
            },
            c if is_word_start(c) => {
                let mut j = i;
                while j < b.len() && is_word_char(b[j]) {
                    j += 1;
                }
                if j == i + 1 && b.get(j) == Some(&b'\'') {
                    match c {
                        b'e' | b'E' => {
                            let (k, t) = scan_quoted(b, j + 1, b'\'', true, true);
                            (Kind::Str, k, t)
                        }
                        b'x' | b'X' | b'b' | b'B' | b'n' | b'N' => {
                            let (k, t) = scan_quoted(b, j + 1, b'\'', false, true);
                            (Kind::Str, k, t)
                        }
                        _ => (Kind::Word, j, true),
                    }
                } else {
                    (Kind::Word, j, true)
                }
            }
            c if c.is_ascii_digit() => (Kind::Number, scan_number(b, i), true),
            b'.' if next.is_some_and(|d| d.is_ascii_digit())
                && !(i > 0 && (is_word_char(b[i - 1]) || b"\"`])".contains(&b[i - 1]))) =>
            {
                (Kind::Number, scan_number(b, i), true)
            }
            b':' if next == Some(b':') => (Kind::Punct, i + 2, true),
            b'(' | b')' | b',' | b';' | b'.' | b':' | b']' | b'{' | b'}' => {
                (Kind::Punct, i + 1, true)
            }
            c if is_op_char(c) => (Kind::Op, scan_op(b, i), true),
            _ => (Kind::Other, i + 1, true),
        };
        let tok = Token {
            kind,
            text: &src[i..end],
            start: i,
            terminated,
        };
        if !tok.is_trivia() {
            prev_sig = Some(out.len());
        }
        out.push(tok);
        i = end;
    }
    out
}

/// The identifier a name token denotes: quoted forms are unquoted and
/// unescaped, unquoted words are returned as written.
pub(crate) fn ident_value(t: &Token<'_>) -> String {
    let s = t.text;
    if t.kind != Kind::QuotedIdent {
        return s.to_string();
    }
    let (open, close) = match s.as_bytes().first() {
        Some(b'"') => ('"', '"'),
        Some(b'`') => ('`', '`'),
        _ => ('[', ']'),
    };
    let inner = s.strip_prefix(open).unwrap_or(s);
    // An unterminated identifier has no closing quote to strip.
    let inner = if t.terminated {
        inner.strip_suffix(close).unwrap_or(inner)
    } else {
        inner
    };
    match open {
        '[' => inner.to_string(),
        q => inner.replace(&format!("{q}{q}"), &q.to_string()),
    }
}

/// The value of a dollar-quoted string token: what is between its
/// `$tag$` delimiters.
pub(crate) fn dollar_value<'a>(t: &Token<'a>) -> &'a str {
    let s = t.text;
    let open = s
        .get(1..)
        .and_then(|r| r.find('$'))
        .map_or(s.len(), |i| i + 2);
    s.get(open..s.len().saturating_sub(open)).unwrap_or("")
}

/// The value of a plain or E'' string literal token (prefix letters other
/// than E are kept out of the value too).
pub(crate) fn string_value(t: &Token<'_>) -> String {
    let s = t.text;
    let (body, escapes) = match s.as_bytes().first() {
        Some(b'\'') => (&s[1..], false),
        Some(b'e' | b'E') => (s.get(2..).unwrap_or(""), true),
        Some(_) => (s.get(2..).unwrap_or(""), false),
        None => ("", false),
    };
    let body = body.strip_suffix('\'').unwrap_or(body);
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.peek() == Some(&'\'') {
            chars.next();
            out.push('\'');
        } else if escapes && c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Kind, &str)> {
        tokenize(s)
            .into_iter()
            .filter(|t| !t.is_trivia())
            .map(|t| (t.kind, t.text))
            .collect()
    }

    #[test]
    fn lossless() {
        let s = "select 'a''b', E'x\\'y', \"q\"\"x\", [br], `bt`, $$d;$$, $t$ $$ $t$ -- c\n /* a /* b */ c */ $1::int";
        let joined: String = tokenize(s).iter().map(|t| t.text).collect();
        assert_eq!(joined, s);
    }

    #[test]
    fn strings_and_idents() {
        assert_eq!(kinds("'a''b'"), vec![(Kind::Str, "'a''b'")]);
        assert_eq!(kinds("E'a\\'b'"), vec![(Kind::Str, "E'a\\'b'")]);
        assert_eq!(
            kinds("'a\\' x"),
            vec![(Kind::Str, "'a\\'"), (Kind::Word, "x")]
        );
        assert_eq!(kinds("X'0A'"), vec![(Kind::Str, "X'0A'")]);
        assert_eq!(kinds("\"a\"\"b\""), vec![(Kind::QuotedIdent, "\"a\"\"b\"")]);
        assert_eq!(kinds("[a b]"), vec![(Kind::QuotedIdent, "[a b]")]);
        assert_eq!(kinds("`a``b`"), vec![(Kind::QuotedIdent, "`a``b`")]);
    }

    #[test]
    fn brackets_as_subscripts() {
        assert_eq!(kinds("a[1]")[1], (Kind::Punct, "["));
        assert_eq!(kinds("ARRAY[1]")[1], (Kind::Punct, "["));
        assert_eq!(kinds("x::int[]")[3], (Kind::Punct, "["));
        assert_eq!(kinds("from [t]")[1], (Kind::QuotedIdent, "[t]"));
    }

    #[test]
    fn dollar_forms() {
        assert_eq!(kinds("$1"), vec![(Kind::Param, "$1")]);
        assert_eq!(kinds("$$a$$"), vec![(Kind::DollarStr, "$$a$$")]);
        assert_eq!(kinds("$q$a$$b$q$"), vec![(Kind::DollarStr, "$q$a$$b$q$")]);
        assert_eq!(kinds("$name"), vec![(Kind::Word, "$name")]);
        assert_eq!(kinds("a$b"), vec![(Kind::Word, "a$b")]);
        assert!(!tokenize("$x$ abc")[0].terminated);
    }

    #[test]
    fn operators() {
        assert_eq!(
            kinds("a=-1"),
            vec![
                (Kind::Word, "a"),
                (Kind::Op, "="),
                (Kind::Op, "-"),
                (Kind::Number, "1")
            ]
        );
        assert_eq!(kinds("a<>b")[1], (Kind::Op, "<>"));
        assert_eq!(kinds("a->>b")[1], (Kind::Op, "->>"));
        assert_eq!(kinds("a::b")[1], (Kind::Punct, "::"));
        assert_eq!(
            kinds("1+--x\n2"),
            vec![(Kind::Number, "1"), (Kind::Op, "+"), (Kind::Number, "2")]
        );
        assert_eq!(kinds("1.5e-3"), vec![(Kind::Number, "1.5e-3")]);
    }

    #[test]
    fn nested_comment() {
        let t = tokenize("/* a /* b */ c */x");
        assert_eq!(t[0].kind, Kind::BlockComment);
        assert_eq!(t[1].text, "x");
        assert!(!tokenize("/* a /* b */")[0].terminated);
    }

    #[test]
    fn values() {
        let t = tokenize("\"a\"\"b\" [c] `d``e` 'f''g' E'h\\ni' x'00'");
        let sig: Vec<_> = t.iter().filter(|t| !t.is_trivia()).collect();
        assert_eq!(ident_value(sig[0]), "a\"b");
        assert_eq!(ident_value(sig[1]), "c");
        assert_eq!(ident_value(sig[2]), "d`e");
        assert_eq!(string_value(sig[3]), "f'g");
        assert_eq!(string_value(sig[4]), "h\ni");
        assert_eq!(string_value(sig[5]), "00");
    }
}
