//! `radio24 healthcheck`: the container health check. It asks a running process's
//! `GET /health` and answers with an exit code: 0 on 200, non-zero on anything else
//! (refused, timed out, another status), with one line saying which.
//!
//! The URL comes from the same settings as `serve`, so the same environment gives the same
//! port: `PORT` (`server.port`) whatever the role, else `server.api_port` (roles `api` and
//! `all`) or `server.host_port` (role `host`), on loopback unless `server.bind` names one
//! particular address. `--url` overrides all of it.
//!
//! Plain HTTP only: a host whose bus listener serves TLS (`bus.tls.*`) needs `--url` and a
//! check that speaks TLS; that is not handled here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::cli::Role;
use crate::config::Settings;

/// Why the check failed. Display is the one line the command prints.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{url}: not a valid URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{url}: cannot connect: {cause}")]
    Connect { url: String, cause: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: {cause}")]
    Request { url: String, cause: String },
    #[error("{url}: answered {status}, not 200 OK")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
}

/// The `/health` URL of a process serving `role` with `settings` on this machine.
pub fn health_url(settings: &Settings, role: Role) -> String {
    let port = role.listen_port(&settings.server);
    let host = match settings.server.bind.trim().parse::<IpAddr>() {
        // Listening everywhere (0.0.0.0, or :: which takes IPv4 too) or on loopback.
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() || ip.is_loopback() => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        Ok(IpAddr::V6(ip)) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        // One particular address: only there does the process answer.
        Ok(ip) => ip,
        // A name (e.g. "localhost"): loopback.
        Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    match host {
        IpAddr::V4(ip) => format!("http://{ip}:{port}/health"),
        IpAddr::V6(ip) => format!("http://[{ip}]:{port}/health"),
    }
}

/// GETs `url` within `timeout`: `Ok` with a one-line summary on 200, else why not.
pub async fn check(url: &str, timeout: Duration) -> Result<String, HealthcheckError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| HealthcheckError::BadUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if parsed.scheme() != "http" {
        return Err(HealthcheckError::BadUrl {
            url: url.to_owned(),
            reason: "only http:// is checked (no TLS here)".to_owned(),
        });
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .user_agent(concat!("radio24-healthcheck/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HealthcheckError::Request {
            url: url.to_owned(),
            cause: causes(&e),
        })?;
    let response = client.get(parsed).send().await.map_err(|e| {
        let url = url.to_owned();
        if e.is_timeout() {
            HealthcheckError::Timeout { url, timeout }
        } else if e.is_connect() {
            HealthcheckError::Connect {
                url,
                cause: causes(&e),
            }
        } else {
            HealthcheckError::Request {
                url,
                cause: causes(&e),
            }
        }
    })?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(HealthcheckError::Status {
            url: url.to_owned(),
            status,
        });
    }
    Ok(format!("{url}: {status}"))
}

/// The innermost cause of a transport error, on one line (e.g. "Connection refused (os
/// error 111)"): reqwest's own text repeats the URL and says little.
fn causes(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        last = cause.to_string();
        source = cause.source();
    }
    last.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(std::path::Path::new("no-such-config-folder"), &env).unwrap()
    }

    #[test]
    fn the_url_follows_the_port_serve_would_take() {
        let s = settings(&[]);
        assert_eq!(health_url(&s, Role::All), "http://127.0.0.1:8080/health");
        assert_eq!(health_url(&s, Role::Api), "http://127.0.0.1:8080/health");
        assert_eq!(health_url(&s, Role::Host), "http://127.0.0.1:8082/health");
        let s = settings(&[("PORT", "9000"), ("RADIO24__SERVER__BIND", "0.0.0.0")]);
        assert_eq!(health_url(&s, Role::Host), "http://127.0.0.1:9000/health");
        let s = settings(&[("RADIO24__SERVER__BIND", "::")]);
        assert_eq!(health_url(&s, Role::Api), "http://127.0.0.1:8080/health");
        let s = settings(&[("RADIO24__SERVER__BIND", "::1")]);
        assert_eq!(health_url(&s, Role::Api), "http://[::1]:8080/health");
        let s = settings(&[
            ("RADIO24__SERVER__BIND", "10.1.2.3"),
            ("RADIO24__SERVER__HOST_PORT", "9100"),
        ]);
        assert_eq!(health_url(&s, Role::Host), "http://10.1.2.3:9100/health");
    }
}
