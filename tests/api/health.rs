use radio24::cli::Role;
use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_role_version_store_and_host_link() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["role"], "all");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["store"]["backend"], "sqlite");
    assert_eq!(body["store"]["ok"], true);
    assert_eq!(body["host_link"]["transport"], "in_process");
    let ready = app.wait_for_status("/ready", 200).await;
    assert_eq!(ready["ready"], true);
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["host_link"]["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_answer_json_404() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let resp = app.get("/no/such/route").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_answer_head_without_a_body() {
    let app = TestApp::spawn(Role::All, &[]).await;
    app.wait_for_status("/ready", 200).await;
    for path in ["/health", "/ready"] {
        let resp = app
            .client
            .head(app.url(path))
            .timeout(crate::helpers::PATIENCE)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "HEAD {path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "HEAD {path}"
        );
        assert!(
            resp.bytes().await.unwrap().is_empty(),
            "HEAD {path} has no body"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_admin_token_is_kept_in_a_private_file_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/admin-token");
    let first = radio24::api::admin_token(None, &file).unwrap();
    let second = radio24::api::admin_token(None, &file).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(first.expose_secret().len(), 64);
    assert_eq!(first.expose_secret(), second.expose_secret());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "token file must not be readable by others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_refuse_to_start_without_a_bus_token() {
    let settings = crate::helpers::settings(&[("RADIO24__BUS__TOKEN", " ")]);
    let err = radio24::startup::Application::build(settings, Role::Host)
        .await
        .err()
        .expect("host without a bus token must not start");
    assert!(err.to_string().contains("bus.token"), "{err}");
}
