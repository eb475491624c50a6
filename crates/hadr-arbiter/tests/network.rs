//! The network arbiter against real sockets, on loopback only.

use std::time::{Duration, Instant};

use hadr_arbiter::network::NetArbiter;
use hadr_arbiter::{check, Arbiter, ArbiterError, LeaseRecord, Version};

fn rec(holder: &str) -> LeaseRecord {
    LeaseRecord {
        holder: Some(holder.into()),
        epoch: 3,
        token: 7,
        ..LeaseRecord::default()
    }
}

#[tokio::test]
async fn reachable_listener_answers_and_everyone_wins() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let arb = NetArbiter::new("127.0.0.1".into(), port);
    assert_eq!(arb.read().await.unwrap(), None);
    let stored = arb.write(None, &rec("a")).await.unwrap();
    assert_eq!(stored.record, rec("a"));
    assert_eq!(stored.version, Version("net".into()));
    // It keeps nothing and compares nothing: a second "create" and a
    // nonsense version both win too. That is its nature.
    let other = NetArbiter::new("127.0.0.1".into(), port);
    assert_eq!(other.write(None, &rec("b")).await.unwrap().record, rec("b"));
    let bogus = Version("never-stored".into());
    assert!(other.write(Some(&bogus), &rec("b")).await.is_ok());
    assert_eq!(arb.read().await.unwrap(), None);
    // The connects really reached the listener.
    let (_conn, peer) = listener.accept().await.unwrap();
    assert!(peer.ip().is_loopback());
}

#[tokio::test]
async fn closed_port_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let arb = NetArbiter::new("127.0.0.1".into(), port);
    for err in [
        arb.read().await.unwrap_err(),
        arb.write(None, &rec("a")).await.unwrap_err(),
    ] {
        match &err {
            ArbiterError::Unavailable { endpoint, .. } => {
                assert_eq!(endpoint, &format!("127.0.0.1:{port}"))
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("connect"), "{err}");
    }
}

#[tokio::test]
async fn unanswered_connect_times_out() {
    // A listener with a backlog of one that never accepts: once its queue
    // is full the kernel drops further SYNs, so a connect hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..16 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the backlog never filled");
    let arb =
        NetArbiter::new("127.0.0.1".into(), addr.port()).with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = arb.read().await.unwrap_err();
    assert!(matches!(err, ArbiterError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn check_reports_stateless() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let arb = NetArbiter::new("127.0.0.1".into(), port);
    let report = check(&arb).await.unwrap();
    assert!(!report.info.stateful);
    assert_eq!(report.info.kind, "net");
    assert_eq!(report.info.endpoint, format!("127.0.0.1:{port}"));
    assert!(report.current.is_none());
    assert_eq!(report.write_round_trip, Duration::ZERO);
    assert_eq!(arb.probe().info(), arb.info());
    // And it fails when the address does not answer.
    drop(listener);
    assert!(check(&arb).await.is_err());
}
