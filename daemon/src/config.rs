//! Configuration: `vireod`'s command-line flags and the optional TOML file that may set
//! the same keys. Flags win over the file; the file wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

/// Command-line flags of `vireod`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "vireod",
    about = "Vireo daemon speaking libvirt's remote protocol"
)]
pub struct Args {
    /// State directory (persistent state, and the sockets under DIR/run).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Also listen on this TCP address (read-write, no authentication).
    #[arg(long)]
    pub listen_tcp: Option<SocketAddr>,
    /// Log filter (tracing's env-filter syntax, e.g. `info` or `vireo_daemon=debug`).
    #[arg(long)]
    pub log_level: Option<String>,
    /// TOML configuration file with the keys `state_dir`, `listen_tcp`, `log_level`.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The keys a configuration file may set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// TCP listen address.
    pub listen_tcp: Option<SocketAddr>,
    /// Log filter.
    pub log_level: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// State directory.
    pub state_dir: PathBuf,
    /// TCP listen address, if any.
    pub listen_tcp: Option<SocketAddr>,
    /// Log filter, if set by a flag or the file (otherwise `RUST_LOG`, then `info`).
    pub log_level: Option<String>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// No state directory anywhere.
    #[error("no state directory: pass --state-dir DIR or set state_dir in the configuration file")]
    NoStateDir,
}

impl FileConfig {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl Config {
    /// Merges flags over the file (if any).
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Ok(Config {
            state_dir: args
                .state_dir
                .clone()
                .or(file.state_dir)
                .ok_or(ConfigError::NoStateDir)?,
            listen_tcp: args.listen_tcp.or(file.listen_tcp),
            log_level: args.log_level.clone().or(file.log_level),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(
            &f,
            "state_dir = \"/from/file\"\nlog_level = \"debug\"\nlisten_tcp = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "vireod",
            "--config",
            f.to_str().unwrap(),
            "--log-level",
            "warn",
        ]);
        let c = Config::from_args(&args).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/from/file"));
        assert_eq!(c.log_level.as_deref(), Some("warn"));
        assert_eq!(c.listen_tcp, Some("127.0.0.1:1".parse().unwrap()));
        let args = Args::parse_from([
            "vireod",
            "--config",
            f.to_str().unwrap(),
            "--state-dir",
            "/x",
        ]);
        assert_eq!(
            Config::from_args(&args).unwrap().state_dir,
            PathBuf::from("/x")
        );
    }

    #[test]
    fn unknown_keys_and_missing_state_dir_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(&f, "bogus = 1\n").unwrap();
        let args = Args::parse_from(["vireod", "--config", f.to_str().unwrap()]);
        assert!(matches!(
            Config::from_args(&args),
            Err(ConfigError::Parse { .. })
        ));
        let args = Args::parse_from(["vireod"]);
        assert!(matches!(
            Config::from_args(&args),
            Err(ConfigError::NoStateDir)
        ));
    }
}
