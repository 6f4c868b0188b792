//! Google ID tokens on the HTTP bus (`bus.auth = "google_id_token"`, for Cloud Run): instead
//! of the shared `bus.token`, the API presents an ID token of its service account for the
//! host's URL, and the host checks it.
//!
//! - The API side, [`IdTokenSource`], asks the metadata server
//!   (`bus.metadata_url` + `/instance/service-accounts/default/identity?audience=<host url>&format=full`,
//!   header `Metadata-Flavor: Google`) and keeps the token until [`REFRESH_BEFORE_EXPIRY`]
//!   before its `exp`.
//! - The host side, [`IdTokenCheck`], reads the token's claims and accepts it when `aud` is
//!   its own URL (`bus.host_url`), `email` is `bus.google_service_account`, `iss` is Google and
//!   it has not expired. It does **not** verify the signature: on Cloud Run the host is
//!   deployed with `--no-allow-unauthenticated`, and Cloud Run's IAM check (which verifies
//!   the signature with Google's keys) lets through only callers granted `roles/run.invoker`;
//!   Cloud Run even replaces the signature before the request reaches the container. The
//!   claims check keeps a token meant for another service, or another caller's, out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

/// A cached token is replaced this long before it expires (Google's last an hour).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Longest wait for the metadata server.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest token accepted from the metadata server, in bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Issuers of Google ID tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Why a token could not be had or was refused. Display is one line without the token.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("metadata server: {0}")]
    Metadata(String),
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("the token's {claim} is {found:?}, expected {expected:?}")]
    Claim {
        claim: &'static str,
        found: String,
        expected: String,
    },
    #[error("the token expired at {0} (unix time)")]
    Expired(u64),
}

/// The claims read from a token.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    aud: String,
    #[serde(default)]
    email: String,
    exp: u64,
}

/// Reads a JWT's claims without verifying its signature (see the module doc).
fn claims(token: &str) -> Result<Claims, IdTokenError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| IdTokenError::Malformed(format!("payload: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| IdTokenError::Malformed(format!("claims: {e}")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An audience as Cloud Run compares it: the service URL without a trailing slash.
pub fn audience_of(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// The API side: fetches and caches ID tokens for one audience.
pub struct IdTokenSource {
    client: reqwest::Client,
    url: reqwest::Url,
    cached: Mutex<Option<(SecretString, u64)>>,
}

impl IdTokenSource {
    /// A source of tokens for `audience` (the host's URL) from the metadata server at
    /// `metadata_url` (`…/computeMetadata/v1`).
    pub fn new(metadata_url: &str, audience: &str) -> Result<Self, IdTokenError> {
        let base = metadata_url.trim().trim_end_matches('/');
        let mut url = reqwest::Url::parse(&format!(
            "{base}/instance/service-accounts/default/identity"
        ))
        .map_err(|e| IdTokenError::Metadata(format!("bus.metadata_url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("audience", &audience_of(audience))
            .append_pair("format", "full");
        let client = reqwest::Client::builder()
            .timeout(METADATA_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| IdTokenError::Metadata(e.to_string()))?;
        Ok(Self {
            client,
            url,
            cached: Mutex::new(None),
        })
    }

    /// A token valid for at least [`REFRESH_BEFORE_EXPIRY`]: the cached one, or a new one.
    pub async fn token(&self) -> Result<SecretString, IdTokenError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, exp)) = cached.as_ref()
            && unix_now() + REFRESH_BEFORE_EXPIRY.as_secs() < *exp
        {
            return Ok(token.clone());
        }
        let response = self
            .client
            .get(self.url.clone())
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| IdTokenError::Metadata(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(IdTokenError::Metadata(format!("answered {status}")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| IdTokenError::Metadata(e.without_url().to_string()))?;
        if body.len() > MAX_TOKEN_BYTES {
            return Err(IdTokenError::Metadata("the token is too long".into()));
        }
        let token = String::from_utf8_lossy(&body).trim().to_owned();
        let exp = claims(&token)?.exp;
        let token = SecretString::from(token);
        *cached = Some((token.clone(), exp));
        Ok(token)
    }
}

/// The host side: which tokens to accept.
#[derive(Clone, Debug)]
pub struct IdTokenCheck {
    /// The host's own URL (`bus.host_url`), as an audience.
    pub audience: String,
    /// The API's service account (`bus.google_service_account`).
    pub email: String,
}

impl IdTokenCheck {
    pub fn new(host_url: &str, email: &str) -> Self {
        Self {
            audience: audience_of(host_url),
            email: email.trim().to_owned(),
        }
    }

    /// Whether `token` (a bearer token as presented) carries the claims expected.
    pub fn check(&self, token: &SecretString) -> Result<(), IdTokenError> {
        let claims = claims(token.expose_secret().trim())?;
        if !GOOGLE_ISSUERS.contains(&claims.iss.as_str()) {
            return Err(IdTokenError::Claim {
                claim: "iss",
                found: claims.iss,
                expected: GOOGLE_ISSUERS[0].to_owned(),
            });
        }
        if audience_of(&claims.aud) != self.audience {
            return Err(IdTokenError::Claim {
                claim: "aud",
                found: claims.aud,
                expected: self.audience.clone(),
            });
        }
        if !claims.email.eq_ignore_ascii_case(&self.email) {
            return Err(IdTokenError::Claim {
                claim: "email",
                found: claims.email,
                expected: self.email.clone(),
            });
        }
        if claims.exp <= unix_now() {
            return Err(IdTokenError::Expired(claims.exp));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> SecretString {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        SecretString::from(format!(
            "{}.{}.SIGNATURE_REMOVED_BY_GOOGLE",
            b64(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes())
        ))
    }

    #[test]
    fn claims_are_checked_one_by_one() {
        let check = IdTokenCheck::new(
            "https://host.example.run.app/",
            "api@p.iam.gserviceaccount.com",
        );
        let exp = unix_now() + 3600;
        let good = serde_json::json!({
            "iss": "https://accounts.google.com",
            "aud": "https://host.example.run.app",
            "email": "api@p.iam.gserviceaccount.com",
            "exp": exp,
        });
        check.check(&jwt(good.clone())).unwrap();
        for (claim, value) in [
            ("aud", serde_json::json!("https://other.example.run.app")),
            (
                "email",
                serde_json::json!("someone@p.iam.gserviceaccount.com"),
            ),
            ("iss", serde_json::json!("https://evil.example")),
            ("exp", serde_json::json!(unix_now() - 1)),
        ] {
            let mut bad = good.clone();
            bad[claim] = value;
            let err = check.check(&jwt(bad)).unwrap_err();
            assert!(
                err.to_string().contains(claim) || claim == "exp",
                "{claim}: {err}"
            );
        }
        assert!(matches!(
            check.check(&SecretString::from("not-a-jwt")),
            Err(IdTokenError::Malformed(_))
        ));
    }
}
