//! `bus.auth = "google_id_token"` at the wire: a fake metadata server on loopback hands out
//! JWT-shaped ID tokens (with Cloud Run's stripped signature), the real API presents them on
//! every bus request, and the real host accepts only the right audience and caller.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use radio24::cli::Role;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::broadcast::captions_of;
use crate::helpers::{BUS_TOKEN, PATIENCE, TestApp};

const AUDIENCE: &str = "https://radio24-host";
const API_ACCOUNT: &str = "radio24-api@my-project.iam.gserviceaccount.com";
const IDENTITY: &str = "/computeMetadata/v1/instance/service-accounts/default/identity";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An ID token as Cloud Run hands it to the container: header, claims, no signature.
fn id_token(aud: &str, email: &str, exp: u64) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let claims = json!({
        "iss": "https://accounts.google.com",
        "aud": aud,
        "azp": "1234567890",
        "email": email,
        "email_verified": true,
        "iat": now(),
        "exp": exp,
        "sub": "1234567890",
    });
    format!(
        "{}.{}.SIGNATURE_REMOVED_BY_GOOGLE",
        b64(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// A metadata server that serves `token` for [`AUDIENCE`] to callers that say
/// `Metadata-Flavor: Google` (anything else gets 404 from wiremock).
async fn metadata_server(token: String) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(IDENTITY))
        .and(query_param("audience", AUDIENCE))
        .and(query_param("format", "full"))
        .and(header("Metadata-Flavor", "Google"))
        .respond_with(ResponseTemplate::new(200).set_body_string(token))
        .mount(&server)
        .await;
    server
}

fn host_overrides() -> Vec<(&'static str, &'static str)> {
    vec![
        ("RADIO24__BUS__AUTH", "google_id_token"),
        ("RADIO24__BUS__AUDIENCE", AUDIENCE),
        ("RADIO24__BUS__GOOGLE_SERVICE_ACCOUNT", API_ACCOUNT),
    ]
}

async fn host_status(host: &TestApp, token: &str) -> u16 {
    tokio::time::timeout(
        PATIENCE,
        host.client
            .get(host.url("/now?channel=radio24"))
            .bearer_auth(token)
            .send(),
    )
    .await
    .unwrap()
    .unwrap()
    .status()
    .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reaches_the_host_with_id_tokens_and_the_host_refuses_other_claims() {
    let host = TestApp::spawn(Role::Host, &host_overrides()).await;
    let metadata = metadata_server(id_token(AUDIENCE, API_ACCOUNT, now() + 3600)).await;
    let metadata_url = format!("{}/computeMetadata/v1", metadata.uri());
    let api = TestApp::spawn(
        Role::Api,
        &[
            ("RADIO24__BUS__AUTH", "google_id_token"),
            ("RADIO24__BUS__AUDIENCE", AUDIENCE),
            ("RADIO24__BUS__METADATA_URL", &metadata_url),
            ("RADIO24__BUS__HOST_URL", &host.address),
        ],
    )
    .await;

    // Served: the link comes up (events, programme push) and a studio request airs.
    api.wait_for_status("/ready", 200).await;
    let mut ws = api.broadcast("radio24").await;
    assert_eq!(ws.next_json().await["type"], "snapshot");
    let accepted: Value = api
        .speak("ID tokens on the bus.")
        .await
        .json()
        .await
        .unwrap();
    let id = accepted["segment_id"].as_str().unwrap();
    assert_eq!(captions_of(&mut ws, id).await, ["ID tokens on the bus."]);
    // One token, fetched once and reused for every request until shortly before it expires.
    let fetched = metadata.received_requests().await.unwrap().len();
    assert_eq!(fetched, 1, "the token is cached");

    // The host itself: the right token passes; the wrong audience, caller, an expired token,
    // the shared bus token and no token at all do not.
    assert_eq!(
        host_status(&host, &id_token(AUDIENCE, API_ACCOUNT, now() + 600)).await,
        200
    );
    for (what, token) in [
        (
            "wrong audience",
            id_token("https://other-service", API_ACCOUNT, now() + 600),
        ),
        (
            "wrong caller",
            id_token(
                AUDIENCE,
                "intruder@my-project.iam.gserviceaccount.com",
                now() + 600,
            ),
        ),
        ("expired", id_token(AUDIENCE, API_ACCOUNT, now() - 10)),
        ("the bus token", BUS_TOKEN.to_owned()),
        ("not a JWT", "x.y.z".to_owned()),
    ] {
        assert_eq!(host_status(&host, &token).await, 401, "{what}");
    }
    let resp = tokio::time::timeout(PATIENCE, host.client.get(host.url("/now")).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 401, "no token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_whose_tokens_name_another_caller_is_refused_by_the_host() {
    let host = TestApp::spawn(Role::Host, &host_overrides()).await;
    let wrong = "someone-else@my-project.iam.gserviceaccount.com";
    let metadata = metadata_server(id_token(AUDIENCE, wrong, now() + 3600)).await;
    let metadata_url = format!("{}/computeMetadata/v1", metadata.uri());
    let api = TestApp::spawn(
        Role::Api,
        &[
            ("RADIO24__BUS__AUTH", "google_id_token"),
            ("RADIO24__BUS__AUDIENCE", AUDIENCE),
            ("RADIO24__BUS__METADATA_URL", &metadata_url),
            ("RADIO24__BUS__HOST_URL", &host.address),
        ],
    )
    .await;
    // The API got its token, presented it, and the host refused it: 502 (the host said no).
    let resp = api.speak("Let me in.").await;
    assert_eq!(resp.status(), 502, "{:?}", resp.text().await);
    assert!(!metadata.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_needs_to_know_whom_to_accept() {
    let settings = crate::helpers::settings(&[("RADIO24__BUS__AUTH", "google_id_token")]);
    let err = radio24::startup::Application::build(settings, Role::Host)
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("bus.google_service_account"),
        "{err}"
    );
}
