//! The `hadr` binary: its offline commands, and servers on data directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{Result, Server};

/// The `hadr` binary under test (or benchmarked).
#[derive(Clone, Debug)]
pub struct Hadr {
    bin: PathBuf,
}

impl Hadr {
    /// The binary at `bin`.
    pub fn new(bin: impl Into<PathBuf>) -> Hadr {
        Hadr { bin: bin.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.bin
    }

    /// A command running it with `args`, its output captured, with the
    /// kit's admin token in `HADR_ADMIN_TOKEN` (for takeover, cluster,
    /// resource… against the kit's servers).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .stdin(Stdio::null())
            .env("NO_COLOR", "1")
            .env(crate::ADMIN_TOKEN_ENV, crate::admin_token());
        c
    }

    /// Run `hadr ARGS`; an error unless it exits 0 (with what it printed).
    pub fn run(&self, what: &str, cmd: &mut Command) -> Result<Output> {
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// `hadr init --data DIR`.
    pub fn init(&self, dir: &Path) -> Result<()> {
        let mut c = self.command(&["init", "--data"]);
        c.arg(dir);
        self.run("hadr init", &mut c).map(|_| ())
    }

    /// `hadr clone --from FROM --data DIR`; returns how long it took and what it printed.
    pub fn clone_to(&self, from: &str, dir: &Path) -> Result<(Duration, String)> {
        let mut c = self.command(&["clone", "--from", from, "--data"]);
        c.arg(dir);
        let t = Instant::now();
        let out = self.run("hadr clone", &mut c)?;
        Ok((
            t.elapsed(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// `hadr verify --node A --node B`: the two running nodes (admin
    /// addresses) must be identical at one LSN.
    pub fn verify_nodes(&self, a: &str, b: &str) -> Result<()> {
        let mut c = self.command(&["verify", "--timeout", "30s", "--node", a, "--node", b]);
        let out = self.run("hadr verify", &mut c)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.contains("identical") {
            bail!("hadr verify did not say identical: {stdout}");
        }
        Ok(())
    }

    /// A server on a new temporary data directory made by `hadr init`,
    /// started with `extra` flags; it answers on its PostgreSQL port.
    pub fn start(&self, extra: &[&str]) -> Result<Server> {
        self.start_with(extra.iter().map(|s| s.to_string()).collect())
    }

    /// [`Hadr::start`] with owned flags.
    pub fn start_with(&self, extra: Vec<String>) -> Result<Server> {
        let tmp = tempfile::tempdir().context("creating a temporary directory")?;
        let dir = tmp.path().join("data");
        self.init(&dir)?;
        let mut s = Server::new(self, dir, extra).keep(tmp);
        s.spawn()?;
        Ok(s)
    }

    /// A server on an existing data directory (e.g. made by `hadr clone`), started.
    pub fn on_dir(&self, dir: PathBuf, extra: &[String]) -> Result<Server> {
        let mut s = Server::new(self, dir, extra.to_vec());
        s.spawn()?;
        Ok(s)
    }
}
