//! TEMP stub (replaced by the helper's module before commit).
use secrecy::SecretString;
use std::time::Duration;
pub struct TranscriberConfig {
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    pub timeout: Duration,
}
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("x")]
    X,
}
pub struct Transcriber;
impl Transcriber {
    pub fn new(_c: TranscriberConfig) -> Result<Self, TranscribeError> {
        Ok(Self)
    }
    pub async fn transcribe(
        &self,
        _pcm: &[i16],
        _rate: u32,
        _lang: &str,
    ) -> Result<String, TranscribeError> {
        Err(TranscribeError::X)
    }
}
