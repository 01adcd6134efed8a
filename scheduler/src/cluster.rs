//! A PostgreSQL cluster of one's own: `initdb`'d on first use, started and stopped with
//! `pg_ctl`, listening only on a Unix socket in its folder (`constellation up` runs on one,
//! and the resilience tests stop and restart one under running workers).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What can go wrong preparing, starting or stopping a private cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No `initdb` and `pg_ctl` were found.
    #[error(
        "no PostgreSQL server binaries found (install postgresql and postgis, or set DATABASE_URL)"
    )]
    NoBinaries,
    /// A program could not be run at all.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The cluster's folder could not be created.
    #[error("cannot create {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A program ran and failed; `detail` is its error output on one line.
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
}

/// How [`PrivateCluster::stop`] stops the server (`pg_ctl -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Clients are disconnected and the server shuts down cleanly.
    Fast,
    /// The server quits at once, clients cut off mid-statement, as in a crash.
    Immediate,
}

/// A cluster in a folder: `data/` holds it, `run/` its socket, `server.log` its log.
#[derive(Debug)]
pub struct PrivateCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Run the server as this user (initdb refuses root).
    user: Option<String>,
}

impl PrivateCluster {
    /// Prepares the cluster in `dir`, running `initdb` when `dir` holds none yet; does not
    /// start it. Run as root, the folder is handed to the `postgres` user, which then runs
    /// every server program.
    pub fn init(dir: &Path) -> Result<Self, ClusterError> {
        let cluster = Self {
            dir: dir.to_path_buf(),
            bin: find_bin()?,
            user: is_root().then(|| "postgres".to_string()),
        };
        let run = cluster.dir.join("run");
        std::fs::create_dir_all(&run)
            .map_err(|source| ClusterError::Folder { path: run, source })?;
        if let Some(user) = &cluster.user {
            let out = Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(&cluster.dir)
                .output()
                .map_err(|source| ClusterError::Spawn {
                    program: "chown".into(),
                    source,
                })?;
            check(
                &format!("handing {} to {user}", cluster.dir.display()),
                &out,
            )?;
        }
        let data = cluster.dir.join("data");
        if !data.join("PG_VERSION").is_file() {
            let out = cluster.run(
                "initdb",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "--auth=trust".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                    "--no-instructions".as_ref(),
                ],
            )?;
            check("initdb", &out)?;
        }
        Ok(cluster)
    }

    /// Starts the (stopped) server with these extra settings (`-c name=value`) and waits
    /// until it accepts connections.
    pub fn start(&self, settings: &[&str]) -> Result<(), ClusterError> {
        let mut options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}'",
            self.dir.join("run").display()
        );
        for setting in settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let data = self.dir.join("data");
        let log = self.log_path();
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        )?;
        check(
            &format!("starting the private PostgreSQL (see {})", log.display()),
            &out,
        )
    }

    /// Stops the server and waits until it is down.
    pub fn stop(&self, mode: StopMode) -> Result<(), ClusterError> {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        let data = self.dir.join("data");
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        check("stopping the private PostgreSQL", &out)
    }

    /// A connection string for the cluster's `postgres` database, over its socket.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost/postgres?host={}",
            self.dir.join("run").display()
        )
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<Output, ClusterError> {
        let path = self.bin.join(program);
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        command
            .args(args)
            .output()
            .map_err(|source| ClusterError::Spawn {
                program: program.into(),
                source,
            })
    }
}

/// The server binaries: `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin() -> Result<PathBuf, ClusterError> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.sort();
    found
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .ok_or(ClusterError::NoBinaries)
}

/// Whether this process runs as root (its effective uid, from /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn check(what: &str, out: &Output) -> Result<(), ClusterError> {
    if out.status.success() {
        return Ok(());
    }
    Err(ClusterError::Failed {
        what: what.to_string(),
        detail: String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace('\n', " "),
    })
}
