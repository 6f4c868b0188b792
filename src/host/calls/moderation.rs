//! TEMP stub (replaced by the helper's module before commit).
use secrecy::SecretString;
use std::time::Duration;
pub struct OpenAiModeration {
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    pub timeout: Duration,
}
pub struct ModerationConfig {
    pub openai: Option<OpenAiModeration>,
    pub blocked_words: Vec<String>,
}
#[derive(Debug, thiserror::Error)]
pub enum ModerationError {
    #[error("x")]
    X,
}
pub enum Verdict {
    Allowed,
    Flagged { reason: String },
}
pub struct Moderator(Vec<String>);
impl Moderator {
    pub fn new(c: ModerationConfig) -> Result<Self, ModerationError> {
        Ok(Self(c.blocked_words))
    }
    pub async fn check(&self, text: &str) -> Verdict {
        if self
            .0
            .iter()
            .any(|w| text.to_lowercase().contains(&w.to_lowercase()))
        {
            Verdict::Flagged {
                reason: "blocked word".into(),
            }
        } else {
            Verdict::Allowed
        }
    }
}
