//! The README's first command: `hadr demo` runs a pair through a graceful
//! takeover, a kill -9 with an automatic failover (no takeover command) and
//! a rejoin, and checks its
//! own results (it exits non-zero if any acknowledged transfer is missing,
//! the money does not add up, a restarted old primary accepts a write, or
//! the nodes differ).

mod common;
use common::*;
use std::process::Command;

#[test]
fn the_demo_switches_roles_twice_and_loses_nothing() -> Result<()> {
    let out = Command::new(bin())
        .args(["demo", "--no-wait", "--seconds", "3", "--port", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "B is the writable primary of epoch 2",
        "automatic failover: A saw B's lease run out unchanged, won the arbiter and is the writable primary of epoch 3",
        "right after its start: refused",
        "online on B",
        "owner file: held by B",
        "A started it after B's stop bound",
        "owner file: held by A",
        "follows A as a standby",
        "missing on the primary: 0; money in the bank: 1000000",
        "identical",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    Ok(())
}
