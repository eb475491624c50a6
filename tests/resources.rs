//! Resources that follow the primary role, through the real binary on
//! loopback (docs/resources.md; the virtual IP and host crashes in network
//! namespaces are in tests/resources_netns.rs).
//!
//! The resources here are `exec` triples around an **owner file** that both
//! nodes' copies need: start creates it only if it does not exist
//! (`set -C`), so a start while the other node's copy still runs fails and
//! says CONFLICT in a shared journal; stop removes it a while later in the
//! background (an asynchronous stop, the HACMP case that runbooks cover with
//! `sleep 60`); monitor reads it. Every start and stop is journaled with the
//! node's name, so the order can be checked afterwards.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An exec resource named `name` owned through `dir/name.owner`, journaled
/// to `dir/journal`; its stop finishes `stop_ms` later in the background.
fn owned_resource(dir: &Path, name: &str, node: &str, stop_ms: u64, extra: &str) -> String {
    let owner = dir.join(format!("{name}.owner"));
    let journal = dir.join("journal");
    let (o, j) = (owner.display(), journal.display());
    format!(
        r#"
[[resource]]
name = "{name}"
kind = "exec"
start = "if ( set -C; echo {node} > {o} ) 2>/dev/null; then echo 'start {name} {node}' >> {j}; else echo 'CONFLICT {name} {node}' >> {j}; exit 1; fi"
stop = "if grep -qx {node} {o} 2>/dev/null; then (sleep {secs}; echo 'stop {name} {node}' >> {j}; rm -f {o}) > /dev/null 2>&1 & fi"
monitor = "grep -qx {node} {o}"
stop_timeout = "5s"
monitor_interval = "200ms"
{extra}
"#,
        secs = stop_ms as f64 / 1000.0,
    )
}

fn journal(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("journal"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Every start of a resource follows the stop of its previous owner: no
/// CONFLICT, and starts and stops alternate per resource.
fn assert_exclusive(lines: &[String]) {
    assert!(
        !lines.iter().any(|l| l.starts_with("CONFLICT")),
        "a resource was started while another node's copy still ran: {lines:#?}"
    );
    let mut running: std::collections::BTreeMap<String, String> = Default::default();
    for l in lines {
        let w: Vec<&str> = l.split(' ').collect();
        match w[..] {
            ["start", r, n] => {
                if let Some(other) = running.insert(r.into(), n.into()) {
                    panic!("{r} started on {n} while running on {other}: {lines:#?}");
                }
            }
            ["stop", r, n] => {
                assert_eq!(
                    running.remove(r).as_deref(),
                    Some(n),
                    "stop of {r} on {n} that was not running there: {lines:#?}"
                );
            }
            _ => panic!("journal line {l:?}"),
        }
    }
}

fn write_config(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

async fn wait_state(s: &Server, name: &str, state: &str, timeout: Duration) -> Result<Status> {
    let (name, state) = (name.to_string(), state.to_string());
    s.wait_for(&format!("resource {name} {state}"), timeout, move |st| {
        st.resources.as_ref().is_some_and(|r| {
            r.resources
                .iter()
                .any(|v| v.name == name && v.state == state)
        })
    })
    .await
}

fn resource<'a>(st: &'a Status, name: &str) -> &'a hadr_admin_api::ResourceView {
    st.resources
        .as_ref()
        .and_then(|r| r.resources.iter().find(|v| v.name == name))
        .unwrap_or_else(|| panic!("no resource {name} in status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_in_order_and_stops_in_reverse_each_stop_confirmed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let cfg = format!(
        "{}{}",
        owned_resource(d, "first", "a", 600, ""),
        owned_resource(d, "second", "a", 600, "")
    );
    let config = write_config(&d.join("a.toml"), &cfg);
    let mut a = start_with(vec!["--config".into(), config.display().to_string()])?;
    wait_state(&a, "second", "online", Duration::from_secs(20)).await?;
    assert_eq!(journal(d), ["start first a", "start second a"]);

    // A clean shutdown returns only once both are confirmed gone, second
    // first: the first's stop begins only after the second's finished.
    let began = Instant::now();
    a.stop()?;
    let took = began.elapsed();
    assert_eq!(
        journal(d),
        [
            "start first a",
            "start second a",
            "stop second a",
            "stop first a"
        ]
    );
    assert!(!d.join("first.owner").exists() && !d.join("second.owner").exists());
    assert!(
        took >= Duration::from_millis(1200),
        "two asynchronous stops of 600 ms each were not waited for ({took:?})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hadr_process_leaves_no_resource_running() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let pidfile = d.join("svc.pid");
    let cfg = format!(
        "{}\n[[resource]]\nname = \"svc\"\nkind = \"service\"\ncommand = \"echo $$ > {}; trap '' TERM; while true; do sleep 0.1; done\"\nstop_timeout = \"1s\"\nkill_timeout = \"1s\"\n",
        owned_resource(d, "owned", "a", 300, ""),
        pidfile.display()
    );
    let config = write_config(&d.join("a.toml"), &cfg);
    let mut a = start_with(vec!["--config".into(), config.display().to_string()])?;
    wait_state(&a, "svc", "online", Duration::from_secs(20)).await?;
    let pid: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(pid));
    a.kill9();
    // The guard stops them: the service ignores SIGTERM, so it is killed
    // after its stop timeout; the owner file goes after its async stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(pid) || d.join("owned.owner").exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the supervised service outlived hadr");
    assert!(
        !d.join("owned.owner").exists(),
        "the exec resource was not stopped after hadr died"
    );
    assert_eq!(journal(d), ["start owned a", "stop owned a"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_failures_restart_then_leave_the_resource_failed_until_an_operator_restarts_it(
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let cfg = owned_resource(d, "flaky", "a", 10, "max_restarts = 1");
    let config = write_config(&d.join("a.toml"), &cfg);
    let a = start_with(vec!["--config".into(), config.display().to_string()])?;
    wait_state(&a, "flaky", "online", Duration::from_secs(20)).await?;
    // The resource vanishes behind hadr's back: restarted (1 failure).
    std::fs::remove_file(d.join("flaky.owner"))?;
    let st = a
        .wait_for("flaky restarted", Duration::from_secs(20), |st| {
            let v = resource(st, "flaky");
            v.state == "online" && v.failures == 1
        })
        .await?;
    assert_eq!(resource(&st, "flaky").failures, 1);
    // Again: over max_restarts, it is left failed, and the node stays primary.
    std::fs::remove_file(d.join("flaky.owner"))?;
    let st = wait_state(&a, "flaky", "failed", Duration::from_secs(20)).await?;
    assert!(
        st.writable,
        "a failed resource with on_exhausted = stop does not fence the node"
    );
    let metrics = a.admin().metrics().await?;
    assert!(
        metrics.contains("hadr_resource_state{resource=\"flaky\",state=\"failed\"} 1"),
        "{metrics}"
    );
    // `hadr resource restart` forgets the failures and starts it again.
    let out = admin_cmd()
        .args(["resource", "restart", "flaky", "--node", &a.admin_addr()])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = wait_state(&a, "flaky", "online", Duration::from_secs(20)).await?;
    assert_eq!(resource(&st, "flaky").failures, 0);
    // disable / enable, and the text status shows it.
    for (op, want) in [("disable", "offline"), ("enable", "online")] {
        let out = admin_cmd()
            .args(["resource", op, "flaky", "--node", &a.admin_addr()])
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_state(&a, "flaky", want, Duration::from_secs(20)).await?;
    }
    let out = std::process::Command::new(bin())
        .args(["status", "--node", &a.admin_addr()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("flaky") && text.contains("online") && text.contains("exec"),
        "{text}"
    );
    let out = std::process::Command::new(bin())
        .args(["resource", "list", "--node", &a.admin_addr()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("(standard)") && text.contains("flaky") && text.contains("online"),
        "{text}"
    );
    let out = admin_cmd()
        .args(["resource", "restart", "nope", "--node", &a.admin_addr()])
        .output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no resource named \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn bad_resource_configuration_stops_start_up_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    init(&data).unwrap();
    let cases = [
        (
            "[[resource]]\nname = \"x\"\nkind = \"nfs\"\n",
            "resource[0] (x).kind: unknown kind \"nfs\"",
        ),
        (
            "[[resource]]\nname = \"x\"\nkind = \"exec\"\nstart = \"true\"\nstop = \"true\"\n",
            "resource[0] (x).monitor: is required for kind exec",
        ),
        (
            "[[resource]]\nname = \"v\"\nkind = \"vip\"\naddress = \"10.1.1.1/24\"\n",
            "resource[0] (v).interface: is required for kind vip",
        ),
        (
            "[[resource]]\nname = \"s\"\nkind = \"service\"\ncommand = \"x\"\nunit = \"y\"\n",
            "resource[0] (s).unit: set either command",
        ),
        (
            "[[resource]]\nname = \"s\"\nkind = \"service\"\ncommand = \"x\"\non_exhausted = \"takeover\"\n",
            "resource[0] (s).on_exhausted: takeover needs",
        ),
    ];
    for (text, want) in cases {
        let cfg = tmp.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = std::process::Command::new(bin())
            .args(["server", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .args([
                "--listen",
                &local(free_port()),
                "--admin",
                &local(free_port()),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}: started anyway");
        assert!(err.contains(want), "{text}: {err}");
    }
}

/// A primary A and a standby B (no arbiter), each with the same resources
/// (as each node's own copy), B in PEER.
async fn pair(d: &Path, extra_a: &str, extra_b: &str, flags: &[&str]) -> Result<(Server, Server)> {
    let a_local = repl_addr();
    let b_local = repl_addr();
    let ca = write_config(&d.join("a.toml"), extra_a);
    let cb = write_config(&d.join("b.toml"), extra_b);
    let mut args = hadr_args(&a_local, &b_local, flags);
    args.extend([
        "--role".into(),
        "primary".into(),
        "--config".into(),
        ca.display().to_string(),
    ]);
    let a = start_with(args)?;
    let bdir = d.join("b");
    clone_to(&a_local, &bdir)?;
    let mut bargs = hadr_args(&b_local, &a_local, flags);
    bargs.extend(["--config".into(), cb.display().to_string()]);
    let b = on_dir(bdir, &bargs)?;
    a.wait_for("PEER", Duration::from_secs(30), |st| {
        st.principal()
            .is_some_and(|s| s.hadr_state == PairState::Peer)
    })
    .await?;
    Ok((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_takeover_moves_the_resources_after_confirmed_stops() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    // Stops that take 1.5 s: started too early, the new primary's copy
    // would find the owner file and say CONFLICT.
    let (a, b) = pair(
        d,
        &format!(
            "{}{}",
            owned_resource(d, "ip", "a", 300, ""),
            owned_resource(d, "app", "a", 1500, "")
        ),
        &format!(
            "{}{}",
            owned_resource(d, "ip", "b", 300, ""),
            owned_resource(d, "app", "b", 1500, "")
        ),
        &[],
    )
    .await?;
    wait_state(&a, "app", "online", Duration::from_secs(20)).await?;
    // The standby's copies stay offline (once probed).
    wait_state(&b, "app", "offline", Duration::from_secs(20)).await?;
    for (from, to, name) in [(&a, &b, "b"), (&b, &a, "a")] {
        from.wait_for("PEER", Duration::from_secs(30), |st| {
            st.principal()
                .is_some_and(|s| s.hadr_state == PairState::Peer)
        })
        .await?;
        let answer = to
            .admin()
            .with_timeout(Duration::from_secs(60))
            .takeover(false, false)
            .await?;
        assert_eq!(answer.takeover, hadr_admin_api::TakeoverProgress::Promoting);
        let st = wait_state(to, "app", "online", Duration::from_secs(30)).await?;
        assert_eq!(resource(&st, "ip").failures, 0, "{name}: {st:?}");
        assert_eq!(resource(&st, "app").failures, 0, "{name}: {st:?}");
        // The old primary's copies went offline before the new ones started.
        let old = from.status().await?;
        assert_eq!(resource(&old, "app").state, "offline");
        assert_exclusive(&journal(d));
    }
    let j = journal(d);
    assert_eq!(
        j,
        [
            "start ip a",
            "start app a",
            "stop app a",
            "stop ip a",
            "start ip b",
            "start app b",
            "stop app b",
            "stop ip b",
            "start ip a",
            "start app a"
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_that_exhausts_its_restarts_hands_the_primary_over() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let extra = "max_restarts = 0\non_exhausted = \"takeover\"";
    let (a, b) = pair(
        d,
        &owned_resource(d, "app", "a", 10, extra),
        &owned_resource(d, "app", "b", 10, extra),
        &[],
    )
    .await?;
    wait_state(&a, "app", "online", Duration::from_secs(20)).await?;
    // The resource dies behind hadr's back (journaled for the order check).
    std::fs::write(d.join("journal"), "start app a\nstop app a\n")?;
    std::fs::remove_file(d.join("app.owner"))?;
    // A hands over by itself; B starts its copy.
    let st = b
        .wait_for("B primary with app online", Duration::from_secs(30), |st| {
            st.role == NodeRole::Primary
                && st
                    .resources
                    .as_ref()
                    .is_some_and(|r| r.resources[0].state == "online")
        })
        .await?;
    assert!(st.writable);
    let old = a
        .wait_for("A a standby", Duration::from_secs(30), |st| {
            st.role == NodeRole::Standby
        })
        .await?;
    let why = old
        .resources
        .as_ref()
        .and_then(|r| r.takeover_reason.clone())
        .unwrap_or_default();
    assert!(why.contains("resource app failed 1 times"), "{why}");
    assert_exclusive(&journal(d));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_new_primary_waits_for_the_old_ones_stop_bound() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let arbiter = format!("file:{}", d.join("lease").display());
    let flags = [
        "--hadr-syncmode",
        "NEARSYNC",
        "--arbiter",
        &arbiter,
        "--lease-ttl",
        "2s",
        "--lease-margin",
        "500ms",
    ];
    // The old primary's stop takes 4 s (its guard runs it when hadr dies):
    // longer than the failover, so B would say CONFLICT if it started its
    // copy at promotion.
    let (mut a, b) = pair(
        d,
        &owned_resource(d, "app", "a", 4000, ""),
        &owned_resource(d, "app", "b", 4000, ""),
        &flags,
    )
    .await?;
    a.wait_for("the lease", Duration::from_secs(30), |st| {
        st.failover
            .as_ref()
            .is_some_and(|f| f.lease_left_ms > 0 && f.out_of_sync.is_empty())
    })
    .await?;
    wait_state(&a, "app", "online", Duration::from_secs(20)).await?;
    // The standby must know itself caught up in PEER when the link drops
    // (docs/failover.md §Who may write): a commit, replayed, then a
    // heartbeat.
    a.client()
        .await?
        .batch_execute("CREATE TABLE t(x INTEGER)")
        .await?;
    let end = a.status().await?.log.end_lsn;
    b.wait_for(
        "caught up",
        Duration::from_secs(20),
        |st| matches!(&st.hadr, Some(HadrView::Standby(v)) if v.standby_flushed_lsn >= end),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    a.kill9();
    let st = b
        .wait_for("B primary", Duration::from_secs(30), |st| {
            st.role == NodeRole::Primary && st.writable
        })
        .await?;
    let promoted = killed.elapsed();
    let hold = st
        .resources
        .as_ref()
        .and_then(|r| r.hold.clone())
        .unwrap_or_default();
    let st = wait_state(&b, "app", "online", Duration::from_secs(30)).await?;
    let started = killed.elapsed();
    assert_exclusive(&journal(d));
    assert_eq!(resource(&st, "app").failures, 0, "{st:?}");
    // B waited: stop_timeout 5 s − lease margin 0.5 s after promotion.
    assert!(hold.contains("stop bound (4500 ms)"), "{hold}");
    assert!(
        started >= promoted + Duration::from_millis(4000),
        "started {started:?} after the kill, promoted at {promoted:?}"
    );
    assert_exclusive(&journal(d));
    assert_eq!(journal(d), ["start app a", "stop app a", "start app b"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_mount_is_reported_and_unmounted_once_released() -> Result<()> {
    if not_root() {
        eprintln!("skipped: mounting needs root");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt)?;
    let cfg = format!(
        "[[resource]]\nname = \"disk\"\nkind = \"mount\"\ndevice = \"tmpfs\"\nfstype = \"tmpfs\"\noptions = \"size=1m\"\ndirectory = \"{}\"\nstop_timeout = \"10s\"\n",
        mnt.display()
    );
    let config = write_config(&d.join("a.toml"), &cfg);
    let mut a = start_with(vec!["--config".into(), config.display().to_string()])?;
    wait_state(&a, "disk", "online", Duration::from_secs(20)).await?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(mountinfo.contains(&mnt.display().to_string()));
    // A process holds the filesystem for 2 s: the stop waits (retrying
    // umount), names the holder, and completes once it is released.
    let holder = std::process::Command::new("sh")
        .arg("-c")
        .arg("sleep 2")
        .current_dir(&mnt)
        .spawn()?;
    let out = admin_cmd()
        .args(["resource", "disable", "disk", "--node", &a.admin_addr()])
        .output()?;
    assert!(out.status.success());
    let st = wait_state(&a, "disk", "offline", Duration::from_secs(20)).await?;
    let output = resource(&st, "disk").output.join("\n");
    assert!(output.contains("busy"), "{output}");
    let mut holder = holder;
    holder.wait()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(!mountinfo.contains(&mnt.display().to_string()));
    a.stop()?;
    Ok(())
}

fn not_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() != "0")
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_resources_run_on_the_standby_and_swap_on_takeover() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    // A read-only service on whichever node is the standby: its own marker
    // file per node (both may run at once, on different nodes).
    let ro = |node: &str| {
        let f = d.join(format!("ro-{node}"));
        format!(
            "[[resource]]\nname = \"ro\"\nkind = \"exec\"\nrole = \"standby\"\nstart = \"touch {f}\"\nstop = \"rm -f {f}\"\nmonitor = \"test -e {f}\"\n",
            f = f.display()
        )
    };
    let (a, b) = pair(d, &ro("a"), &ro("b"), &[]).await?;
    wait_state(&b, "ro", "online", Duration::from_secs(20)).await?;
    assert_eq!(resource(&a.status().await?, "ro").role, "standby");
    assert!(d.join("ro-b").exists() && !d.join("ro-a").exists());
    let answer = b
        .admin()
        .with_timeout(Duration::from_secs(60))
        .takeover(false, false)
        .await?;
    assert_eq!(answer.takeover, hadr_admin_api::TakeoverProgress::Promoting);
    wait_state(&a, "ro", "online", Duration::from_secs(30)).await?;
    if let Err(e) = wait_state(&b, "ro", "offline", Duration::from_secs(30)).await {
        eprintln!("B LOG:\n{}", b.log());
        return Err(e);
    }
    assert!(d.join("ro-a").exists() && !d.join("ro-b").exists());
    Ok(())
}
