//! Who a caller is. The server gives each new caller a `user_id` (128 random bits) and a
//! `caller_token`, an HMAC-SHA256 of the id under the station's caller secret. A client that
//! shows both again (a reconnecting browser) is that caller; an id without a valid token is
//! not taken and the client becomes a new caller, so nobody can act for someone else: see
//! their items' progress, or cancel them.
//!
//! Config keys read (by the caller that builds it): `auth.caller_secret`, else
//! `auth.admin_token`.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// A caller as the server knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `c_` and 32 hex digits.
    pub user_id: String,
    /// What proves the id is theirs; a secret of the caller's, never logged.
    pub token: String,
}

/// Issues and checks caller tokens.
pub struct CallerKeys {
    key: [u8; 32],
}

impl CallerKeys {
    /// Keys from `secret` (the caller secret, or the admin token), stretched through SHA-256
    /// with a label so the token is not the admin token's HMAC of anything else.
    pub fn new(secret: &SecretString) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"radio24 caller token v1\0");
        hasher.update(secret.expose_secret().as_bytes());
        Self {
            key: hasher.finalize().into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; 32 bytes cannot be refused.
        match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts a 32-byte key"),
        }
    }

    /// The token of `user_id`.
    pub fn token_for(&self, user_id: &str) -> String {
        let mut mac = self.mac();
        mac.update(user_id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A new caller with a fresh id.
    pub fn issue(&self) -> Caller {
        let user_id = format!("c_{}", hex(&rand::random::<[u8; 16]>()));
        let token = self.token_for(&user_id);
        Caller { user_id, token }
    }

    /// The caller `user_id` and `token` prove, if they do (compared in constant time).
    pub fn verify(&self, user_id: &str, token: &str) -> Option<Caller> {
        if user_id.len() > 64 || token.len() != 64 {
            return None;
        }
        let given = unhex(token)?;
        let mut mac = self.mac();
        mac.update(user_id.as_bytes());
        mac.verify_slice(&given).ok()?;
        Some(Caller {
            user_id: user_id.to_owned(),
            token: token.to_owned(),
        })
    }

    /// The caller a client says it is, when its id and token match; otherwise a new one.
    /// `true` when the caller was recognised.
    pub fn resolve(&self, user_id: Option<&str>, token: Option<&str>) -> (Caller, bool) {
        match (user_id, token) {
            (Some(id), Some(token)) => match self.verify(id, token) {
                Some(caller) => (caller, true),
                None => (self.issue(), false),
            },
            _ => (self.issue(), false),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> CallerKeys {
        CallerKeys::new(&SecretString::from(secret.to_owned()))
    }

    #[test]
    fn an_issued_caller_is_recognised_with_its_token_only() {
        let keys = keys("station secret");
        let caller = keys.issue();
        assert!(caller.user_id.starts_with("c_") && caller.user_id.len() == 34);
        assert_eq!(
            keys.verify(&caller.user_id, &caller.token),
            Some(caller.clone())
        );
        let (again, known) = keys.resolve(Some(&caller.user_id), Some(&caller.token));
        assert!(known);
        assert_eq!(again, caller);

        // Another's id with one's own token, a made-up token, no token: a new caller.
        let other = keys.issue();
        assert_ne!(other.user_id, caller.user_id);
        for (id, token) in [
            (Some(caller.user_id.as_str()), Some(other.token.as_str())),
            (
                Some(caller.user_id.as_str()),
                Some("00".repeat(32).as_str()),
            ),
            (Some(caller.user_id.as_str()), Some("not hex at all")),
            (Some(caller.user_id.as_str()), None),
            (None, Some(caller.token.as_str())),
        ] {
            let (fresh, known) = keys.resolve(id, token);
            assert!(!known, "{id:?} {token:?}");
            assert_ne!(fresh.user_id, caller.user_id);
        }
    }

    #[test]
    fn tokens_depend_on_the_secret() {
        let caller = keys("one").issue();
        assert_eq!(keys("two").verify(&caller.user_id, &caller.token), None);
        assert!(keys("one").verify(&caller.user_id, &caller.token).is_some());
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }
}
