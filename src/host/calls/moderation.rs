//! Checking a call-in's text (typed, or a transcript) before it airs: first an offline list
//! of blocked words, then, when configured, OpenAI moderation (`POST {base_url}/moderations`).
//!
//! Word list: entries and text are compared after NFKC normalisation and lowercasing (so
//! full-width `ＡＢＣ` and half-width `ｶﾅ` match their usual forms). An entry with CJK
//! characters matches anywhere, since Japanese has no spaces between words; any other entry
//! matches whole words only (`ass` does not block `class`), where CJK characters count as
//! word breaks, so an English word inside a Japanese sentence is still found.
//!
//! A failed moderation request (error status, timeout, garbage) is logged as a warning and
//! the word list's verdict stands: a provider outage must not keep every call off air, and
//! the operator's own list still applies. Callers who need the provider's answer use
//! [`Moderator::check_openai`].
//!
//! Config it reads (through [`ModerationConfig`], filled by the engine): `moderation.use_openai`,
//! `moderation.blocked_words`, `openai.base_url`, `openai.api_key` (`OPENAI_API_KEY`),
//! `openai.moderation_model`. The key is never logged or put in an error; neither the text
//! nor the blocked word it matched is logged or put in a verdict (only lengths and categories).

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

use crate::host::voice::shared::{
    Capped, MAX_MESSAGE_CHARS, TransportFailure, body_error, error_chain, openai_error_message,
    read_capped, send_error, truncate_chars,
};

/// The moderation model unless configured otherwise (`openai.moderation_model`).
pub const DEFAULT_MODEL: &str = "omni-moderation-latest";
/// Longest text checked, in characters. Call-ins are far shorter (transcripts are cut to
/// 2000); longer text is flagged rather than checked in part.
pub const MAX_INPUT_CHARS: usize = 32 * 1024;
/// Most of a successful answer read (one result: a few hundred bytes of scores).
const MAX_ANSWER_BODY: usize = 64 * 1024;
/// Most of an error body read to find the provider's message.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// How to reach OpenAI moderation.
#[derive(Debug, Clone)]
pub struct OpenAiModeration {
    /// E.g. `https://api.openai.com/v1`; a trailing slash is fine.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; never logged.
    pub api_key: SecretString,
    /// `openai.moderation_model`, e.g. [`DEFAULT_MODEL`].
    pub model: String,
    /// From connecting to the last byte of the answer.
    pub timeout: Duration,
}

/// What a call-in is checked against.
#[derive(Debug, Clone, Default)]
pub struct ModerationConfig {
    /// OpenAI moderation after the word list; `None` = word list only.
    pub openai: Option<OpenAiModeration>,
    /// `moderation.blocked_words`; blank entries are ignored.
    pub blocked_words: Vec<String>,
}

/// Whether a call-in may air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Kept off air. `reason` is safe to log and show the operator: `"blocked word"` or
    /// `"moderation: <categories>"`, never the text or the word.
    Flagged {
        reason: String,
    },
}

/// Why OpenAI moderation gave no verdict.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModerationError {
    /// The provider cannot be reached, is not configured, or the client cannot be built.
    #[error("moderation unavailable: {0}")]
    Unavailable(String),
    #[error("moderation timed out")]
    Timeout,
    /// The provider answered with an error status; `message` is bounded and key-free.
    #[error("moderation refused: HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    /// The provider answered something that is not a moderation result.
    #[error("moderation answered something unusable: {0}")]
    BadAnswer(String),
}

/// Checks call-ins. Holds one HTTP client (and so one connection pool) for all checks.
pub struct Moderator {
    words: BlockedWords,
    openai: Option<Client>,
}

struct Client {
    http: reqwest::Client,
    url: String,
    config: OpenAiModeration,
}

#[derive(serde::Deserialize)]
struct Answer {
    results: Vec<ModerationResult>,
}

#[derive(serde::Deserialize)]
struct ModerationResult {
    flagged: bool,
    /// Category name to whether it applies; values are read loosely (a `null` is "no").
    #[serde(default)]
    categories: BTreeMap<String, serde_json::Value>,
}

impl Moderator {
    /// Builds the client when OpenAI is configured. Fails (Unavailable) only if the TLS
    /// stack cannot be set up.
    pub fn new(config: ModerationConfig) -> Result<Self, ModerationError> {
        let openai = match config.openai {
            Some(openai) => {
                // reqwest is built without a crypto provider of its own; installing ours
                // again is harmless and saves a panic if the caller forgot.
                crate::install_crypto_provider();
                let http = reqwest::Client::builder()
                    .connect_timeout(openai.timeout)
                    .timeout(openai.timeout)
                    .build()
                    .map_err(|e| ModerationError::Unavailable(error_chain(&e)))?;
                Some(Client {
                    http,
                    url: format!("{}/moderations", openai.base_url.trim_end_matches('/')),
                    config: openai,
                })
            }
            None => None,
        };
        Ok(Self {
            words: BlockedWords::new(&config.blocked_words),
            openai,
        })
    }

    /// The verdict on `text`: the word list, then OpenAI moderation if configured (whose
    /// failure leaves the word list's verdict; see the module doc). Blank text is allowed
    /// without a request.
    #[tracing::instrument(skip_all, fields(chars = text.chars().count()))]
    pub async fn check(&self, text: &str) -> Verdict {
        if text.trim().is_empty() {
            return Verdict::Allowed;
        }
        if text.chars().count() > MAX_INPUT_CHARS {
            tracing::info!(max = MAX_INPUT_CHARS, "call-in text too long to check");
            return flagged("too long to check");
        }
        if self.words.blocks(text) {
            tracing::info!("call-in held by the blocked-word list");
            return flagged("blocked word");
        }
        if self.openai.is_none() {
            return Verdict::Allowed;
        }
        match self.check_openai(text).await {
            Ok(verdict) => verdict,
            Err(e) => {
                use crate::metrics::{Service, provider_failed};
                provider_failed(Service::Moderation, "openai", (&e).into());
                tracing::warn!(error = %e, "moderation failed; the call-in passed the word list, so it is allowed");
                Verdict::Allowed
            }
        }
    }

    /// OpenAI moderation's verdict alone (no word list). Blank text is allowed without a
    /// request; without OpenAI configured this is `Unavailable`.
    pub async fn check_openai(&self, text: &str) -> Result<Verdict, ModerationError> {
        let Some(client) = &self.openai else {
            return Err(ModerationError::Unavailable(
                "OpenAI moderation is not configured".to_owned(),
            ));
        };
        if text.trim().is_empty() {
            return Ok(Verdict::Allowed);
        }
        let key = Some(&client.config.api_key);
        let response = client
            .http
            .post(&client.url)
            .bearer_auth(client.config.api_key.expose_secret())
            .json(&serde_json::json!({"model": client.config.model, "input": text}))
            .send()
            .await
            .map_err(send_error)?;
        let status = response.status();
        if !status.is_success() {
            let raw = read_capped(response, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            let message = openai_error_message(&raw.bytes, key);
            tracing::warn!(status = status.as_u16(), %message, "moderation refused");
            return Err(ModerationError::Rejected {
                status: status.as_u16(),
                message,
            });
        }
        let Capped { bytes, cut } = read_capped(response, MAX_ANSWER_BODY)
            .await
            .map_err(|e| body_error(e, "the answer"))?;
        if cut {
            return Err(ModerationError::BadAnswer(format!(
                "answer over {MAX_ANSWER_BODY} bytes"
            )));
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| {
            ModerationError::BadAnswer(format!(
                "expected JSON with `results`, got {} bytes",
                bytes.len()
            ))
        })?;
        let Some(result) = answer.results.into_iter().next() else {
            return Err(ModerationError::BadAnswer("no results".to_owned()));
        };
        if !result.flagged {
            return Ok(Verdict::Allowed);
        }
        let categories: Vec<&str> = result
            .categories
            .iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .map(|(name, _)| name.as_str())
            .collect();
        let categories = if categories.is_empty() {
            "unspecified".to_owned()
        } else {
            categories.join(", ")
        };
        // Category names come from the provider: bounded like any provider text.
        let reason = format!(
            "moderation: {}",
            truncate_chars(&categories, MAX_MESSAGE_CHARS)
        );
        tracing::info!(%reason, "call-in flagged by moderation");
        Ok(Verdict::Flagged { reason })
    }
}

fn flagged(reason: &str) -> Verdict {
    Verdict::Flagged {
        reason: reason.to_owned(),
    }
}

/// The blocked-word list, normalised once.
struct BlockedWords {
    /// Entries with CJK characters: matched anywhere.
    anywhere: Vec<String>,
    /// Other entries: matched as whole words.
    whole_words: Vec<String>,
}

impl BlockedWords {
    fn new(entries: &[String]) -> Self {
        let mut words = Self {
            anywhere: Vec::new(),
            whole_words: Vec::new(),
        };
        for entry in entries {
            let entry = normalise(entry.trim());
            if entry.is_empty() {
                continue;
            }
            if entry.chars().any(is_cjk) {
                words.anywhere.push(entry);
            } else {
                words.whole_words.push(entry);
            }
        }
        words
    }

    fn blocks(&self, text: &str) -> bool {
        if self.anywhere.is_empty() && self.whole_words.is_empty() {
            return false;
        }
        let text = normalise(text);
        self.anywhere.iter().any(|w| text.contains(w.as_str()))
            || self.whole_words.iter().any(|w| contains_word(&text, w))
    }
}

/// NFKC, then lowercase: the forms a listener might type for the same word compare equal.
fn normalise(text: &str) -> String {
    text.nfkc().collect::<String>().to_lowercase()
}

/// Whether `word` occurs in `text` with no word character right before or after it.
/// Every occurrence is tried, overlapping ones included.
fn contains_word(text: &str, word: &str) -> bool {
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let start = from + found;
        let end = start + word.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char) {
            return true;
        }
        // Step one character on, so an occurrence overlapping this one is still tried.
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// A character that continues a (non-CJK) word: letters and digits of alphabetic scripts.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_cjk(c)
}

/// Han, kana, Hangul and their compatibility forms: scripts written without spaces between
/// words (Korean has spaces, but particles attach to the word).
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'     // Hangul Jamo
        | '\u{2E80}'..='\u{2FDF}'   // CJK and Kangxi radicals
        | '\u{3005}'..='\u{3007}'   // 々 〆 〇
        | '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{3130}'..='\u{318F}'   // Hangul compatibility Jamo
        | '\u{31F0}'..='\u{31FF}'   // Katakana phonetic extensions
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK unified ideographs
        | '\u{AC00}'..='\u{D7AF}'   // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'   // CJK compatibility ideographs
        | '\u{FF66}'..='\u{FF9F}'   // half-width Katakana
        | '\u{20000}'..='\u{3FFFF}' // CJK extensions B and on
    )
}

impl TransportFailure for ModerationError {
    fn timeout() -> Self {
        ModerationError::Timeout
    }

    fn unavailable(cause: String) -> Self {
        ModerationError::Unavailable(cause)
    }

    fn bad_answer(cause: String) -> Self {
        ModerationError::BadAnswer(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "sk-test-key-1234";

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    fn offline(list: &[&str]) -> Moderator {
        Moderator::new(ModerationConfig {
            openai: None,
            blocked_words: words(list),
        })
        .unwrap()
    }

    fn online(base_url: String, timeout: Duration, list: &[&str]) -> Moderator {
        Moderator::new(ModerationConfig {
            openai: Some(OpenAiModeration {
                base_url,
                api_key: SecretString::from(KEY),
                model: DEFAULT_MODEL.to_owned(),
                timeout,
            }),
            blocked_words: words(list),
        })
        .unwrap()
    }

    fn answer(flagged: bool, categories: serde_json::Value) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "modr-1",
            "model": DEFAULT_MODEL,
            "results": [{"flagged": flagged, "categories": categories, "category_scores": {}}],
        }))
    }

    fn blocked() -> Verdict {
        flagged("blocked word")
    }

    #[tokio::test]
    async fn latin_entries_match_whole_words_only() {
        let m = offline(&["ass", "bad word"]);
        assert_eq!(m.check("This class is classy.").await, Verdict::Allowed);
        assert_eq!(m.check("You ASS!").await, blocked());
        assert_eq!(m.check("ass").await, blocked());
        assert_eq!(m.check("a bad-word? no: a BAD WORD.").await, blocked());
        assert_eq!(m.check("bad words").await, Verdict::Allowed);
        // Full-width letters normalise to the entry.
        assert_eq!(m.check("ＡＳＳ").await, blocked());
        // An English word between Japanese words has no spaces around it.
        assert_eq!(m.check("あなたはassです").await, blocked());
    }

    #[tokio::test]
    async fn overlapping_occurrences_are_all_tried() {
        // The first "no no" is part of "xno"; the whole phrase starts inside it.
        let m = offline(&["no no"]);
        assert_eq!(m.check("xno no no").await, blocked());
        assert_eq!(m.check("xno no").await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn cjk_entries_match_inside_a_sentence() {
        let m = offline(&["  バカ ", "死ね", ""]);
        assert_eq!(m.check("お前はバカだな").await, blocked());
        // Half-width katakana normalises to full-width.
        assert_eq!(m.check("ｵﾏｴﾊﾞｶ").await, blocked());
        assert_eq!(m.check("もう死ねばいい").await, blocked());
        assert_eq!(m.check("今日はいい天気ですね").await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn blank_text_and_an_empty_list_allow_without_a_request() {
        // No server at all: a request would fail, and the failure is not visible in
        // `check`, so `check_openai` is asked too.
        let m = online(
            "http://127.0.0.1:9/v1".to_owned(),
            Duration::from_secs(1),
            &[],
        );
        assert_eq!(m.check(" \n ").await, Verdict::Allowed);
        assert_eq!(m.check_openai("").await.unwrap(), Verdict::Allowed);
        assert_eq!(offline(&[" "]).check("anything").await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn flagged_answer_names_its_categories() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/moderations"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(body_json(serde_json::json!({
                "model": "omni-moderation-latest",
                "input": "you are awful",
            })))
            .respond_with(answer(
                true,
                serde_json::json!({
                    "violence": true, "harassment": true, "sexual": false, "self-harm": null,
                }),
            ))
            .expect(1)
            .mount(&server)
            .await;
        let m = online(format!("{}/v1/", server.uri()), Duration::from_secs(5), &[]);
        assert_eq!(
            m.check("you are awful").await,
            flagged("moderation: harassment, violence")
        );
    }

    #[tokio::test]
    async fn unflagged_answer_allows() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer(false, serde_json::json!({"harassment": false})))
            .expect(1)
            .mount(&server)
            .await;
        let m = online(format!("{}/v1", server.uri()), Duration::from_secs(5), &[]);
        assert_eq!(m.check("hello").await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn the_word_list_decides_before_any_request() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer(false, serde_json::json!({})))
            .expect(0)
            .mount(&server)
            .await;
        let m = online(
            format!("{}/v1", server.uri()),
            Duration::from_secs(5),
            &["spam"],
        );
        assert_eq!(m.check("buy spam now").await, blocked());
    }

    #[tokio::test]
    async fn provider_error_allows_and_keeps_the_word_list() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({
                "error": {"message": format!("server on fire (key {KEY})")}
            })))
            .mount(&server)
            .await;
        let m = online(
            format!("{}/v1", server.uri()),
            Duration::from_secs(5),
            &["spam"],
        );
        assert_eq!(m.check("hello").await, Verdict::Allowed);
        assert_eq!(m.check("spam").await, blocked());
        let err = m.check_openai("hello").await.unwrap_err();
        let ModerationError::Rejected { status, message } = &err else {
            panic!("expected Rejected, got {err:?}");
        };
        assert_eq!(*status, 500);
        assert!(message.contains("server on fire"), "{message}");
        assert!(!err.to_string().contains(KEY), "{err}");
        assert!(!format!("{err:?}").contains(KEY), "{err:?}");
        // Both `check("hello")` and `check_openai` asked; "spam" never did.
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn timeout_allows_and_keeps_the_word_list() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                answer(true, serde_json::json!({"harassment": true}))
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let m = online(
            format!("{}/v1", server.uri()),
            Duration::from_millis(200),
            &["スパム"],
        );
        let started = std::time::Instant::now();
        assert_eq!(m.check("hello").await, Verdict::Allowed);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(m.check("これはスパムです").await, blocked());
        let err = m.check_openai("hello").await.unwrap_err();
        assert!(matches!(err, ModerationError::Timeout), "{err:?}");
    }

    #[tokio::test]
    async fn garbage_is_a_bad_answer_and_allows() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw("<html>gateway</html>", "text/html"),
            )
            .mount(&server)
            .await;
        let m = online(format!("{}/v1", server.uri()), Duration::from_secs(5), &[]);
        assert_eq!(m.check("hello").await, Verdict::Allowed);
        let err = m.check_openai("hello").await.unwrap_err();
        assert!(matches!(err, ModerationError::BadAnswer(_)), "{err:?}");
    }

    #[tokio::test]
    async fn without_openai_check_openai_is_unavailable() {
        let err = offline(&[]).check_openai("hello").await.unwrap_err();
        assert!(matches!(err, ModerationError::Unavailable(_)), "{err:?}");
    }
}
