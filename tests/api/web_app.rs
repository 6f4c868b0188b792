//! The web app at `/`: the built files when `server.web_dir` holds them (after every API
//! route, which no file shadows), a page saying how to build it when not.

use radio24::cli::Role;
use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_web_app_is_served_at_the_root_behind_the_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>listener page</h1>").unwrap();
    std::fs::create_dir_all(dir.path().join("studio")).unwrap();
    std::fs::write(dir.path().join("studio/index.html"), "<h1>studio</h1>").unwrap();
    std::fs::create_dir_all(dir.path().join("_next")).unwrap();
    std::fs::write(dir.path().join("_next/app.js"), "console.log(1)").unwrap();
    std::fs::write(dir.path().join(".env"), "SECRET=1").unwrap();
    // An API path as a file: the API answers it, not the file.
    std::fs::create_dir_all(dir.path().join("v1")).unwrap();
    std::fs::write(dir.path().join("v1/channels"), "shadow").unwrap();
    let web_dir = dir.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn(Role::All, &[("RADIO24__SERVER__WEB_DIR", &web_dir)]).await;

    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.text().await.unwrap(), "<h1>listener page</h1>");
    assert_eq!(
        app.get("/studio/").await.text().await.unwrap(),
        "<h1>studio</h1>"
    );
    let no_slash = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/studio"))
        .send()
        .await
        .unwrap();
    assert!(no_slash.status().is_redirection(), "{}", no_slash.status());
    let script = app.get("/_next/app.js").await;
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );

    // API routes win; what is not a file is a JSON 404; hidden files and paths out of the
    // folder are refused (400 or 404, JSON), their contents never sent.
    let channels: Value = app.get("/v1/channels").await.json().await.unwrap();
    assert_eq!(channels["channels"][0]["name"], "radio24");
    let missing = app.get("/nope.html").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "not_found");
    for path in [
        "/.env",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/studio/../../Cargo.toml",
        "/_next/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let resp = app.get(path).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(matches!(status, 400 | 404), "{path}: {status}");
        assert!(
            !text.contains("SECRET") && !text.contains("[package]"),
            "{path}: {text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(body["error"].is_string(), "{path}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_built_app_the_root_says_how_to_build_it() {
    let app = TestApp::spawn(
        Role::All,
        &[("RADIO24__SERVER__WEB_DIR", "/nonexistent/radio24-web")],
    )
    .await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("npm run build"), "{text}");
    assert!(text.contains("/nonexistent/radio24-web"), "{text}");
    assert_eq!(app.get("/studio/").await.status(), 404);
    assert_eq!(app.get("/health").await.status(), 200);
}
