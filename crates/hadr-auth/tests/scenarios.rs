//! Scenario tests of the access rules (`testdata/rules.txt`, the
//! `datadriven` format used by crates/hadr-ha/tests/scenarios.rs): each case
//! is a command, `----`, and what the rules answered. `REWRITE=1 cargo test
//! -p hadr-auth --test scenarios` writes the answers anew.
//!
//! - `rules` sets the rules, one per input line (`TYPE DATABASE USER
//!   ADDRESS METHOD`); `rules default` sets the built-in default.
//! - `connect addr= [db=] [user=] [tls] [cn=]` prints the matching rule
//!   and the decision (an IPv6 address goes on the input line instead:
//!   datadriven arguments cannot hold a colon).
//! - `listen addr=` (or the address as input) prints whether a node listening there must refuse to
//!   start without `--insecure-trust`, and the rule that makes it so.

use datadriven::{walk, TestCase};
use hadr_auth::{Decision, Refusal, Request, Rule, Rules};

#[derive(Default)]
struct State {
    rules: Option<Rules>,
}

#[test]
fn scenarios() {
    let mut files = 0;
    walk("testdata", |f| {
        files += 1;
        let mut st = State::default();
        f.run(|tc| {
            let out = match case(&mut st, tc) {
                Ok(o) => o,
                Err(e) => format!("error: {e}\n"),
            };
            if !tc.args.is_empty() {
                let mut left: Vec<_> = tc.args.keys().cloned().collect();
                left.sort();
                return format!("error: arguments not used: {left:?}\n");
            }
            out
        });
    });
    if std::env::var_os("RUN").is_none() {
        assert_eq!(files, 1, "every scenario file ran");
    }
}

/// The address: `addr=` (IPv4), or the input line (IPv6: datadriven
/// arguments cannot hold a colon).
fn take_addr(tc: &mut TestCase) -> Result<String, String> {
    match tc
        .try_take_arg::<String>("addr")
        .map_err(|e| e.to_string())?
    {
        Some(a) => Ok(a),
        None => Ok(tc.input.trim().to_string()),
    }
}

fn take_or(tc: &mut TestCase, arg: &str, default: &str) -> Result<String, String> {
    Ok(tc
        .try_take_arg::<String>(arg)
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| default.to_string()))
}

fn case(st: &mut State, tc: &mut TestCase) -> Result<String, String> {
    match tc.directive.as_str() {
        "rules" => {
            if tc.take_flag("default").map_err(|e| e.to_string())? {
                st.rules = Some(Rules::default_rules());
                return Ok("ok\n".into());
            }
            let mut rules = Vec::new();
            let mut out = String::new();
            for (i, line) in tc.input.lines().enumerate() {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let [t, d, u, a, m] = cols[..] else {
                    return Err(format!("line {}: five columns", i + 1));
                };
                match Rule::parse(t, d, u, a, m) {
                    Ok(r) => rules.push(r),
                    Err(e) => out.push_str(&format!("line {}: {e}\n", i + 1)),
                }
            }
            if out.is_empty() {
                st.rules = Some(Rules::new(rules));
                out.push_str("ok\n");
            }
            Ok(out)
        }
        "connect" => {
            let rules = st.rules.as_ref().ok_or("no rules yet")?;
            let addr = take_addr(tc)?;
            let db = take_or(tc, "db", "app")?;
            let user = take_or(tc, "user", "alice")?;
            let tls = tc.take_flag("tls").map_err(|e| e.to_string())?;
            let cn = tc.try_take_arg::<String>("cn").map_err(|e| e.to_string())?;
            let req = Request {
                tls,
                database: &db,
                user: &user,
                addr: addr.parse().map_err(|_| format!("bad addr {addr}"))?,
                client_cn: cn.as_deref(),
            };
            let matched = match rules.find(&req) {
                Some((i, r)) => format!("rule {}: {r}", i + 1),
                None => "no rule".to_string(),
            };
            let decision = match rules.decide(&req) {
                Decision::Allow => "allow".to_string(),
                Decision::Scram => "scram".to_string(),
                Decision::Refuse(Refusal::NoRule) => "refuse: no rule".to_string(),
                Decision::Refuse(Refusal::Reject(i)) => format!("refuse: rule {} rejects", i + 1),
                Decision::Refuse(Refusal::Cert(i)) => {
                    format!("refuse: rule {} needs a certificate for this user", i + 1)
                }
            };
            Ok(format!("{matched}\n{decision}\n"))
        }
        "listen" => {
            let rules = st.rules.as_ref().ok_or("no rules yet")?;
            let addr = take_addr(tc)?;
            let ip = addr.parse().map_err(|_| format!("bad addr {addr}"))?;
            Ok(match rules.insecure_trust(ip) {
                Some((i, r)) => format!("insecure: rule {}: {r}\n", i + 1),
                None => "ok\n".into(),
            })
        }
        d => Err(format!("unknown directive {d}")),
    }
}
