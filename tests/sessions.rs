//! Client sessions at their edges: writes through row-limited portals are
//! counted as commits.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;

/// One frontend message: tag, length, body.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Parse, Bind and Execute of `sql` on the unnamed statement and portal with
/// a row limit, then Sync.
fn limited_execute(sql: &str, max_rows: i32) -> Vec<u8> {
    let mut parse = cstr("");
    parse.extend(cstr(sql));
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut bind = cstr("");
    bind.extend(cstr(""));
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut execute = cstr("");
    execute.extend_from_slice(&max_rows.to_be_bytes());
    let mut out = frame(b'P', &parse);
    out.extend(frame(b'B', &bind));
    out.extend(frame(b'E', &execute));
    out.extend(frame(b'S', &[]));
    out
}

/// Backend messages up to and including ReadyForQuery, as (tag, body).
fn until_ready(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut msgs = Vec::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).expect("a backend message");
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        let ready = head[0] == b'Z';
        msgs.push((head[0], body));
        if ready {
            return msgs;
        }
    }
}

/// A counter from /metrics.
fn metric(s: &Server, name: &str) -> u64 {
    let (code, body) = s.admin_get("/metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_row_limited_portals_count_as_commits() {
    let s = Server::start(&[]);
    let c = s.client().await;
    c.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)")
        .await
        .unwrap();
    let before = metric(&s, "hadr_commits_total");

    let mut r = raw_session(s.port);
    // Completes within the limit: DataRow, CommandComplete.
    for v in 0..3 {
        let sql = format!("INSERT INTO t(v) VALUES ({v}) RETURNING id");
        r.write_all(&limited_execute(&sql, 1)).unwrap();
        let tags: Vec<u8> = until_ready(&mut r).iter().map(|m| m.0).collect();
        assert_eq!(tags, b"12DCZ", "{sql}");
    }
    // More rows than the limit: suspended, yet committed (outside a block).
    r.write_all(&limited_execute(
        "INSERT INTO t(v) VALUES (10), (11) RETURNING id",
        1,
    ))
    .unwrap();
    let tags: Vec<u8> = until_ready(&mut r).iter().map(|m| m.0).collect();
    assert_eq!(tags, b"12DsZ");

    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);
    assert_eq!(metric(&s, "hadr_commits_total"), before + 4);
}
