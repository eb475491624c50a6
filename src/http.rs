//! A minimal HTTP/1.1 GET for the admin endpoint.
//!
//! Written here rather than pulling in an HTTP client crate: the CLI only
//! ever talks plain HTTP to a node's admin port, and a full client would add
//! a TLS stack and dozens of dependencies to the binary for one request.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET `path` from `addr` and return the body of a 200 response.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<String> {
    request("GET", addr, path, timeout).await
}

/// POST (no body) to `path` and return the body of a 200 response.
pub async fn post(addr: &str, path: &str, timeout: Duration) -> Result<String> {
    request("POST", addr, path, timeout).await
}

async fn request(method: &str, addr: &str, path: &str, timeout: Duration) -> Result<String> {
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot reach {addr}"))?;
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("malformed HTTP response")?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            bail!("{addr}{path} answered {status}: {}", body.trim());
        }
        // axum sends small bodies with Content-Length; chunked only for streams.
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Ok(dechunk(body));
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("{addr} did not answer within {timeout:?}"))?
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
