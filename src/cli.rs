//! The command line: `radio24 serve [--role api|host|all] [--config-dir DIR]`,
//! `radio24 migrate`, `radio24 healthcheck [--role ROLE] [--url URL]`, `radio24 --version`.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "radio24",
    version,
    about = "Radio24: a 24-hour AI radio station in one binary",
    long_about = "Radio24: a 24-hour AI radio station in one binary.\n\n\
        An AI host writes and voices a programme around the clock; listeners hear it, read \
        live captions and call in.\n\n\
        Settings come from config/default.toml, config/$RADIO24_ENV.toml, RADIO24__SECTION__KEY \
        environment variables and the seed's names (DATABASE_URL, POSTGRES_HOST, OPENAI_API_KEY, \
        PORT, ...)."
)]
pub struct Cli {
    /// Folder holding default.toml and the $RADIO24_ENV.toml overlays
    /// [default: $RADIO24_CONFIG_DIR, else ./config]
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the station (or one half of it).
    Serve {
        /// Which modules this process runs:
        ///   all  — API and host in one process, talking in-process (default; a laptop).
        ///   api  — listener and operator routes, broadcast WebSocket, the database;
        ///          reaches the host over HTTP at bus.host_url (port 8080).
        ///   host — the on-air engine (scripts, voice, playout); no database (port 8082).
        #[arg(long, default_value = "all", value_name = "ROLE", verbatim_doc_comment)]
        role: String,
    },
    /// Apply pending database migrations (PostgreSQL under an advisory lock, or the SQLite
    /// file) and exit.
    Migrate,
    /// Check a running process (container health checks): GET its /health, exit 0 on 200
    /// (printing one line), non-zero with one line on anything else. The port is the one
    /// `serve` takes with the same settings: PORT, else server.api_port or server.host_port
    /// by --role.
    Healthcheck {
        /// The role of the process to check (picks the port as `serve --role` does).
        #[arg(long, default_value = "all", value_name = "ROLE")]
        role: String,
        /// Check this URL instead [default: http://127.0.0.1:<port>/health].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        timeout: f64,
    },
}

/// Which modules a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Host,
    All,
}

impl Role {
    /// The port a process of this role listens on: `server.port` (`PORT`) whatever the
    /// role, else `server.host_port` for the host and `server.api_port` for the others.
    pub fn listen_port(self, server: &crate::config::ServerSettings) -> u16 {
        server.port.unwrap_or(match self {
            Role::Host => server.host_port,
            Role::Api | Role::All => server.api_port,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Host => "host",
            Role::All => "all",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "api" => Ok(Role::Api),
            "host" => Ok(Role::Host),
            "all" => Ok(Role::All),
            _ => Err(format!("unknown role {s:?}; valid roles: api, host, all")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_unknown_ones_list_the_valid_ones() {
        assert_eq!("API".parse::<Role>(), Ok(Role::Api));
        assert_eq!("all".parse::<Role>(), Ok(Role::All));
        let err = "dj".parse::<Role>().unwrap_err();
        assert_eq!(err, "unknown role \"dj\"; valid roles: api, host, all");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::parse_from(["radio24", "serve", "--role", "host", "--config-dir", "x"]);
        assert!(matches!(cli.command, Command::Serve { ref role } if role == "host"));
        assert_eq!(cli.config_dir, Some(PathBuf::from("x")));
        let cli = Cli::parse_from(["radio24", "healthcheck", "--role", "host"]);
        assert!(matches!(
            cli.command,
            Command::Healthcheck { ref role, url: None, timeout } if role == "host" && timeout == 2.0
        ));
    }
}
