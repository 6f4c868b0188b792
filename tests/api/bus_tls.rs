//! Mutual TLS on the bus (`bus.tls.*`), with certificates made here: a host that requires a
//! client certificate from the bus's CA serves an API that presents one (calls, the event
//! stream, the live audio stream and the archive all cross), and refuses a client without a
//! certificate, or with one from another CA, at the handshake.

use std::path::{Path, PathBuf};

use radio24::cli::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, BUS_TOKEN, PATIENCE, TestApp, poll_until};

/// A certificate authority that signs leaf certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses) used for `purpose`: its PEM
    /// certificate and key.
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "radio24 bus");
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The PEM files of one role, in a folder of their own.
struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn write(dir: &Path, name: &str, ca: &Ca, (cert, key): (String, String)) -> Self {
        let files = Self {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&files.ca, ca.cert.pem()).unwrap();
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("RADIO24__BUS__TLS__CA", self.ca.to_str().unwrap()),
            ("RADIO24__BUS__TLS__CERT", self.cert.to_str().unwrap()),
            ("RADIO24__BUS__TLS__KEY", self.key.to_str().unwrap()),
        ]
    }
}

/// A client of the host's bus that trusts `ca` and presents `identity` (PEM certificate and
/// key), if any: what a stranger on the network could try.
fn client(ca: &Ca, identity: Option<(String, String)>) -> reqwest::Client {
    client_speaking(rustls::DEFAULT_VERSIONS, ca, identity)
}

/// [`client`], offering only the TLS `versions` given.
fn client_speaking(
    versions: &[&'static rustls::SupportedProtocolVersion],
    ca: &Ca,
    identity: Option<(String, String)>,
) -> reqwest::Client {
    radio24::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            use rustls::pki_types::pem::PemObject;
            let chain =
                vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// What became of a request to the host's `/health` with the bus token: its status, or the
/// error's whole chain.
async fn try_health(client: &reqwest::Client, port: u16) -> Result<u16, String> {
    let sent = client
        .get(format!("https://localhost:{port}/health"))
        .bearer_auth(BUS_TOKEN)
        .send();
    match tokio::time::timeout(PATIENCE, sent).await {
        Err(_) => panic!("GET /health over TLS: no answer or refusal after {PATIENCE:?}"),
        Ok(Ok(resp)) => Ok(resp.status().as_u16()),
        Ok(Err(e)) => {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            Err(chain)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_over_mutual_tls_serves_its_client_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("radio24 bus CA");
    let host_files = Files::write(
        dir.path(),
        "host",
        &ca,
        ca.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
    );
    let api_files = Files::write(
        dir.path(),
        "api",
        &ca,
        ca.issue(&["radio24-api"], ExtendedKeyUsagePurpose::ClientAuth),
    );
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();

    let mut host_env = host_files.env().to_vec();
    host_env.push(("RADIO24__ARCHIVE__DIR", archive));
    let host = TestApp::spawn(Role::Host, &host_env).await;
    // The API is given the plain URL: with bus.tls set it speaks https all the same.
    let host_url = format!("http://127.0.0.1:{}", host.port);
    let mut api_env = api_files.env().to_vec();
    api_env.push(("RADIO24__BUS__HOST_URL", &host_url));
    let api = TestApp::spawn(Role::Api, &api_env).await;

    // Calls and the event stream: ready, a speak reaches the captions, a script comes back.
    let ready = api.wait_for_status("/ready", 200).await;
    assert_eq!(ready["host_link"]["state"], "up", "{ready}");
    let mut ws = api.broadcast("radio24").await;
    assert_eq!(ws.next_json().await["type"], "snapshot");
    let resp = api.speak("Spoken over mutual TLS.").await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["segment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        crate::broadcast::captions_of(&mut ws, &id).await,
        ["Spoken over mutual TLS."]
    );
    let script = api
        .post(
            "/v1/studio/script",
            Some(ADMIN_TOKEN),
            &json!({"block": "OP"}),
        )
        .await;
    assert_eq!(script.status(), 200);

    // The live audio stream, relayed from the host.
    let mut stream = api.get("/v1/channels/radio24/stream").await;
    assert_eq!(stream.status(), 200);
    let mut head = Vec::new();
    while head.len() < 4 {
        let chunk = tokio::time::timeout(PATIENCE, stream.chunk())
            .await
            .expect("stream bytes in time")
            .unwrap()
            .expect("the stream goes on");
        head.extend_from_slice(&chunk);
    }
    assert_eq!(&head[..4], b"OggS");
    drop(stream);

    // The archive: the hour being recorded is listed, and its captions file downloads.
    let listing = poll_until(
        "the hour being recorded, listed through the API",
        PATIENCE,
        std::time::Duration::from_millis(200),
        async || {
            let resp = api.get("/v1/channels/radio24/archive").await;
            let status = resp.status();
            let body: Value = resp.json().await.map_err(|e| e.to_string())?;
            match body["recordings"].as_array() {
                Some(files) if status == 200 && !files.is_empty() => Ok(body),
                _ => Err(format!("{status} {body}")),
            }
        },
    )
    .await;
    let listed = listing.to_string();
    let audio_file = listing["recordings"][0]["file"]
        .as_str()
        .unwrap_or_else(|| panic!("no file in {listed}"))
        .to_owned();
    let mut file = api
        .get(&format!("/v1/channels/radio24/archive/{audio_file}"))
        .await;
    assert_eq!(file.status(), 200, "{audio_file}");
    let first = tokio::time::timeout(PATIENCE, file.chunk())
        .await
        .expect("archive bytes in time")
        .unwrap()
        .expect("the recording has bytes");
    assert_eq!(&first[..4], b"OggS", "{audio_file}");

    // Strangers: the CA's own clients without a certificate, or with one from another CA,
    // are refused; the right certificate still needs the bus token. In TLS 1.3 the client's
    // side of the handshake ends before the server has judged its certificate, so whether it
    // reads the server's alert or a reset connection is a race: only the refusal is certain.
    // TLS 1.2 waits for the server's verdict, so there the reason is certain too.
    let without = try_health(&client(&ca, None), host.port).await;
    assert!(
        without.is_err(),
        "a client without a certificate: {without:?}"
    );
    let without_tls12 = try_health(
        &client_speaking(&[&rustls::version::TLS12], &ca, None),
        host.port,
    )
    .await;
    assert!(
        without_tls12
            .as_ref()
            .is_err_and(|e| e.contains("CertificateRequired")),
        "a TLS 1.2 client without a certificate: {without_tls12:?}"
    );
    let other_ca = Ca::new("another CA");
    let foreign = other_ca.issue(&["intruder"], ExtendedKeyUsagePurpose::ClientAuth);
    let refused = try_health(&client(&ca, Some(foreign)), host.port).await;
    assert!(
        refused.is_err(),
        "a client with another CA's certificate: {refused:?}"
    );
    let rightful = ca.issue(&["operator"], ExtendedKeyUsagePurpose::ClientAuth);
    let with_cert = client(&ca, Some(rightful));
    assert_eq!(try_health(&with_cert, host.port).await, Ok(200));
    let no_token = tokio::time::timeout(
        PATIENCE,
        with_cert
            .put(format!("https://localhost:{}/programme", host.port))
            .json(&json!({}))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(no_token.status(), 401);
}

#[tokio::test]
async fn half_or_unreadable_tls_settings_stop_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("radio24 bus CA");
    let files = Files::write(
        dir.path(),
        "host",
        &ca,
        ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth),
    );
    let [ca_var, cert_var, _] = files.env();
    let half =
        std::collections::HashMap::from([ca_var, cert_var, ("RADIO24__BUS__TOKEN", BUS_TOKEN)])
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let err = radio24::config::Settings::load(&crate::helpers::config_dir(), &half).unwrap_err();
    assert!(err.to_string().contains("`bus.tls.key`"), "{err}");
    assert!(!err.to_string().contains('\n'), "{err}");

    // The key of another certificate.
    let (_, other_key) = ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let wrong_key = dir.path().join("wrong-key.pem");
    std::fs::write(&wrong_key, other_key).unwrap();
    let settings = crate::helpers::settings(&[
        ("RADIO24__BUS__TLS__CA", files.ca.to_str().unwrap()),
        ("RADIO24__BUS__TLS__CERT", files.cert.to_str().unwrap()),
        ("RADIO24__BUS__TLS__KEY", wrong_key.to_str().unwrap()),
    ]);
    let err = radio24::startup::Application::build(settings, Role::Host)
        .await
        .err()
        .expect("a key that is not the certificate's stops the start");
    let msg = format!("{err:#}");
    assert!(msg.contains("`bus.tls.key`"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    // A certificate file that is not there.
    let settings = crate::helpers::settings(&[
        ("RADIO24__BUS__TLS__CA", files.ca.to_str().unwrap()),
        ("RADIO24__BUS__TLS__CERT", "/nonexistent/bus.pem"),
        ("RADIO24__BUS__TLS__KEY", files.key.to_str().unwrap()),
    ]);
    let err = radio24::startup::Application::build(settings, Role::Api)
        .await
        .err()
        .expect("a missing certificate stops the start");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("`bus.tls.cert`") && msg.contains("/nonexistent/bus.pem"),
        "{msg}"
    );
}
