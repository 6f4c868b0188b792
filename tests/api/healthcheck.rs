//! `radio24 healthcheck`, the real binary, against running roles and a closed port: it finds
//! the port from the same settings as `serve` (PORT, or the role's port), exits 0 with one
//! line on 200, and non-zero with one line otherwise.

use std::process::Output;

use radio24::cli::Role;

use crate::helpers::{PATIENCE, TestApp};

/// Runs `radio24 healthcheck <args>` with only `env` (no config folder: the built-in
/// defaults, as in a container without one).
async fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_radio24"));
    command
        .arg("healthcheck")
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .current_dir(cwd.path())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .unwrap_or_else(|_| panic!("radio24 healthcheck {args:?} still running after {PATIENCE:?}"))
        .unwrap()
}

fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    text.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_roles_pass_on_the_port_serve_would_take() {
    let host = TestApp::spawn(Role::Host, &[]).await;
    let api = TestApp::spawn(Role::Api, &[("RADIO24__BUS__HOST_URL", &host.address)]).await;
    let (host_port, api_port) = (host.port.to_string(), api.port.to_string());

    // PORT, whatever the role (Cloud Run).
    let out = healthcheck(&[], &[("PORT", &api_port)]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line(&out.stdout);
    assert!(
        line.contains(&format!("127.0.0.1:{api_port}/health")) && line.contains("200"),
        "{line}"
    );

    // The role's own port, from RADIO24__SERVER__*_PORT.
    let out = healthcheck(
        &["--role", "host"],
        &[("RADIO24__SERVER__HOST_PORT", &host_port)],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = healthcheck(
        &["--role", "api"],
        &[("RADIO24__SERVER__API_PORT", &api_port)],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Listening everywhere, as in a container (production.toml's 0.0.0.0, Fly's ::).
    for bind in ["0.0.0.0", "::"] {
        let out = healthcheck(
            &["--role", "host"],
            &[
                ("RADIO24__SERVER__BIND", bind),
                ("RADIO24__SERVER__HOST_PORT", &host_port),
            ],
        )
        .await;
        assert!(
            out.status.success(),
            "bind {bind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // --url.
    let out = healthcheck(&["--url", &host.url("/health")], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The wrong role's port is another process (or none): the API's port is not the host's.
    let out = healthcheck(&["--url", &api.url("/no-such-page")], &[]).await;
    assert!(!out.status.success());
    let line = one_line(&out.stderr);
    assert!(line.contains("404"), "{line}");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_fails_with_one_line() {
    // A port that was just free: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = healthcheck(&[], &[("PORT", &port)]).await;
    assert!(!out.status.success(), "a closed port is not healthy");
    let line = one_line(&out.stderr);
    assert!(
        line.starts_with("radio24: healthcheck:")
            && line.contains(&port)
            && line.contains("cannot connect"),
        "{line}"
    );
    assert!(out.stdout.is_empty());

    // Bad settings fail the same way, naming the key.
    let out = healthcheck(&[], &[("PORT", "eighty")]).await;
    assert!(!out.status.success());
    assert!(one_line(&out.stderr).contains("server.port"));
}
