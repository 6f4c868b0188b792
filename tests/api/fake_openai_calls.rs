//! The fake OpenAI's call-in endpoints (transcriptions, moderations) answer the production
//! clients in `host::calls` as the real ones would.

use std::sync::atomic::Ordering;
use std::time::Duration;

use radio24::host::calls::moderation::{ModerationConfig, Moderator, OpenAiModeration, Verdict};
use radio24::host::calls::transcribe::{Transcriber, TranscriberConfig};
use secrecy::SecretString;

use crate::fake_openai::{Behaviour, FakeOpenAi, FakeSetup};

fn moderator(fake: &FakeOpenAi) -> Moderator {
    Moderator::new(ModerationConfig {
        openai: Some(OpenAiModeration {
            base_url: fake.base_url(),
            api_key: SecretString::from("sk-test"),
            model: "omni-moderation-latest".to_owned(),
            timeout: Duration::from_secs(5),
        }),
        blocked_words: Vec::new(),
    })
    .unwrap()
}

#[tokio::test]
async fn transcription_and_moderation_answer_the_real_clients() {
    let fake = FakeOpenAi::start_with(FakeSetup {
        transcript: "FLAGME please".to_owned(),
        ..FakeSetup::default()
    })
    .await;
    let transcriber = Transcriber::new(TranscriberConfig {
        base_url: fake.base_url(),
        api_key: SecretString::from("sk-test"),
        model: "gpt-4o-mini-transcribe".to_owned(),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let text = transcriber
        .transcribe(&[0; 1600], 16_000, "ja-JP")
        .await
        .unwrap();
    assert_eq!(text, "FLAGME please");
    let moderator = moderator(&fake);
    assert_eq!(
        moderator.check(&text).await,
        Verdict::Flagged {
            reason: "moderation: harassment".to_owned()
        }
    );
    assert_eq!(
        moderator.check("おはようございます").await,
        Verdict::Allowed
    );
    assert_eq!(fake.transcribe.requests.load(Ordering::Relaxed), 1);
    assert_eq!(fake.transcribe.failures.load(Ordering::Relaxed), 0);
    assert_eq!(fake.moderation.requests.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_transcription_without_a_file_part_is_refused() {
    let fake = FakeOpenAi::start_with(FakeSetup::default()).await;
    radio24::install_crypto_provider();
    let response = reqwest::Client::new()
        .post(format!("{}/audio/transcriptions", fake.base_url()))
        .json(&serde_json::json!({"model": "gpt-4o-mini-transcribe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(fake.transcribe.failures.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_broken_moderation_lets_calls_through() {
    let fake = FakeOpenAi::start_with(FakeSetup {
        moderation: Behaviour::broken(),
        ..FakeSetup::default()
    })
    .await;
    let moderator = moderator(&fake);
    // 500, then garbage (the broken fake's hang mode would take the whole timeout).
    assert_eq!(moderator.check("FLAGME").await, Verdict::Allowed);
    assert_eq!(moderator.check("FLAGME").await, Verdict::Allowed);
    assert_eq!(fake.moderation.failures.load(Ordering::Relaxed), 2);
}
