//! Fuzz targets: every parser of hadr that takes bytes from outside.
//!
//! Each target is a function from bytes to nothing that must never panic,
//! hang or allocate far beyond its input, whatever the bytes. The same
//! functions run two ways (docs/security.md §Fuzzing):
//! - coverage-guided, with AFL++ through `cargo afl` on stable Rust: the
//!   binary `hadr-fuzz-afl TARGET` (src/bin/afl.rs, feature `afl`);
//! - briefly under plain `cargo test` (tests/targets.rs): the committed
//!   corpus and every regression input, then seeded mutations of the corpus
//!   for a few seconds.
//!
//! Where a format carries a checksum (replication frames, log records,
//! segment headers), part of each target's input space recomputes it, so
//! that the fuzzer reaches the parsing behind the check instead of only the
//! check. The first input byte picks such modes.

use std::sync::OnceLock;

use bytes::BytesMut;
use pgwire::messages::{
    DecodeContext, PgWireFrontendMessage, ProtocolVersion, SslNegotiationMetaMessage,
};

use hadr_server::session::frame::{self, decode_frame};

pub mod mutate;
pub mod seeds;

/// A fuzz target.
pub type Target = fn(&[u8]);

/// Every target, by the name used on the command line and for corpus
/// directories (fuzz/corpus/NAME, fuzz/regressions/NAME).
pub const TARGETS: &[(&str, Target)] = &[
    ("pg_frontend", pg_frontend),
    ("pg_values", pg_values),
    ("repl_protocol", repl_protocol),
    ("log_record", log_record),
    ("config", config),
    ("sql", sql),
    ("admin", admin),
    ("copy", copy),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// PostgreSQL frontend messages as a session reads them: start-up packets
/// (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage) and then
/// regular messages, through the server's own framing
/// (crates/hadr-server/src/session/frame.rs) and pgwire's decoders.
///
/// Input: a mode byte, then the bytes the client sends. Mode bit 0: a
/// small max_message_size (64 KiB) or the largest allowed (1 GiB − 1);
/// bit 1: start in the regular state (past start-up); bits 2–7: the size
/// of the chunks the bytes arrive in (1–64), to exercise partial messages.
pub fn pg_frontend(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let max_message = if mode & 1 == 0 {
        64 << 10
    } else {
        (1 << 30) - 1
    };
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    if mode & 2 != 0 {
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
    }
    let chunk = usize::from(mode >> 2) + 1;
    let mut buf = BytesMut::new();
    let mut fed = 0;
    // Every round either consumes bytes, feeds bytes or leaves the SSL
    // state, so the loop ends; the bound is a backstop.
    for _ in 0..4 * (bytes.len() + 8) {
        // The receive buffer grows with what arrived, never with what a
        // length field promised (the server reserves at most 64 KiB ahead).
        assert!(
            buf.capacity() <= 2 * (bytes.len() + (64 << 10)) + 4096,
            "receive buffer of {} bytes for {} input bytes",
            buf.capacity(),
            bytes.len()
        );
        match decode_frame(&mut buf, &ctx, max_message) {
            Ok(Some(m)) => {
                if !step(&mut ctx, m, mode) {
                    return;
                }
            }
            Ok(None) => {
                if fed == bytes.len() {
                    return;
                }
                let n = chunk.min(bytes.len() - fed);
                buf.extend_from_slice(&bytes[fed..fed + n]);
                fed += n;
            }
            Err(_) => return,
        }
    }
}

/// What the session does with a message, as far as decoding goes
/// (crates/hadr-server/src/session/startup.rs); false: the connection ends.
fn step(ctx: &mut DecodeContext, m: PgWireFrontendMessage, mode: u8) -> bool {
    use PgWireFrontendMessage as M;
    match m {
        M::SslNegotiation(SslNegotiationMetaMessage::None) => {
            assert!(ctx.awaiting_frontend_ssl);
            ctx.awaiting_frontend_ssl = false;
        }
        M::SslNegotiation(_) => {}
        M::CancelRequest(_) => return false,
        M::Startup(_) => {
            ctx.awaiting_frontend_ssl = false;
            ctx.awaiting_frontend_startup = false;
        }
        // The password family's layout depends on the authentication
        // exchange: try each reading the server may apply.
        M::PasswordMessageFamily(p) => {
            let _ = match mode % 3 {
                0 => frame::sasl_initial_response(p).map(drop),
                1 => frame::sasl_response(p).map(drop),
                _ => p
                    .into_password()
                    .map(drop)
                    .map_err(frame::WireError::Decode),
            };
        }
        _ => {
            // Past start-up, only regular messages may come.
            if ctx.awaiting_frontend_startup {
                return false;
            }
        }
    }
    true
}

/// The PostgreSQL type OIDs hadr maps (crates/hadr-sql/src/types.rs).
pub const PG_OIDS: [u32; 19] = [
    16, 21, 23, 20, 700, 701, 1700, 25, 1043, 1042, 17, 1082, 1083, 1114, 1184, 114, 3802, 2950,
    705,
];

/// Bind parameter values as a session decodes them
/// (crates/hadr-server/src/values.rs), in text and binary format. Mode
/// byte: bit 7 binary, the rest picks the type from [`PG_OIDS`]. A decoded
/// value must encode back in both formats without a panic.
pub fn pg_values(data: &[u8]) {
    use hadr_server::values;
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let oid = PG_OIDS[usize::from(mode & 0x7f) % PG_OIDS.len()];
    let Some(t) = hadr_sql::PgType::from_oid(oid) else {
        return;
    };
    let binary = mode & 0x80 != 0;
    if let Ok(v) = values::decode_param(Some(bytes), t, binary) {
        let _ = values::type_of_value(&v);
        let _ = values::encode(&v, t, binary);
        let _ = values::encode(&v, t, !binary);
    }
}

/// The replication protocol decoder (crates/hadr-protocol): frames from a
/// peer, back to back. Mode bit 0: the rest is one frame's content (type
/// byte and body) and gets a correct length and CRC. Every decoded
/// message must encode and decode back to itself.
pub fn repl_protocol(data: &[u8]) {
    use hadr_protocol::Message;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let owned;
    let mut buf = if mode & 1 == 1 {
        let mut v = Vec::with_capacity(rest.len() + 8);
        v.extend_from_slice(&((rest.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(rest);
        v.extend_from_slice(&crc32c::crc32c(rest).to_be_bytes());
        owned = v;
        &owned[..]
    } else {
        rest
    };
    while !buf.is_empty() {
        let Ok((m, used)) = Message::decode(buf) else {
            return;
        };
        assert!(used > 0 && used <= buf.len());
        let again = m.encode();
        assert_eq!(Message::decode(&again), Ok((m.clone(), again.len())));
        if let Message::Hello(h) = &m {
            let _ = hadr_protocol::check_hello(h, h);
        }
        buf = &buf[used..];
    }
}

/// Log records and segments (crates/hadr-log) as a node reads them from
/// disk or from a primary. Mode (first byte, mod 3):
/// 0: the rest decoded as records back to back, each at the LSN it claims;
/// 1: the rest sealed as one record (magic, version, length, LSN and CRC
///    made right), so the fuzzer works on the page table and compression;
/// 2: a segment file — a correct header, then each `u16`-length-prefixed
///    piece of the rest sealed as a record at its LSN, then the last piece
///    raw (a torn tail) — checked by `verify_dir` as `hadr verify` does.
pub fn log_record(data: &[u8]) {
    use hadr_log::Record;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let mut off = 0;
            while rest.len() - off >= 20 {
                let lsn = le_u64(&rest[off + 12..off + 20]);
                match Record::decode(&rest[off..], lsn) {
                    Ok((rec, used)) => {
                        check_record(&rec, lsn);
                        off += used;
                    }
                    Err(_) => return,
                }
            }
        }
        1 => {
            let lsn = 4096;
            if let Ok((rec, used)) = Record::decode(&seal(rest, lsn), lsn) {
                assert_eq!(used, rest.len().max(68) + 4);
                check_record(&rec, lsn);
            }
        }
        _ => segment(rest),
    }
}

/// A decoded record encodes and decodes back to itself.
fn check_record(rec: &hadr_log::Record, lsn: u64) {
    let again = rec.encode(lsn);
    let (back, used) = hadr_log::Record::decode(&again, lsn).expect("a re-encoded record decodes");
    assert_eq!(&back, rec);
    assert_eq!(used, again.len());
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// `body` made into a record at `lsn` that passes the frame checks (magic,
/// version, length, LSN, CRC); padded to the header's 68 bytes.
fn seal(body: &[u8], lsn: u64) -> Vec<u8> {
    let mut v = body.to_vec();
    if v.len() < 68 {
        v.resize(68, 0);
    }
    v[0..4].copy_from_slice(b"HREC");
    v[4] = 1;
    let total = (v.len() + 4) as u32;
    v[8..12].copy_from_slice(&total.to_le_bytes());
    v[12..20].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// One directory for the segment mode, reused: a file per run would cost
/// more than the parsing.
fn segment_dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

fn segment(rest: &[u8]) {
    const START: u64 = 0;
    let mut file = Vec::with_capacity(rest.len() + 64);
    file.extend_from_slice(b"HADRLOG\0");
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&START.to_le_bytes());
    file.extend_from_slice(&[0u8; 8]);
    let crc = crc32c::crc32c(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    let mut pieces = rest;
    loop {
        if pieces.len() < 2 {
            file.extend_from_slice(pieces);
            break;
        }
        let n = usize::from(u16::from_le_bytes([pieces[0], pieces[1]]));
        let body = &pieces[2..];
        if n > body.len() {
            // The last piece: a torn tail, as a crash leaves it.
            file.extend_from_slice(body);
            break;
        }
        let lsn = START + (file.len() as u64 - 32);
        file.extend_from_slice(&seal(&body[..n], lsn));
        pieces = &body[n..];
    }
    let dir = segment_dir().path();
    let path = dir.join(format!("{START:016x}.hlog"));
    if std::fs::write(&path, &file).is_err() {
        return;
    }
    if let Ok(report) = hadr_log::verify_dir(dir) {
        assert!(report.end_lsn >= report.start_lsn);
        assert!(report.end_lsn <= START + file.len() as u64);
    }
}

/// The config file: TOML into `Config`, then its validation and every
/// derived value the server computes from it at start-up.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The value parsers also run on their own, on any text.
    let _ = text.parse::<hadr_server::units::ByteSize>();
    let _ = text.parse::<hadr_server::units::Dur>();
    let Ok(cfg) = hadr_server::Config::from_toml(text) else {
        return;
    };
    if cfg.validate().is_ok() {
        let _ = cfg.resource_specs();
        let _ = cfg.lease_timing();
        let _ = cfg.sync_roots();
        let _ = cfg.log_config();
        let _ = cfg.link_silence();
        let _ = cfg.client_address();
        let _ = cfg.node_name();
        let _ = cfg.automatic_failover();
    }
    let _ = cfg.targets();
}

/// The SQL layer (crates/hadr-sql): splitting a Query's text into
/// statements, translating, classifying; arbitrary text from any client;
/// and the catalog functions that parse text values
/// (crates/hadr-server/src/catalog_functions.rs).
/// Splitting is stable: the statements split again to themselves.
pub fn sql(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let stmts = hadr_sql::split(&text);
    for s in &stmts {
        assert!(!s.is_empty());
        assert_eq!(hadr_sql::split(s), vec![s.clone()], "{text:?}");
        if let Ok(tr) = hadr_sql::translate(s) {
            // An ALTER TABLE rebuild edits stored CREATE TABLE texts:
            // a well-formed one and the input itself.
            if let Some(plan) = tr.rebuild {
                let _ = hadr_sql::edit_create(
                    "CREATE TABLE t(a int NOT NULL DEFAULT (1), b text, CONSTRAINT c UNIQUE (a))",
                    &plan.table,
                    &plan.actions,
                    "\"x\"",
                );
                let _ = hadr_sql::edit_create(s, &plan.table, &plan.actions, "\"x\"");
            }
        }
        let cmd = hadr_sql::classify(s);
        let _ = hadr_sql::command_tag(&cmd, 7);
        let _ = hadr_sql::is_transaction_control(&cmd);
        let _ = hadr_sql::result_column_types(s);
    }
    let _ = hadr_sql::translate(&text);
    // Text a query hands the server's catalog functions: an array to
    // subscript (`a[i]`, `hadr_array_get`) and a name to cast to regclass.
    for i in [-1, 0, 1, 2, 64, i64::MAX] {
        let _ = hadr_server::catalog_functions::array_get(&text, i);
    }
    let _ = hadr_server::catalog_functions::regclass(&text);
    let _ = hadr_sql::PgType::from_name(&text);
    let _ = hadr_sql::PgType::from_sqlite_decltype(&text);
}

/// COPY FROM data as a session decodes it (crates/hadr-copy): text or
/// CSV, fed in chunks of any size. Whatever it decodes must come back the
/// same after [`hadr_sql::hadr_copy::Encoder`] writes it and the decoder
/// reads that again, and row lines must only grow.
///
/// Mode byte: bit 0 CSV; bit 1 a backslash escape instead of the quote
/// (CSV) or `|` as the delimiter (text); bits 2–7 the chunk size (1–64).
pub fn copy(data: &[u8]) {
    use hadr_sql::hadr_copy::{Decoder, Encoder, OptValue, Options, Row};
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let csv = mode & 1 != 0;
    let mut pairs: Vec<(String, OptValue)> = Vec::new();
    if csv {
        pairs.push(("format".into(), OptValue::Word("csv".into())));
        if mode & 2 != 0 {
            pairs.push(("escape".into(), OptValue::Word("\\".into())));
        }
    } else if mode & 2 != 0 {
        pairs.push(("delimiter".into(), OptValue::Word("|".into())));
    }
    let Ok(opts) = Options::build(true, &pairs) else {
        return;
    };
    let chunk = usize::from(mode >> 2) + 1;
    let decode_all = |input: &[u8], step: usize| -> Result<Vec<Vec<Option<String>>>, ()> {
        let mut d = Decoder::new(&opts, vec![], vec![]);
        let mut row = Row::default();
        let mut rows = Vec::new();
        let mut last_line = 0;
        let mut take = |d: &mut Decoder, row: &mut Row, at_end: bool, rows: &mut Vec<_>| {
            while d.next_row(row, at_end).map_err(|_| ())? {
                assert!(row.line() > last_line, "row lines go back");
                last_line = row.line();
                rows.push(
                    (0..row.len())
                        .map(|i| row.field(i).map(str::to_string))
                        .collect(),
                );
            }
            Ok::<(), ()>(())
        };
        for piece in input.chunks(step) {
            d.feed(piece);
            take(&mut d, &mut row, false, &mut rows)?;
        }
        take(&mut d, &mut row, true, &mut rows)?;
        Ok(rows)
    };
    let Ok(rows) = decode_all(bytes, chunk) else {
        return;
    };
    // However the bytes were cut, the rows are the same.
    assert_eq!(
        decode_all(bytes, bytes.len().max(1)).ok().as_ref(),
        Some(&rows)
    );
    for width in rows
        .iter()
        .map(Vec::len)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let same: Vec<&Vec<Option<String>>> = rows.iter().filter(|r| r.len() == width).collect();
        let names: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
        let enc = Encoder::new(&opts, &names);
        let mut out = Vec::new();
        for r in &same {
            let f: Vec<Option<&[u8]>> = r.iter().map(|v| v.as_deref().map(str::as_bytes)).collect();
            enc.row(&f, &mut out);
        }
        let again = decode_all(&out, chunk).expect("hadr's own COPY output decodes");
        let same: Vec<Vec<Option<String>>> = same.into_iter().cloned().collect();
        assert_eq!(again, same, "encode then decode changed rows");
    }
}

/// The admin endpoint's requests (their query strings, as the handlers in
/// crates/hadr-server/src/admin.rs extract them) and the answers the
/// `hadr` CLI parses from a node (crates/hadr-admin-api). Mode byte:
/// even: the rest is a request target (`/takeover?force=true`); odd: a
/// JSON body, read as each answer type.
pub fn admin(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        hadr_server::admin::parse_request_queries(rest);
    } else {
        let Ok(body) = std::str::from_utf8(rest) else {
            return;
        };
        json_round_trip::<hadr_admin_api::Status>(body);
        json_round_trip::<hadr_admin_api::TakeoverAnswer>(body);
        json_round_trip::<hadr_admin_api::FenceAnswer>(body);
        json_round_trip::<hadr_admin_api::FileVerify>(body);
        json_round_trip::<hadr_admin_api::NotServing>(body);
    }
}

/// What parses re-serialises, and that parses again.
fn json_round_trip<T>(body: &str)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = serde_json::from_str::<T>(body) {
        let again = serde_json::to_string(&v).expect("an answer serialises");
        let back = serde_json::from_str::<T>(&again).expect("a serialised answer parses");
        assert_eq!(back, v);
    }
}
