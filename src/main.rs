//! The `radio24` binary: parse the command line, start logging, load settings, dispatch.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use radio24::cli::{Cli, Command, Role};
use radio24::config::{Settings, config_dir};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any HTTPS client is built: the trace exporter's is built right away.
    radio24::install_crypto_provider();
    // What the traces are named after; a health check, run every few seconds by a container
    // runtime, sends none.
    let (process, traced) = match &cli.command {
        Command::Serve { role } => (role.trim().to_ascii_lowercase(), true),
        Command::Migrate => ("migrate".to_owned(), true),
        Command::Healthcheck { .. } => ("healthcheck".to_owned(), false),
    };
    let telemetry = radio24::telemetry::init(
        std::env::var("RADIO24_LOG_FORMAT").is_ok_and(|f| f == "json"),
        &process,
        traced,
    );
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings =
        match config_dir(cli.config_dir.clone()).and_then(|dir| Settings::load(&dir, &env)) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
    if let Command::Serve { role } = &cli.command {
        // The host role has no listeners' sockets; the others hold up to max_clients.
        let serves_listeners = !role.trim().eq_ignore_ascii_case("host");
        raise_open_file_limit(serves_listeners.then_some(settings.broadcast.max_clients));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve { role } => {
                let role: Role = role.parse().map_err(anyhow::Error::msg)?;
                let app = radio24::startup::Application::build(settings, role).await?;
                app.run_until_stopped().await?;
                tracing::info!("radio24 stopped");
                Ok(())
            }
            Command::Migrate => migrate(settings).await,
            Command::Healthcheck { role, url, timeout } => {
                healthcheck(&settings, &role, url, timeout).await
            }
        }
    });
    // Outside the runtime: the exporter's client blocks while it sends the last spans. Tasks
    // still running (a reconnect loop, a blocking read) get a moment, not a veto.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

#[cfg(feature = "api")]
async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let applied = radio24::db::migrate(&settings).await?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        println!(
            "applied {} migration(s): {}",
            applied.len(),
            applied.join(", ")
        );
    }
    Ok(())
}

#[cfg(not(feature = "api"))]
async fn migrate(_settings: Settings) -> anyhow::Result<()> {
    anyhow::bail!("this build has no database (it was compiled without the `api` feature)")
}

/// `radio24 healthcheck`: one line on stdout and exit 0 when `/health` answers 200; else
/// the error's one line (see [`fail`]).
async fn healthcheck(
    settings: &Settings,
    role: &str,
    url: Option<String>,
    timeout: f64,
) -> anyhow::Result<()> {
    let role: Role = role.parse().map_err(anyhow::Error::msg)?;
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
        anyhow::bail!("--timeout must be between 0 and 3600 seconds");
    }
    let url = url.unwrap_or_else(|| radio24::healthcheck::health_url(settings, role));
    let ok = radio24::healthcheck::check(&url, std::time::Duration::from_secs_f64(timeout))
        .await
        .map_err(|e| anyhow::anyhow!("healthcheck: {e}"))?;
    println!("healthy: {ok}");
    Ok(())
}

/// Raises the soft open-file limit to the hard limit: every listener is a socket, and the
/// usual soft limit (1 024) would refuse connections long before `broadcast.max_clients`
/// (the hard limit is the operator's to set). Logged, with a warning when even the hard
/// limit is too low for `max_clients` (when the process serves listeners).
fn raise_open_file_limit(max_clients: Option<usize>) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            // Beyond the clients: the database pool, the host link, stream listeners, files.
            let wanted = max_clients.map_or(0, |clients| clients as u64 + 1024);
            if limit < wanted {
                tracing::warn!(
                    limit,
                    wanted,
                    "the open-file limit is below broadcast.max_clients plus headroom; raise the hard limit (ulimit -Hn, LimitNOFILE)"
                );
            } else {
                tracing::info!(limit, "open-file limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// One line on stderr, exit code 2 (bad config or usage) or 1 (anything else).
fn fail(e: impl Into<anyhow::Error>) -> ExitCode {
    let e: anyhow::Error = e.into();
    eprintln!("radio24: {e:#}");
    ExitCode::FAILURE
}
