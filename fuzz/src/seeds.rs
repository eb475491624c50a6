//! The seed corpus: real inputs for each target, built with the encoders
//! of the crates themselves where they have one, so that the fuzzer starts
//! from what clients, peers and operators really send.
//!
//! fuzz/corpus/TARGET holds these as files (written by
//! `HADR_FUZZ_WRITE_SEEDS=1 cargo test -p hadr-fuzz --test targets seeds`);
//! AFL++ starts from that directory, and the `cargo test` run starts from
//! these and from the files.

use hadr_log::{CaptureMark, EpochStart, Page, Record};
use hadr_protocol::{Hello, Message, PeerRole, Refuse, RefuseCode, Topology};

/// (target, file name, bytes) of every seed.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in pg_frontend() {
        out.push(("pg_frontend", name.to_string(), bytes));
    }
    for (name, bytes) in pg_values() {
        out.push(("pg_values", name.to_string(), bytes));
    }
    for (name, bytes) in repl_protocol() {
        out.push(("repl_protocol", name.to_string(), bytes));
    }
    for (name, bytes) in log_record() {
        out.push(("log_record", name.to_string(), bytes));
    }
    for (name, text) in config() {
        out.push(("config", name.to_string(), text.as_bytes().to_vec()));
    }
    for (i, text) in SQL.iter().enumerate() {
        out.push(("sql", format!("sql-{i:02}"), text.as_bytes().to_vec()));
    }
    for (name, bytes) in admin() {
        out.push(("admin", name.to_string(), bytes));
    }
    for (name, bytes) in copy() {
        out.push(("copy", name.to_string(), bytes));
    }
    out
}

/// COPY data (a mode byte, then the data; fuzz/src/lib.rs `copy`): what
/// psql's `\copy` and pgbench -i send, text and CSV, with escapes, quotes,
/// NULLs and the end marker.
fn copy() -> Vec<(&'static str, Vec<u8>)> {
    let with = |mode: u8, data: &[u8]| [vec![mode], data.to_vec()].concat();
    vec![
        (
            "text",
            with(
                4 * 7,
                b"1\tone\t\\N\n2\ttab\\there\tx\\\\y\n3\t\\101\\x42\t\n\\.\n",
            ),
        ),
        (
            "pgbench",
            with(4 * 63, b"1\t1\t0\t\n2\t1\t0\t\n3\t1\t0\t\n"),
        ),
        (
            "csv",
            with(
                1 + 4 * 5,
                b"id,name\n1,\"a,b\",\"\"\n2,\"say \"\"hi\"\"\nthere\",\r\n3,,x\n",
            ),
        ),
        (
            "csv-escape",
            with(3 + 4 * 2, b"\"a\\\"b\",NULL,\"\"\n\\.\n"),
        ),
        ("pipes", with(2, b"a|b|\\N\nc|\\|d|e\n")),
    ]
}

/// One regular frontend message: type byte, length, body.
fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A start-up packet: length, then the body.
fn packet(body: &[u8]) -> Vec<u8> {
    let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstr(k));
        body.extend(cstr(v));
    }
    body.push(0);
    packet(&body)
}

fn ssl_request() -> Vec<u8> {
    packet(&80_877_103i32.to_be_bytes())
}

fn parse(name: &str, sql: &str, oids: &[u32]) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend_from_slice(&(oids.len() as i16).to_be_bytes());
    for o in oids {
        b.extend_from_slice(&o.to_be_bytes());
    }
    msg(b'P', &b)
}

fn bind(
    portal: &str,
    stmt: &str,
    formats: &[i16],
    params: &[Option<&[u8]>],
    results: &[i16],
) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend_from_slice(&(formats.len() as i16).to_be_bytes());
    for f in formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&(results.len() as i16).to_be_bytes());
    for f in results {
        b.extend_from_slice(&f.to_be_bytes());
    }
    msg(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(cstr(name));
    msg(b'D', &b)
}

fn execute(portal: &str, rows: i32) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend_from_slice(&rows.to_be_bytes());
    msg(b'E', &b)
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Mode bytes of the `pg_frontend` target (see its doc): chunks of 64
/// bytes; bit 1 starts past start-up; mode % 3 picks the password reading.
const PG_START: u8 = 252; // start-up state, 64 KiB limit, SASLInitialResponse
const PG_SASL_RESPONSE: u8 = 253; // start-up state, SASLResponse
const PG_PASSWORD: u8 = 245; // start-up state, chunks of 62, password
const PG_REGULAR: u8 = 254; // regular state

fn pg_frontend() -> Vec<(&'static str, Vec<u8>)> {
    let psql = startup(&[
        ("user", "postgres"),
        ("database", "postgres"),
        ("application_name", "psql"),
        ("client_encoding", "UTF8"),
    ]);
    let jdbc = startup(&[
        ("user", "app"),
        ("database", "app"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "UTC"),
        ("extra_float_digits", "2"),
    ]);
    let extended = cat(&[
        parse("", "SELECT $1::int4 + $2", &[23, 0]),
        bind(
            "",
            "",
            &[1, 0],
            &[Some(&7i32.to_be_bytes()[..]), Some(&b"35"[..])],
            &[1],
        ),
        describe(b'P', ""),
        execute("", 0),
        msg(b'S', &[]),
    ]);
    let prepared = cat(&[
        parse("s1", "INSERT INTO t(a, b) VALUES ($1, $2)", &[25, 17]),
        describe(b'S', "s1"),
        msg(b'S', &[]),
        bind("p1", "s1", &[], &[None, Some(&b"\\x00ff"[..])], &[]),
        execute("p1", 10),
        msg(b'H', &[]),
        {
            let mut b = vec![b'P'];
            b.extend(cstr("p1"));
            msg(b'C', &b)
        },
        msg(b'S', &[]),
    ]);
    let mut sasl = cstr("SCRAM-SHA-256");
    let first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO";
    sasl.extend_from_slice(&(first.len() as i32).to_be_bytes());
    sasl.extend_from_slice(first);
    let mut cancel = 80_877_102i32.to_be_bytes().to_vec();
    cancel.extend_from_slice(&1234i32.to_be_bytes());
    cancel.extend_from_slice(&0x5eed_i32.to_be_bytes());
    let mut gss = packet(&80_877_104i32.to_be_bytes());
    gss.extend(ssl_request());
    vec![
        (
            "psql-startup-query",
            [
                vec![PG_START],
                ssl_request(),
                psql.clone(),
                msg(b'Q', &cstr("SELECT 1; SELECT 'a''b' AS x")),
                msg(b'X', &[]),
            ]
            .concat(),
        ),
        (
            "jdbc-startup-extended",
            [vec![PG_START], jdbc, extended.clone()].concat(),
        ),
        (
            "regular-parse-bind-execute",
            [vec![PG_REGULAR], extended].concat(),
        ),
        (
            "regular-prepared-portal",
            [vec![PG_REGULAR], prepared].concat(),
        ),
        (
            "startup-sasl-initial",
            [vec![PG_START], psql.clone(), msg(b'p', &sasl)].concat(),
        ),
        (
            "startup-sasl-response",
            [
                vec![PG_SASL_RESPONSE],
                psql.clone(),
                msg(
                    b'p',
                    b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                ),
            ]
            .concat(),
        ),
        (
            "startup-password",
            [vec![PG_PASSWORD], psql.clone(), msg(b'p', &cstr("secret"))].concat(),
        ),
        ("cancel-request", [vec![PG_START], packet(&cancel)].concat()),
        ("gss-then-ssl", [vec![PG_START], gss, psql].concat()),
        (
            "regular-copy",
            [
                vec![PG_REGULAR],
                msg(b'd', b"1\tone\n"),
                msg(b'c', &[]),
                msg(b'f', &cstr("aborted")),
            ]
            .concat(),
        ),
    ]
}

/// A value of the type at `index` in [`crate::PG_OIDS`], text or binary.
fn value(index: u8, binary: bool, bytes: &[u8]) -> Vec<u8> {
    [vec![index | if binary { 0x80 } else { 0 }], bytes.to_vec()].concat()
}

fn pg_values() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("bool-text", value(0, false, b"t")),
        ("int2-binary", value(1, true, &(-7i16).to_be_bytes())),
        ("int4-binary", value(2, true, &42i32.to_be_bytes())),
        ("int8-text", value(3, false, b"-9223372036854775808")),
        ("float4-binary", value(4, true, &1.5f32.to_be_bytes())),
        ("float8-text", value(5, false, b"-1.25e-3")),
        ("numeric-text", value(6, false, b"12345.678900")),
        ("text", value(7, false, "grüße".as_bytes())),
        ("bytea-hex", value(10, false, b"\\x00ff10")),
        ("bytea-binary", value(10, true, &[0, 1, 2, 255])),
        ("date-text", value(11, false, b"2024-02-29")),
        ("time-text", value(12, false, b"23:59:59.999999")),
        ("timestamp-text", value(13, false, b"2024-01-01 12:00:00.5")),
        (
            "timestamp-binary",
            value(13, true, &757_382_400_000_000i64.to_be_bytes()),
        ),
        (
            "timestamptz-text",
            value(14, false, b"2024-01-01 12:00:00+02:00"),
        ),
        ("json-text", value(15, false, br#"{"a":[1,2,{"b":null}]}"#)),
        ("jsonb-binary", value(16, true, b"\x01{}")),
        (
            "uuid-text",
            value(17, false, b"6f1c2d4e-9a3b-4c5d-8e7f-0a1b2c3d4e5f"),
        ),
        ("uuid-binary", value(17, true, &[7; 16])),
    ]
}

fn hello(role: PeerRole) -> Hello {
    Hello {
        version: hadr_protocol::PROTOCOL_VERSION,
        role,
        database_id: "6f1c2d4e-9a3b-4c5d-8e7f-0a1b2c3d4e5f".into(),
        epoch: 3,
        epoch_history: vec![
            EpochStart {
                epoch: 1,
                start_lsn: 0,
            },
            EpochStart {
                epoch: 3,
                start_lsn: 8192,
            },
        ],
        lsn: 12_288,
        address: "127.0.0.1:9434".into(),
    }
}

fn repl_protocol() -> Vec<(&'static str, Vec<u8>)> {
    let records = sample_record(2).encode(4096);
    let messages = vec![
        ("hello-standby", Message::Hello(hello(PeerRole::Standby))),
        ("hello-cloner", Message::Hello(hello(PeerRole::Cloner))),
        (
            "refuse",
            Message::Refuse(Refuse::new(RefuseCode::NeedsClone, "log gone")),
        ),
        (
            "records",
            Message::Records {
                start_lsn: 4096,
                bytes: records,
            },
        ),
        (
            "ack",
            Message::Ack {
                received: 9000,
                flushed: 8000,
                replayed: 7000,
            },
        ),
        (
            "heartbeat",
            Message::Heartbeat {
                now_micros: 1_700_000_000_000_000,
                end_lsn: 9000,
                peer_window_end_micros: 0,
            },
        ),
        (
            "clone-start",
            Message::CloneStart {
                database_id: "d".into(),
                epoch_history: vec![EpochStart {
                    epoch: 1,
                    start_lsn: 0,
                }],
                epoch: 1,
                lsn: 4096,
                page_size: 512,
                pages: 2,
            },
        ),
        (
            "clone-pages",
            Message::ClonePages {
                first_pgno: 1,
                data: vec![0x5a; 1024],
            },
        ),
        (
            "scattered-pages",
            Message::ScatteredPages {
                pgnos: vec![3, 9],
                data: vec![7; 1024],
            },
        ),
        (
            "announce",
            Message::Announce {
                client_address: "db2.example:5433".into(),
            },
        ),
        (
            "topology",
            Message::Topology(Topology {
                epoch: 4,
                primary: Some("db1.example:5433".into()),
                standbys: vec!["db2.example:5433".into()],
            }),
        ),
        (
            "rewind-request",
            Message::RewindRequest {
                from_lsn: 4096,
                pages: vec![1, 2, 5],
            },
        ),
        ("takeover-ready", Message::TakeoverReady { end_lsn: 9000 }),
    ];
    let mut out = Vec::new();
    // Mode 0: frames as sent, a handshake and a stream back to back.
    let stream: Vec<u8> = messages.iter().flat_map(|(_, m)| m.encode()).collect();
    out.push(("stream", [vec![0], stream].concat()));
    // Mode 1: each frame's content, which the target frames and checksums.
    for (name, m) in messages {
        let f = m.encode();
        out.push((name, [vec![1], f[4..f.len() - 4].to_vec()].concat()));
    }
    out
}

fn sample_record(pages: u32) -> Record {
    let page_size = 512;
    Record {
        epoch: 3,
        commit_time_micros: 1_700_000_000_000_000,
        db_size_pages: 8,
        page_size,
        mark: CaptureMark {
            salt1: 1,
            salt2: 2,
            frame_end: 3,
            cksum1: 4,
            cksum2: 5,
        },
        pages: (1..=pages)
            .map(|pgno| Page {
                pgno,
                // Page 1 compresses (LZ4), the others are stored raw.
                data: if pgno == 1 {
                    vec![0x11; page_size as usize]
                } else {
                    (0..page_size).map(|i| (i * 7 + pgno) as u8).collect()
                },
            })
            .collect(),
    }
}

fn log_record() -> Vec<(&'static str, Vec<u8>)> {
    let one = sample_record(2).encode(4096);
    let empty = sample_record(0).encode(4096 + one.len() as u64);
    let unsealed = |r: &[u8]| r[..r.len() - 4].to_vec();
    let mut seg = vec![2];
    for r in [sample_record(1).encode(0), sample_record(3).encode(0)] {
        let body = unsealed(&r);
        seg.extend_from_slice(&(body.len() as u16).to_le_bytes());
        seg.extend_from_slice(&body);
    }
    seg.extend_from_slice(&[0xff, 0xff, 1, 2, 3]);
    vec![
        ("records", [vec![0], one.clone(), empty].concat()),
        ("sealed", [vec![1], unsealed(&one)].concat()),
        (
            "sealed-empty",
            [vec![1], unsealed(&sample_record(0).encode(0))].concat(),
        ),
        ("segment", seg),
    ]
}

fn config() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "primary",
            r#"data = "hadr-data"
listen = "0.0.0.0:5433"
admin = "127.0.0.1:8433"
client_address = "db1.example:5433"
role = "primary"
hadr_local = "10.0.0.1:9433"
hadr_target_list = "10.0.0.2:9433|10.0.0.3:9433"
hadr_syncmode = "NEARSYNC"
hadr_timeout = "3s"
hadr_peer_window = "0"
hadr_peer_wait_limit = "0"
log_segment_size = "64MiB"
log_retention = "1GiB"
log_flush_mode = "fsync"
checkpoint_wal_size = "16MiB"
idle_in_transaction_timeout = "60s"
write_wait_timeout = "120s"
client_write_timeout = "30s"
client_dead_timeout = "10s"
commit_token_retention = "24h"
commit_timeout = "60s"
max_connections = 500
reserved_connections = 3
reserved_connection_users = ["hadr_admin"]
max_message_size = "256MiB"
auto_reclone = true
"#,
        ),
        (
            "failover",
            r#"hadr_target_list = "10.0.0.1:9433"
hadr_syncmode = "SYNC"
arbiter = "etcd://10.0.0.9:2379,10.0.0.10:2379/hadr/lease"
failover = "auto"
lease_ttl = "2s"
lease_margin = "500ms"
min_promotion_interval = "60s"
hadr_replay_delay = "0"
"#,
        ),
        (
            "files-and-resources",
            r#"sync_paths = { www = "/srv/www", certs = "/etc/ssl/hadr" }
sync_exclude = ["*.tmp", "cache/**"]
sync_max_file_size = "256MiB"
sync_scan_interval = "30s"
arbiter = "s3://bucket/key?endpoint=http://127.0.0.1:9000&region=us-east-1"
failover = "manual"

[[resource]]
name = "vip"
kind = "vip"
address = "10.0.0.100/24"
interface = "eth0"

[[resource]]
name = "web"
kind = "service"
command = "exec python3 -m http.server 8080"
ready = "curl -sf -o /dev/null http://127.0.0.1:8080/"
stop_timeout = "3s"
on_exhausted = "takeover"
"#,
        ),
        ("empty", ""),
    ]
}

/// Statements of the kinds the tests and clients send (crates/hadr-sql's
/// tests, tests/stock_clients.rs), with the quoting the splitter must get right.
const SQL: &[&str] = &[
    "SELECT 1; SELECT 'a;b', \"c;d\" FROM t WHERE x = $1::int8",
    "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT 'x', b BYTEA, ts TIMESTAMPTZ)",
    "INSERT INTO t(v) VALUES (E'it\\'s'), ($$dollar ; quoted$$), ($tag$ $$ ; $tag$) RETURNING id",
    "BEGIN; UPDATE t SET v = v || '!' WHERE id = $2; COMMIT",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET v = 'y' WHERE id = NEW.id; END; SELECT 2",
    "/* outer /* nested ; */ still comment */ SELECT -- line ; comment\n 3",
    "SET hadr.commit_token = 'abc'; SHOW transaction_isolation; SELECT hadr_commit_outcome('abc')",
    "SELECT CAST($1 AS bigint), $2::text[], '2024-01-01'::date, x'ff', 1e10::float8 FROM generate_series(1, 3)",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT count(*) FROM r",
    "DELETE FROM t WHERE v IN (SELECT v FROM t GROUP BY v HAVING count(*) > 1); VACUUM; ROLLBACK",
    "SAVEPOINT a; RELEASE SAVEPOINT a; START TRANSACTION READ ONLY; END",
    "",
];

fn admin() -> Vec<(&'static str, Vec<u8>)> {
    let req = |s: &str| [vec![0], s.as_bytes().to_vec()].concat();
    let json = |s: &str| [vec![1], s.as_bytes().to_vec()].concat();
    vec![
        (
            "takeover",
            req("/takeover?force=true&peer_window_only=true"),
        ),
        ("fence", req("/fence?epoch=7")),
        ("pause", req("/failover/pause?paused=false")),
        ("status-query", req("/status?hash=true")),
        // A primary's /status (crates/hadr-admin-api/src/status.rs, its tests).
        ("status", json(STATUS)),
        (
            "takeover-answer",
            json(r#"{"takeover":"promoting","forced":true,"state":"PEER","end_lsn":9000}"#),
        ),
        (
            "fence-answer",
            json(r#"{"fenced":true,"epoch":4,"writable":false}"#),
        ),
        (
            "not-serving",
            json(r#"{"phase":"rewinding","detail":"a newer primary exists: 3 of 9 pages"}"#),
        ),
        (
            "file-verify",
            json(
                r#"{"roots":2,"identical":false,"mismatches":[{"root":"www","path":"a/index.html","why":"content"}],"unsynced":[]}"#,
            ),
        ),
    ]
}

const STATUS: &str = r#"{"version":"0.1.0","role":"primary","epoch":2,
"epoch_history":[{"epoch":1,"start_lsn":0},{"epoch":2,"start_lsn":4096}],
"highest_seen_epoch":2,"database_id":"d","writable":true,"writes":{"state":"open"},
"write_refusal":null,"activity":null,
"log":{"start_lsn":0,"end_lsn":5000,"flushed_lsn":5000,"size_bytes":65536},
"checkpoint_lsn":4096,"sessions_open":1,"commits":3,"statements":9,"checkpoints":0,
"uptime_seconds":12,
"recovery":{"truncated_tail_bytes":0,"captured_from_wal":0,"reapplied_records":0,"end_lsn":4096},
"hadr":{"role":"PRIMARY","hadr_local":"127.0.0.1:9433","standbys":[{"standby":"127.0.0.1:9434",
"principal":true,"hadr_syncmode":"NEARSYNC","hadr_state":"PEER","hadr_connect_status":"CONNECTED",
"hadr_connect_status_time_us":1,"heartbeat_interval_ms":250,"heartbeats_missed":0,
"time_since_last_recv_ms":3,"hadr_timeout_ms":1000,"primary_log_lsn":5000,"sent_lsn":5000,
"standby_received_lsn":5000,"standby_flushed_lsn":5000,"standby_replay_lsn":4900,
"hadr_log_gap_bytes":0,"standby_recv_replay_gap_bytes":100,"peer_window_ms":0,
"peer_window_end_us":0,"peer_wait_limit_ms":0,"last_error":null}],
"log_hadr_wait_cur_ms":0,"log_hadr_wait_accumulated_ms":5,"log_hadr_wait_count":3},
"page_hash":{"lsn":5000,"pages":4,"hash":"ab"}}"#;
