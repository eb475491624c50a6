//! The namespace topology itself: who reaches whom after each fault, and
//! that nothing is left behind. Needs root, iproute2 and nftables.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use hadr_testkit::netns::Cluster;

const PORT: u16 = 7000;
const SHORT: Duration = Duration::from_millis(300);

/// Whether host `from` (None: the test process) opens a TCP connection to `to`.
fn reaches(net: &Cluster, from: Option<&str>, to: &str) -> bool {
    let addr = SocketAddr::new(net.ip(to).into(), PORT);
    match from {
        None => TcpStream::connect_timeout(&addr, SHORT).is_ok(),
        Some(f) => net.connect_from(f, addr, SHORT).is_ok(),
    }
}

/// Every ordered pair among the hosts and the test process that connects.
fn matrix(net: &Cluster) -> Vec<String> {
    let mut v = Vec::new();
    let names = ["a", "b", "c"];
    for to in names {
        if reaches(net, None, to) {
            v.push(format!("root>{to}"));
        }
        for from in names {
            if from != to && reaches(net, Some(from), to) {
                v.push(format!("{from}>{to}"));
            }
        }
    }
    v
}

#[test]
fn cuts_and_black_holes_affect_exactly_the_links_named() {
    let names;
    {
        let net = Cluster::new(&["a", "b", "c"]).unwrap();
        names = net
            .hosts()
            .iter()
            .map(|h| h.netns.clone())
            .collect::<Vec<_>>();
        let _listeners: Vec<TcpListener> = ["a", "b", "c"]
            .iter()
            .map(|h| {
                let ip = net.ip(h);
                net.enter(h, move || TcpListener::bind((ip, PORT)).unwrap())
                    .unwrap()
            })
            .collect();
        let all = "root>a a>b root>b b>a a>c root>c c>a b>c c>b"; // see matrix()'s order
        let all: Vec<String> = all.split(' ').map(String::from).collect();
        let mut want = all.clone();
        want.sort();
        let mut got = matrix(&net);
        got.sort();
        assert_eq!(got, want, "a fresh cluster connects everything");

        net.cut("a", "b").unwrap();
        let mut got = matrix(&net);
        got.sort();
        let mut w: Vec<String> = want
            .iter()
            .filter(|s| *s != "a>b" && *s != "b>a")
            .cloned()
            .collect();
        w.sort();
        assert_eq!(got, w, "cut a-b");

        net.black_hole("c").unwrap();
        let mut got = matrix(&net);
        got.sort();
        let mut w = vec!["root>a".to_string(), "root>b".to_string()];
        w.sort();
        assert_eq!(got, w, "cut a-b and c black-holed");
        // A black-holed host still reaches itself.
        let own = SocketAddr::new(net.ip("c").into(), PORT);
        assert!(net.connect_from("c", own, SHORT).is_ok());
        let lo = SocketAddr::from(([127, 0, 0, 1], PORT));
        assert!(
            net.connect_from("c", lo, SHORT).is_err(),
            "listener is on c's address only"
        );

        net.heal_cut("a", "b").unwrap();
        net.heal("c").unwrap();
        let mut got = matrix(&net);
        got.sort();
        assert_eq!(got, want, "healed");

        net.black_hole("a").unwrap();
        net.heal_all().unwrap();
        let mut got = matrix(&net);
        got.sort();
        assert_eq!(got, want, "heal_all");
    }
    for ns in names {
        assert!(
            !std::path::Path::new(&format!("/run/netns/{ns}")).exists(),
            "{ns} left behind"
        );
    }
}

#[test]
fn processes_run_inside_and_can_be_frozen_and_killed() {
    let net = Cluster::new(&["x"]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = net.command("x", "sleep").unwrap();
    cmd.arg("30");
    let p = net.spawn(cmd, &tmp.path().join("sleep.log")).unwrap();
    assert!(p.alive());
    p.sigstop().unwrap();
    p.sigcont().unwrap();
    p.kill9();
    assert!(!p.alive());
    // Commands run in the namespace: they see its address.
    let out = net
        .command("x", "ip")
        .unwrap()
        .args(["-o", "addr", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&net.ip("x").to_string()), "{text}");
}
