//! Mutual TLS on the HTTP bus (optional). With `bus.tls.ca`, `bus.tls.cert` and
//! `bus.tls.key` set (PEM files; `RADIO24__BUS__TLS__CA`, `…__CERT`, `…__KEY`), the host role's
//! listener serves TLS and requires a client certificate signed by the CA
//! ([`BusTls::server_config`]), and the API role's bus client connects with `https`, trusts
//! only that CA and presents its own certificate ([`BusTls::client_config`]). The bus token is
//! still checked on top. Files are read once, at start; every failure names its key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the bus's TLS could not be set up. Display is one line naming the key.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

fn tls_error(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

/// The three files, as configured (`bus.tls.*`; an empty path counts as unset).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The files that are set, or `None` when TLS is off. Some set and some not is an error
    /// naming the first one missing.
    pub fn configured(&self) -> Result<Option<(&Path, &Path, &Path)>, TlsError> {
        fn set(p: &Option<PathBuf>) -> Option<&Path> {
            p.as_deref().filter(|p| !p.as_os_str().is_empty())
        }
        match (set(&self.ca), set(&self.cert), set(&self.key)) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some((ca, cert, key))),
            (ca, cert, _) => {
                let missing = if ca.is_none() {
                    "bus.tls.ca"
                } else if cert.is_none() {
                    "bus.tls.cert"
                } else {
                    "bus.tls.key"
                };
                Err(tls_error(
                    missing,
                    "not set; bus.tls.ca, bus.tls.cert and bus.tls.key go together (or none of them)",
                ))
            }
        }
    }
}

/// The CA, this process's certificate chain and its key, read and checked.
pub struct BusTls {
    roots: Arc<rustls::RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for BusTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusTls")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for BusTls {
    fn clone(&self) -> Self {
        Self {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file; at least one.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        tls_error(
            key,
            format!("cannot read certificates from {}: {e}", path.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(tls_error(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

impl BusTls {
    /// Reads the files when all three are set; `None` when none is.
    pub fn load(files: &TlsFiles) -> Result<Option<Self>, TlsError> {
        let Some((ca, cert, key)) = files.configured()? else {
            return Ok(None);
        };
        let mut roots = rustls::RootCertStore::empty();
        for der in certificates("bus.tls.ca", ca)? {
            roots.add(der).map_err(|e| {
                tls_error(
                    "bus.tls.ca",
                    format!("{}: not a CA certificate: {e}", ca.display()),
                )
            })?;
        }
        let chain = certificates("bus.tls.cert", cert)?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            tls_error(
                "bus.tls.key",
                format!("no PEM private key read from {}: {e}", key.display()),
            )
        })?;
        let tls = Self {
            roots: Arc::new(roots),
            chain,
            key: key_der,
        };
        // Refuses a key that is not the certificate's, or of a kind rustls cannot sign with.
        let signing = provider()
            .key_provider
            .load_private_key(tls.key.clone_key())
            .map_err(|e| tls_error("bus.tls.key", format!("{}: {e}", key.display())))?;
        match rustls::sign::CertifiedKey::new(tls.chain.clone(), signing).keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(tls_error(
                    "bus.tls.key",
                    format!("{} is not the key of bus.tls.cert: {e}", key.display()),
                ));
            }
        }
        Ok(Some(tls))
    }

    /// The host's listener: TLS 1.2+, this certificate, and a client certificate signed by
    /// the CA required of every connection.
    #[cfg(feature = "host")]
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots.clone(),
            provider(),
        )
        .build()
        .map_err(|e| tls_error("bus.tls.ca", e.to_string()))?;
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("bus.tls.cert", e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_error("bus.tls.cert", e.to_string()))
    }

    /// The API's bus client: trusts the CA alone and presents this certificate.
    #[cfg(feature = "api")]
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("bus.tls.cert", e.to_string()))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_error("bus.tls.cert", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(ca: &str, cert: &str, key: &str) -> TlsFiles {
        let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
        TlsFiles {
            ca: path(ca),
            cert: path(cert),
            key: path(key),
        }
    }

    #[test]
    fn none_set_is_off_and_some_set_names_the_first_missing_key() {
        assert!(files("", "", "").configured().unwrap().is_none());
        let err = files("ca.pem", "", "key.pem").configured().unwrap_err();
        assert_eq!(err.key, "bus.tls.cert");
        let err = files("", "c.pem", "k.pem").configured().unwrap_err();
        assert_eq!(err.key, "bus.tls.ca");
        let err = files("ca.pem", "c.pem", "").configured().unwrap_err();
        assert_eq!(err.key, "bus.tls.key");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn a_missing_or_empty_file_is_named_by_its_key() {
        let dir = std::env::temp_dir().join(format!("radio24-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let empty = empty.to_str().unwrap();
        let err = BusTls::load(&files("/nonexistent/ca.pem", empty, empty)).unwrap_err();
        assert_eq!(err.key, "bus.tls.ca", "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let err = BusTls::load(&files(empty, empty, empty)).unwrap_err();
        assert_eq!(err.key, "bus.tls.ca", "{err}");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
