//! The servers around the nodes: an etcd member on the arbiter's host
//! (hadr's etcd arbiter and Patroni's DCS), moto behind its serialising
//! proxy (hadr_testkit::s3), and killing everything on a host.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hadr_testkit::netns::{Cluster, Proc};
use hadr_testkit::s3::{Mode, Moto, MotoOptions, Proxy};
use tokio::runtime::Handle;

use super::client;
use crate::proc;

/// etcd's well-known ports: the packaged service may hold them; never ours.
const ETCD_SYSTEM_PORTS: [u16; 2] = [2379, 2380];

/// One etcd member on host `host` of the cluster network, its data in a
/// directory of the work tree; killed on drop.
pub struct Etcd {
    pub endpoint: String,
    pub version: String,
    proc: Proc,
    log: PathBuf,
}

impl Etcd {
    pub fn start(rt: &Handle, net: &Cluster, host: &str, dir: &Path) -> Result<Etcd> {
        let version = etcd_version()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (client_port, peer_port) = loop {
            let (c, p) = (hadr_testkit::free_port(), hadr_testkit::free_port());
            if c != p && !ETCD_SYSTEM_PORTS.contains(&c) && !ETCD_SYSTEM_PORTS.contains(&p) {
                break (c, p);
            }
        };
        let ip = net.ip(host);
        let client_url = format!("http://{ip}:{client_port}");
        let peer_url = format!("http://{ip}:{peer_port}");
        let mut cmd = net.command(host, "etcd")?;
        // The packaged service's settings must not leak in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["--name", "bench"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .args([
                "--initial-cluster-token",
                &format!("hadr-bench-{client_port}"),
            ])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-level", "warn"]);
        let log = dir.join("etcd.log");
        let proc = net.spawn(cmd, &log)?;
        let e = Etcd {
            endpoint: format!("{ip}:{client_port}"),
            version,
            proc,
            log,
        };
        let start = Instant::now();
        loop {
            if !e.proc.alive() {
                bail!(
                    "etcd exited during start-up:\n{}",
                    proc::tail_file(&e.log, 20)
                );
            }
            if let Ok((200, body)) =
                client::http_get(rt, &e.endpoint, "/health", Duration::from_secs(2))
            {
                if body.contains("true") {
                    return Ok(e);
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "etcd did not answer /health within 60 s:\n{}",
                    proc::tail_file(&e.log, 20)
                );
            }
            proc::sleep(Duration::from_millis(100))?;
        }
    }
}

/// "etcd 3.4.23", or a message saying how to install it.
fn etcd_version() -> Result<String> {
    let out = proc::run(
        Command::new("etcd").arg("--version"),
        Duration::from_secs(10),
        "etcd --version",
    )
    .context(
        "etcd is needed (apt-get install etcd-server; the bench starts its own on free ports)",
    )?;
    let v = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .map(|v| format!("etcd {}", v.trim()))
        .unwrap_or_else(|| out.stdout.trim().to_string());
    Ok(v)
}

/// moto on 127.0.0.1 and a proxy on the bridge's address that lets one
/// request at a time through (moto is not atomic under concurrent
/// conditional PUTs); a bucket, and owner-only credential files.
pub struct S3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_file: PathBuf,
    pub secret_key_file: PathBuf,
    _proxy: Proxy,
    _moto: Moto,
}

impl S3 {
    pub fn start(rt: &Handle, bridge: IpAddr, dir: &Path) -> Result<S3> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let bucket = "hadr-bench".to_string();
        let (moto, proxy) = rt.block_on(async {
            let moto = Moto::start(&MotoOptions::default()).await?;
            moto.create_bucket(&bucket).await?;
            let proxy = Proxy::start_on(bridge, moto.addr, Mode::Serialise).await?;
            anyhow::Ok((moto, proxy))
        })?;
        let access_key_file = dir.join("s3.access");
        let secret_key_file = dir.join("s3.secret");
        for (path, text) in [
            (&access_key_file, "bench"),
            (&secret_key_file, "benchsecret"),
        ] {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(f, "{text}")?;
        }
        Ok(S3 {
            endpoint: format!("http://{}", proxy.addr),
            bucket,
            access_key_file,
            secret_key_file,
            _proxy: proxy,
            _moto: moto,
        })
    }

    /// The `arbiter` setting for an object `key` in the bucket.
    pub fn spec(&self, key: &str) -> String {
        format!(
            "s3://{}/{key}?endpoint={}&region=us-east-1&access_key_file={}&secret_key_file={}",
            self.bucket,
            self.endpoint,
            self.access_key_file.display(),
            self.secret_key_file.display()
        )
    }
}

/// The installed moto version ("moto 5.2.1"), or a message saying how to install it.
pub fn moto_version() -> Result<String> {
    if !hadr_testkit::s3::moto_installed() {
        bail!(
            "moto_server is needed for the s3 arbiter (pip install '{}'), or leave s3 out of --arbiters",
            hadr_testkit::s3::MOTO_PIN
        );
    }
    let out = proc::run(
        Command::new("python3").args(["-c", "import moto; print(moto.__version__)"]),
        Duration::from_secs(30),
        "moto version",
    )?;
    Ok(format!("moto {}", out.stdout.trim()))
}

/// SIGKILL to every process in host `host`'s namespace (a server and its
/// children: Patroni's postgres, or hadr).
pub fn kill_all(net: &Cluster, host: &str) -> Result<usize> {
    let ns = net.host(host)?.netns.clone();
    let out = proc::run_ok(
        Command::new("ip").args(["netns", "pids", &ns]),
        Duration::from_secs(10),
        "ip netns pids",
    )?;
    let me = std::process::id();
    let mut n = 0;
    for pid in out.stdout.split_whitespace() {
        let Ok(pid) = pid.parse::<libc::pid_t>() else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        // SAFETY: kill(2) of a process inside a namespace this program made.
        if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            n += 1;
        }
    }
    Ok(n)
}
