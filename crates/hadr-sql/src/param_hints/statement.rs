//! The significant tokens of one statement with their parenthesis
//! structure precomputed, so that the hint rules can look at neighbours by
//! index without rescanning.

use crate::keywords::is_name_part;
use crate::lexer::{ident_value, Kind, Token};

/// The significant tokens of a statement and where their parentheses match.
pub(super) struct Statement<'s, 'a> {
    pub sig: &'s [Token<'a>],
    /// For each token, the index of the innermost `(` enclosing it.
    pub enclosing: Vec<Option<usize>>,
    /// For each `(`, the index of its `)`.
    close: Vec<Option<usize>>,
}

impl<'s, 'a> Statement<'s, 'a> {
    pub fn new(sig: &'s [Token<'a>]) -> Self {
        let mut enclosing = vec![None; sig.len()];
        let mut close = vec![None; sig.len()];
        let mut stack: Vec<usize> = Vec::new();
        for (i, t) in sig.iter().enumerate() {
            enclosing[i] = stack.last().copied();
            if t.is_punct("(") {
                stack.push(i);
            } else if t.is_punct(")") {
                if let Some(o) = stack.pop() {
                    close[o] = Some(i);
                }
            }
        }
        Statement {
            sig,
            enclosing,
            close,
        }
    }

    pub fn at(&self, i: isize) -> Option<&Token<'a>> {
        usize::try_from(i).ok().and_then(|i| self.sig.get(i))
    }

    pub fn kw(&self, i: isize, kw: &str) -> bool {
        self.at(i).is_some_and(|t| t.is_kw(kw))
    }

    pub fn punct(&self, i: isize, p: &str) -> bool {
        self.at(i).is_some_and(|t| t.is_punct(p))
    }

    pub fn op_in(&self, i: isize, ops: &[&str]) -> bool {
        self.at(i)
            .is_some_and(|t| t.kind == Kind::Op && ops.contains(&t.text))
    }

    /// Index of the `)` matching the `(` at `open`.
    pub fn close_of(&self, open: usize) -> Option<usize> {
        self.close.get(open).copied().flatten()
    }

    /// Index just past the group opened at `open`.
    pub fn after_group(&self, open: usize) -> Option<usize> {
        self.close_of(open).map(|c| c + 1)
    }

    /// Qualified name starting at `k`: (parts, index after).
    pub fn qualified_name(&self, k: usize) -> Option<(Vec<String>, usize)> {
        let first = self.sig.get(k)?;
        if !is_name_part(first) {
            return None;
        }
        let mut parts = vec![ident_value(first)];
        let mut k = k + 1;
        while self.punct(k as isize, ".") && self.sig.get(k + 1).is_some_and(is_name_part) {
            parts.push(ident_value(&self.sig[k + 1]));
            k += 2;
        }
        Some((parts, k))
    }

    /// Whether token `i` alone makes up one element of the parenthesised
    /// list around it, as `$1` does in `($1, 2)` but not in `($1 + 2)`.
    pub fn direct_element(&self, i: isize) -> bool {
        (self.punct(i - 1, "(") || self.punct(i - 1, ","))
            && (self.punct(i + 1, ",") || self.punct(i + 1, ")"))
    }

    /// Position of element `i` in the group opened at `open` (top-level commas before it).
    pub fn position(&self, open: usize, i: usize) -> usize {
        let mut pos = 0;
        let mut j = open + 1;
        while j < i {
            if self.sig[j].is_punct("(") {
                j = self.after_group(j).unwrap_or(i);
                continue;
            }
            if self.sig[j].is_punct(",") {
                pos += 1;
            }
            j += 1;
        }
        pos
    }

    /// Skip a `NOT` before index `j`, e.g. `col NOT LIKE $1`.
    pub fn skip_not(&self, j: isize) -> isize {
        if self.kw(j, "NOT") {
            j - 1
        } else {
            j
        }
    }
}
