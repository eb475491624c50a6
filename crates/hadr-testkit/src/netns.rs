//! A cluster network of Linux network namespaces, for failure tests and the
//! benchmark: one namespace per host (node A, node B, the arbiter's host, …),
//! each attached by a veth pair to a bridge in the root namespace, so that
//!
//! - the test process (root namespace) reaches every host through the bridge,
//!   and a multi-host client (`host=A,B`) runs in the test itself;
//! - a host can be black-holed (it and everything it sends vanish silently,
//!   no reset, no ICMP: a pulled cable or a dead machine), and one pair of
//!   hosts can be cut from each other while both keep the rest.
//!
//! Faults are nftables rules in the `bridge` family on the bridge's ports
//! (one table per cluster, `bridge hadr_nN`), replaced atomically (`nft -f`)
//! on every change. Drop deletes the table, the bridge, the veths and the
//! namespaces, also while a test panics.
//!
//! Addresses: each [`Cluster`] takes a free subnet `10.78.N.0/24` (N from
//! 1 to 254, starting at one derived from the pid) and holds it by an
//! exclusive `flock` on `/tmp/hadr-netns-N.lock` for its lifetime, so test
//! binaries and threads running at once never share one; leftovers of a run
//! that was killed (namespaces, links, the nft table, processes inside its
//! namespaces) are removed when the subnet is taken again. The bridge has
//! `10.78.N.1`, host k (0-based, in the order given) `10.78.N.(10+k)`.
//! tests/netfault.rs uses 10.77.x: no overlap.
//!
//! Needs root, iproute2 (`ip netns`, `ip link … type bridge|veth`) and
//! nftables (`nft`, with the kernel's bridge family).
//!
//! ```no_run
//! # async fn f(hadr: hadr_testkit::Hadr) -> hadr_testkit::Result<()> {
//! use hadr_testkit::netns::Cluster;
//! let net = Cluster::new(&["a", "b", "arb"])?;
//! let a = net.server(&hadr, "a", "/tmp/x/a".into(), vec![]); // not started
//! net.cut("a", "b")?;        // A and B lose each other, both still reach arb
//! net.black_hole("a")?;      // A vanishes for everyone
//! net.heal_all()?;
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::{Hadr, Result, Server};

/// PostgreSQL port of a [`Cluster::server`] (every host has its own stack).
pub const PG_PORT: u16 = 5432;
/// Admin port of a [`Cluster::server`].
pub const ADMIN_PORT: u16 = 8432;
/// Suggested replication port (`--hadr-local IP:9432`).
pub const HADR_PORT: u16 = 9432;

/// First octets of every cluster's subnet.
const PREFIX: [u8; 2] = [10, 78];

/// One host: a namespace and its port on the bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// The name the test gave it ("a", "b", "arb").
    pub name: String,
    /// The namespace (`ip netns exec NETNS …`).
    pub netns: String,
    /// Its address on the cluster network.
    pub ip: Ipv4Addr,
    /// The bridge's port (root end of the veth pair).
    port: String,
}

#[derive(Default)]
struct Faults {
    holes: BTreeSet<String>,
    cuts: BTreeSet<(String, String)>,
}

/// The cluster network; see the module doc. Dropping it removes everything.
pub struct Cluster {
    n: u8,
    bridge: String,
    hosts: Vec<Host>,
    faults: Mutex<Faults>,
    _lock: File,
}

impl Cluster {
    /// A bridge and one namespace per name (at most 9 hosts, names of at
    /// most 6 of `[a-z0-9]`), every link up, no fault.
    pub fn new(names: &[&str]) -> Result<Cluster> {
        if names.is_empty() || names.len() > 9 {
            bail!("a cluster has 1 to 9 hosts, not {}", names.len());
        }
        for (i, name) in names.iter().enumerate() {
            if name.is_empty()
                || name.len() > 6
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                || names[..i].contains(name)
            {
                bail!("bad or repeated host name {name:?} (1–6 of [a-z0-9])");
            }
        }
        let (n, lock) = take_subnet()?;
        remove_leftovers(n);
        let hosts: Vec<Host> = names
            .iter()
            .enumerate()
            .map(|(k, name)| Host {
                name: name.to_string(),
                netns: format!("hadr{n}-{name}"),
                ip: Ipv4Addr::new(PREFIX[0], PREFIX[1], n, 10 + k as u8),
                port: format!("hv{n}x{k}"),
            })
            .collect();
        let net = Cluster {
            n,
            bridge: format!("hb{n}"),
            hosts,
            faults: Mutex::default(),
            _lock: lock,
        };
        // From here on Drop cleans up whatever was made.
        net.build().context("building the cluster network")?;
        Ok(net)
    }

    fn build(&self) -> Result<()> {
        let br = &self.bridge;
        ip(&["link", "add", br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", self.root_ip()), "dev", br])?;
        ip(&["link", "set", br, "up"])?;
        for h in &self.hosts {
            let inner = h.port.replacen("hv", "hn", 1);
            ip(&["netns", "add", &h.netns])?;
            ip(&[
                "link", "add", &h.port, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &h.netns])?;
            ip(&["link", "set", &h.port, "master", br])?;
            ip(&["link", "set", &h.port, "up"])?;
            let ns = |args: &[&str]| {
                let mut v = vec!["netns", "exec", &h.netns, "ip"];
                v.extend_from_slice(args);
                ip(&v)
            };
            ns(&["addr", "add", &format!("{}/24", h.ip), "dev", &inner])?;
            ns(&["link", "set", &inner, "up"])?;
            ns(&["link", "set", "lo", "up"])?;
        }
        self.apply(&self.faults())
    }

    /// The test process's own address on the cluster network (the bridge's).
    pub fn root_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.n, 1)
    }

    /// The hosts, in the order given.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Result<&Host> {
        match self.hosts.iter().find(|h| h.name == name) {
            Some(h) => Ok(h),
            None => bail!("no host {name:?} in this cluster"),
        }
    }

    /// Address of host `name`; panics on a name the test did not create
    /// (a typo in the test itself).
    pub fn ip(&self, name: &str) -> Ipv4Addr {
        match self.host(name) {
            Ok(h) => h.ip,
            Err(e) => panic!("{e}"),
        }
    }

    /// `IP:port` of host `name`.
    pub fn addr(&self, name: &str, port: u16) -> String {
        format!("{}:{port}", self.ip(name))
    }

    /// The name of host `name`'s interface on the cluster network (inside
    /// its namespace), e.g. for a virtual IP added there.
    pub fn interface(&self, name: &str) -> Result<String> {
        Ok(self.host(name)?.port.replacen("hv", "hn", 1))
    }

    /// The IPv4 addresses on host `name`'s interfaces (`ip -n NS -o -4
    /// addr show`), loopback left out.
    pub fn addresses(&self, name: &str) -> Result<Vec<Ipv4Addr>> {
        let h = self.host(name)?;
        let out = Command::new("ip")
            .args(["-n", &h.netns, "-o", "-4", "addr", "show"])
            .stderr(Stdio::null())
            .output()
            .context("running ip (install iproute2)")?;
        if !out.status.success() {
            bail!("ip -n {} addr show failed", h.netns);
        }
        Ok(parse_addresses(&String::from_utf8_lossy(&out.stdout)))
    }

    /// kill -9 every process inside host `name`'s namespace (what a host
    /// that loses power does to them; its addresses stay, as kernel state of
    /// the namespace, until someone removes them or the host "reboots").
    pub fn kill_all(&self, name: &str) -> Result<()> {
        kill_netns(&self.host(name)?.netns);
        Ok(())
    }

    /// Start a one-member etcd (`bin`, see [`etcd_binary`]) inside host
    /// `name` on its own client and peer ports (never the packaged
    /// service's 2379/2380), data and log under `dir`, and wait until it is
    /// healthy; killed when the handle drops.
    pub fn start_etcd(
        &self,
        name: &str,
        bin: &Path,
        dir: &Path,
        client_port: u16,
        peer_port: u16,
    ) -> Result<Proc> {
        let ip = self.host(name)?.ip;
        let client = format!("http://{ip}:{client_port}");
        let peer = format!("http://{ip}:{peer_port}");
        let mut c = self.command(name, bin)?;
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                c.env_remove(k);
            }
        }
        c.arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-level", "warn"]);
        let p = self.spawn(c, &dir.join("etcd.log"))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::new(ip.into(), client_port);
        loop {
            if etcd_healthy(addr) {
                return Ok(p);
            }
            if !p.alive() || std::time::Instant::now() > deadline {
                bail!("etcd did not start: {}", p.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A command running `program` inside host `name`'s namespace (`ip netns
    /// exec`, which execs it: the child's pid is the program's, so signals
    /// reach it directly).
    pub fn command(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let h = self.host(name)?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &h.netns])
            .arg(program)
            .stdin(Stdio::null());
        Ok(c)
    }

    /// Run `program ARGS` inside host `host`'s namespace, killed after
    /// `timeout` (a frozen node never answers); its stdout and stderr, or an
    /// error naming them. It gets the kit's admin token in
    /// `HADR_ADMIN_TOKEN`, which the `hadr` commands run this way need
    /// against the kit's servers.
    pub fn run_inside(
        &self,
        host: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String> {
        let mut c = self.command(host, program)?;
        c.args(args)
            .env("NO_COLOR", "1")
            .env(crate::ADMIN_TOKEN_ENV, crate::admin_token())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        let deadline = std::time::Instant::now() + timeout;
        while child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{args:?} on {host} did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("{args:?} on {host}: {text}");
        }
        Ok(text)
    }

    /// Start `cmd` (made by [`Cluster::command`]) with its output appended to
    /// `log`; the handle kills it when dropped.
    pub fn spawn(&self, mut cmd: Command, log: &Path) -> Result<Proc> {
        let f = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = cmd
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        Ok(Proc {
            child: Mutex::new(Some(child)),
            log: log.to_path_buf(),
        })
    }

    /// A `hadr server` on host `name` (not started): it runs inside the
    /// namespace, listens on every address there ([`PG_PORT`],
    /// [`ADMIN_PORT`]; its loopback too, so the CLI run inside reaches it
    /// while the host is black-holed), and the test reaches it at the host's
    /// address. Kill, SIGSTOP/SIGCONT and restarts work as for any [`Server`].
    pub fn server(&self, hadr: &Hadr, name: &str, dir: PathBuf, extra: Vec<String>) -> Server {
        let h = self.host(name).unwrap_or_else(|e| panic!("{e}"));
        Server::on_ports(hadr, dir, &h.ip.to_string(), PG_PORT, ADMIN_PORT, extra)
            .in_netns(&h.netns)
    }

    /// Run `f` on a new thread inside host `name`'s network namespace and
    /// return its result. Sockets `f` creates stay in that namespace for
    /// their whole life, whichever thread uses them later: a probe can reach
    /// a black-holed host through its loopback.
    pub fn enter<T: Send>(&self, name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = format!("/run/netns/{}", self.host(name)?.netns);
        std::thread::scope(|s| {
            s.spawn(|| -> Result<T> {
                let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
                // SAFETY: setns(2) on a descriptor we own; it changes only
                // this thread's network namespace, and the thread ends here.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns {path}: {}", std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A TCP connection to `addr` made from inside host `name` (see
    /// [`Cluster::enter`]), non-blocking, ready for
    /// `tokio::net::TcpStream::from_std`.
    pub fn connect_from(
        &self,
        name: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpStream> {
        let s = self.enter(name, || TcpStream::connect_timeout(&addr, timeout))??;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }

    /// Host `name` vanishes: every frame to or from it is dropped silently,
    /// for the other hosts and the test process alike. Processes inside it
    /// still reach its own address and loopback.
    pub fn black_hole(&self, name: &str) -> Result<()> {
        self.host(name)?;
        let mut f = self.faults();
        f.holes.insert(name.to_string());
        self.apply(&f)
    }

    /// Undo [`Cluster::black_hole`] of host `name`.
    pub fn heal(&self, name: &str) -> Result<()> {
        self.host(name)?;
        let mut f = self.faults();
        f.holes.remove(name);
        self.apply(&f)
    }

    /// Hosts `a` and `b` lose each other (silently, both ways); both keep
    /// every other host and the test process.
    pub fn cut(&self, a: &str, b: &str) -> Result<()> {
        let pair = self.pair(a, b)?;
        let mut f = self.faults();
        f.cuts.insert(pair);
        self.apply(&f)
    }

    /// Undo [`Cluster::cut`] of `a` and `b`.
    pub fn heal_cut(&self, a: &str, b: &str) -> Result<()> {
        let pair = self.pair(a, b)?;
        let mut f = self.faults();
        f.cuts.remove(&pair);
        self.apply(&f)
    }

    /// Remove every fault.
    pub fn heal_all(&self) -> Result<()> {
        let mut f = self.faults();
        *f = Faults::default();
        self.apply(&f)
    }

    fn pair(&self, a: &str, b: &str) -> Result<(String, String)> {
        self.host(a)?;
        self.host(b)?;
        if a == b {
            bail!("cannot cut {a} from itself");
        }
        Ok(if a < b {
            (a.into(), b.into())
        } else {
            (b.into(), a.into())
        })
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn table(&self) -> String {
        format!("hadr_n{}", self.n)
    }

    /// Replace the table's rules by those for `f`, in one nft transaction.
    fn apply(&self, f: &Faults) -> Result<()> {
        let port = |name: &str| self.host(name).map(|h| h.port.clone());
        let (mut fwd, mut input, mut output) = (Vec::new(), Vec::new(), Vec::new());
        for h in &f.holes {
            let p = port(h)?;
            fwd.push(format!("iifname \"{p}\" drop"));
            fwd.push(format!("oifname \"{p}\" drop"));
            input.push(format!("iifname \"{p}\" drop"));
            output.push(format!("oifname \"{p}\" drop"));
        }
        for (a, b) in &f.cuts {
            let (pa, pb) = (port(a)?, port(b)?);
            fwd.push(format!("iifname \"{pa}\" oifname \"{pb}\" drop"));
            fwd.push(format!("iifname \"{pb}\" oifname \"{pa}\" drop"));
        }
        let chain = |name: &str, hook: &str, rules: &[String]| {
            format!(
                "  chain {name} {{\n    type filter hook {hook} priority 0; policy accept;\n{}  }}\n",
                rules.iter().map(|r| format!("    {r}\n")).collect::<String>()
            )
        };
        let t = self.table();
        // Declaring the table first makes the flush valid on the first call.
        let script = format!(
            "table bridge {t} {{\n}}\nflush table bridge {t}\ntable bridge {t} {{\n{}{}{}}}\n",
            chain("fwd_drop", "forward", &fwd),
            chain("in_drop", "input", &input),
            chain("out_drop", "output", &output),
        );
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft (install nftables)")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft -f failed: {}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Processes left inside (a resource a node supervised, a killed
        // node's children) would outlive their namespace otherwise.
        for h in &self.hosts {
            kill_netns(&h.netns);
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "bridge", &self.table()])
            .stderr(Stdio::null())
            .status();
        for h in &self.hosts {
            quiet_ip(&["link", "del", &h.port]);
            quiet_ip(&["netns", "del", &h.netns]);
        }
        quiet_ip(&["link", "del", &self.bridge]);
    }
}

/// A process started by [`Cluster::spawn`]; killed when dropped.
pub struct Proc {
    child: Mutex<Option<Child>>,
    log: PathBuf,
}

impl Proc {
    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// kill -9 (and reap it).
    pub fn kill9(&self) {
        if let Some(mut c) = self.child().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: it freezes, its sockets stay open.
    pub fn sigstop(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// SIGCONT after [`Proc::sigstop`].
    pub fn sigcont(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        match self.child().as_ref() {
            Some(c) => crate::server::signal(c, sig),
            None => bail!("the process is not running"),
        }
    }

    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        matches!(self.child().as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Take a free subnet number and hold its lock file.
fn take_subnet() -> Result<(u8, File)> {
    let start = std::process::id() % 254;
    for i in 0..254u32 {
        let n = ((start + i) % 254 + 1) as u8;
        let path = format!("/tmp/hadr-netns-{n}.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {path}"))?;
        // SAFETY: flock(2) on a descriptor we own; released when it closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok((n, f));
        }
    }
    bail!("all 254 subnets 10.78.N.0/24 are taken by running tests")
}

/// Remove what a killed run left for subnet `n` (we hold its lock, so
/// nothing of it is in use): processes in its namespaces, the namespaces,
/// links, the nft table.
fn remove_leftovers(n: u8) {
    let prefix = format!("hadr{n}-");
    let stale: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    for ns in &stale {
        kill_netns(ns);
        quiet_ip(&["netns", "del", ns]);
    }
    let _ = Command::new("nft")
        .args(["delete", "table", "bridge", &format!("hadr_n{n}")])
        .stderr(Stdio::null())
        .status();
    for k in 0..9 {
        if Path::new(&format!("/sys/class/net/hv{n}x{k}")).exists() {
            quiet_ip(&["link", "del", &format!("hv{n}x{k}")]);
        }
    }
    if Path::new(&format!("/sys/class/net/hb{n}")).exists() {
        quiet_ip(&["link", "del", &format!("hb{n}")]);
    }
}

/// The etcd binary: `$HADR_ETCD_BIN`, else `etcd` on the PATH or in
/// /usr/bin (Debian's etcd-server); None if there is none.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HADR_ETCD_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// `GET /health` answered `"health":"true"` (the member has a leader).
fn etcd_healthy(addr: SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// kill -9 every process inside namespace `ns` (one of ours).
fn kill_netns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        let me = std::process::id() as libc::pid_t;
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            // Never this process (one of its threads may have entered).
            if let Ok(pid) = pid.parse::<libc::pid_t>() {
                if pid == me {
                    continue;
                }
                // SAFETY: kill(2) of a process inside a namespace this
                // cluster made (or a stale one of its subnet).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The addresses in `ip -o -4 addr show` output, loopback's left out.
fn parse_addresses(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let dev = w.nth(1)?;
            if dev == "lo" {
                return None;
            }
            let cidr = w.skip_while(|t| *t != "inet").nth(1)?;
            cidr.split('/').next()?.parse().ok()
        })
        .collect()
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn quiet_ip(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_ip_o_output() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                    2: hn5x0    inet 10.78.5.10/24 scope global hn5x0\\       valid_lft forever\n\
                    2: hn5x0    inet 10.78.5.100/24 scope global secondary hn5x0\\       valid_lft forever\n";
        assert_eq!(
            parse_addresses(text),
            vec![Ipv4Addr::new(10, 78, 5, 10), Ipv4Addr::new(10, 78, 5, 100)]
        );
    }
}
