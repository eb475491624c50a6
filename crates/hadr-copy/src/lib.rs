//! PostgreSQL's COPY data formats, text and CSV, for hadr's
//! `COPY … FROM STDIN` and `COPY … TO STDOUT`.
//!
//! Pure and byte-oriented: [`Options`] (what a COPY statement asked for,
//! checked as PostgreSQL checks it), a [`Decoder`] that is fed the client's
//! CopyData bytes in whatever pieces they arrive and yields rows as soon as
//! they are complete (so a load of any size needs memory for one row, not
//! the whole input), and an [`Encoder`] for the other direction.
//!
//! Written here rather than taken from the `csv` crate because PostgreSQL's
//! CSV tells a quoted empty string from an unquoted one (the second is
//! NULL), which `csv`/`csv-core` do not report, and the text format (with
//! backslash escapes, `\N` and the `\.` end marker) is PostgreSQL's own.

#![warn(missing_docs)]

mod decode;
mod encode;
mod options;

pub use decode::{DecodeError, Decoder, Row, MAX_ROW_BYTES};
pub use encode::Encoder;
pub use options::{ForceQuote, Format, Header, OptValue, OptionError, Options};
