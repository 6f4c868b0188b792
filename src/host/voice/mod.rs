//! Voices: what turns a sentence into audio. Each backend streams mono signed 16-bit PCM at
//! its own sample rate as it arrives, so playout can start before synthesis ends; the
//! engine resamples to 48 kHz and normalises loudness.
//!
//! Backends (config `voice.backend`): OpenAI speech (`/v1/audio/speech`, `pcm`, 24 kHz),
//! OpenAI Realtime (WebSocket, GA events), `espeak-ng` (a subprocess, 22.05 kHz), and
//! none (captions only).

pub mod espeak;
pub mod noise;
pub mod openai_speech;
pub mod realtime;
pub(crate) mod shared;

use async_trait::async_trait;
use futures::stream::BoxStream;

/// Audio a voice produces: mono s16 at `rate` Hz, in chunks as they arrive.
pub struct VoiceAudio {
    pub rate: u32,
    pub chunks: BoxStream<'static, Result<Vec<i16>, VoiceError>>,
}

/// Why a voice produced no (or not all its) audio.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VoiceError {
    /// The provider or program cannot be reached or started.
    #[error("voice unavailable: {0}")]
    Unavailable(String),
    #[error("voice timed out")]
    Timeout,
    /// The provider answered with an error status or event.
    #[error("voice provider refused: {0}")]
    Rejected(String),
    /// The provider answered something that is not the expected audio.
    #[error("voice answered something unusable: {0}")]
    BadAnswer(String),
}

#[async_trait]
pub trait Voice: Send + Sync + 'static {
    /// A short name shown in `/now`, e.g. `openai-speech`, `openai-realtime`, `espeak-ng`.
    fn name(&self) -> &'static str;
    /// Starts synthesizing `text` (one sentence or a few); the audio streams as it comes.
    async fn synthesize(&self, text: &str) -> Result<VoiceAudio, VoiceError>;
}

/// A voice whose first-audio latency and failures go to the metrics
/// (`radio24_tts_first_audio_seconds`, `radio24_provider_errors_total{service="tts"}`),
/// labelled with its name: one wrapper for every backend.
pub struct Metered(pub std::sync::Arc<dyn Voice>);

impl Metered {
    /// `voice`, metered.
    pub fn wrap(voice: std::sync::Arc<dyn Voice>) -> std::sync::Arc<dyn Voice> {
        std::sync::Arc::new(Self(voice))
    }
}

#[async_trait]
impl Voice for Metered {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn synthesize(&self, text: &str) -> Result<VoiceAudio, VoiceError> {
        use crate::metrics::{Service, provider_answered, provider_failed};
        use futures::StreamExt;
        let provider = self.0.name();
        let asked = std::time::Instant::now();
        let audio = self.0.synthesize(text).await.inspect_err(|e| {
            provider_failed(Service::Tts, provider, e.into());
        })?;
        let mut first = true;
        let chunks = audio.chunks.inspect(move |chunk| match chunk {
            Ok(samples) if first && !samples.is_empty() => {
                first = false;
                provider_answered(Service::Tts, provider, asked);
            }
            Ok(_) => {}
            Err(e) => provider_failed(Service::Tts, provider, e.into()),
        });
        Ok(VoiceAudio {
            rate: audio.rate,
            chunks: chunks.boxed(),
        })
    }
}
