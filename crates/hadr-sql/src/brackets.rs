//! Bracket structure of a run of tokens: where a `(` or `[` closes, and
//! which tokens stand outside every bracket.

use crate::lexer::Token;

/// Index of the `)` or `]` matching the opener at `open`.
pub(crate) fn close_of(toks: &[Token<'_>], open: usize) -> Option<usize> {
    let mut stack: Vec<&str> = Vec::new();
    for (j, t) in toks.iter().enumerate().skip(open) {
        if t.is_punct("(") {
            stack.push(")");
        } else if t.is_punct("[") {
            stack.push("]");
        } else if t.is_punct(")") || t.is_punct("]") {
            if stack.pop()? != t.text {
                return None;
            }
            if stack.is_empty() {
                return Some(j);
            }
        }
        if stack.is_empty() {
            return None;
        }
    }
    None
}

/// Indices of the tokens outside any brackets (an opener stands for its whole
/// group); `None` if the brackets do not balance.
pub(crate) fn top_level(toks: &[Token<'_>]) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        let t = &toks[k];
        out.push(k);
        if t.is_punct("(") || t.is_punct("[") {
            k = close_of(toks, k)? + 1;
        } else if t.is_punct(")") || t.is_punct("]") {
            return None;
        } else {
            k += 1;
        }
    }
    Some(out)
}
