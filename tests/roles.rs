//! Builds with one role compiled in (`--no-default-features --features api|host`) serve
//! that role and refuse the others with a clear message.
#![cfg(not(all(feature = "api", feature = "host")))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use radio24::cli::Role;
use radio24::config::Settings;
use radio24::startup::Application;

/// How long the test waits for the server to start, answer or stop.
const PATIENCE: Duration = Duration::from_secs(15);

fn settings(data: &std::path::Path) -> Settings {
    radio24::install_crypto_provider();
    let env: HashMap<String, String> = [
        ("RADIO24__SERVER__PORT", "0".to_owned()),
        ("RADIO24__SERVER__WORKERS", "1".to_owned()),
        ("RADIO24__BUS__TOKEN", "t".to_owned()),
        ("RADIO24__AUTH__ADMIN_TOKEN", "a".to_owned()),
        (
            "RADIO24__DATABASE__SQLITE_PATH",
            data.join("r.db").to_string_lossy().into_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    Settings::load(&dir, &env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_compiled_role_is_served() {
    let data = tempfile::tempdir().unwrap();
    let (served, refused) = if cfg!(feature = "api") {
        (Role::Api, [Role::Host, Role::All])
    } else {
        (Role::Host, [Role::Api, Role::All])
    };
    for role in refused {
        let err = Application::build(settings(data.path()), role)
            .await
            .err()
            .expect("a role that is not compiled in is refused");
        let msg = err.to_string();
        assert!(msg.contains("not in this build"), "{msg}");
        assert!(
            msg.contains(served.as_str()),
            "names what it does serve: {msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    let app = tokio::time::timeout(PATIENCE, Application::build(settings(data.path()), served))
        .await
        .unwrap_or_else(|_| panic!("{} not built after {PATIENCE:?}", served.as_str()))
        .unwrap();
    let port = app.port();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let health: serde_json::Value = tokio::time::timeout(PATIENCE, async {
        reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
    .await
    .unwrap_or_else(|_| panic!("GET /health: no answer after {PATIENCE:?}"));
    assert_eq!(health["role"], served.as_str());
    tokio::time::timeout(PATIENCE, handle.stop(false))
        .await
        .unwrap_or_else(|_| panic!("the server not stopped after {PATIENCE:?}"));
}
