//! The LLM writer: scripts from OpenAI Chat Completions, or any OpenAI-compatible server,
//! through `openai-api-rs`. The answer is cleaned into plain spoken text (no markdown, no
//! surrounding quotes, one paragraph, capped at a sentence end); any failure is a
//! [`WriterError`] so the host can fall back to the template writer.
//!
//! Config keys read here (through [`OpenAiWriterConfig`]; the wiring is done by the caller):
//! `openai.base_url`, `openai.api_key` (never logged), `openai.chat_model`,
//! `writer.timeout_secs`, `writer.max_tokens`, `writer.max_chars`.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use openai_api_rs::v1::api::{OpenAIClient, OpenAIClientBuilder};
use openai_api_rs::v1::chat_completion::chat_completion::ChatCompletionRequest;
use openai_api_rs::v1::chat_completion::{
    ChatCompletionMessage, Content, FinishReason, MessageRole,
};
use openai_api_rs::v1::error::APIError;
use secrecy::{ExposeSecret, SecretString};

use super::{ScriptBrief, ScriptWriter, WriterError, prompt};
use crate::metrics::Service;

/// Settings of [`OpenAiWriter`].
#[derive(Clone)]
pub struct OpenAiWriterConfig {
    /// `openai.base_url`: the API root, e.g. `https://api.openai.com/v1`; any
    /// OpenAI-compatible server works. `chat/completions` is appended.
    pub base_url: String,
    /// `openai.api_key`: sent as a bearer token. Empty sends no `Authorization` header (for
    /// local servers that need none).
    pub api_key: SecretString,
    /// `openai.chat_model`, e.g. `gpt-4o-mini`.
    pub model: String,
    /// `writer.timeout_secs`: the whole call, connect to last byte. The library only takes
    /// whole seconds, so it gets this rounded up plus one, and our own deadline enforces it
    /// exactly.
    pub timeout: Duration,
    /// `writer.max_tokens`: the model's output limit (`max_tokens` in the request).
    pub max_tokens: u32,
    /// `writer.max_chars`: the longest script accepted; longer answers are cut at a
    /// sentence end.
    pub max_chars: usize,
}

impl Default for OpenAiWriterConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".to_owned(),
            api_key: SecretString::default(),
            model: "gpt-4o-mini".to_owned(),
            timeout: Duration::from_secs(20),
            max_tokens: 1000,
            max_chars: 4000,
        }
    }
}

impl fmt::Debug for OpenAiWriterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiWriterConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_tokens", &self.max_tokens)
            .field("max_chars", &self.max_chars)
            .finish()
    }
}

/// Writes scripts with an OpenAI-compatible chat model.
pub struct OpenAiWriter {
    // `OpenAIClient` derives `Debug` with the key in it: this type's `Debug` leaves it out.
    client: OpenAIClient,
    model: String,
    timeout: Duration,
    max_tokens: u32,
    max_chars: usize,
}

impl fmt::Debug for OpenAiWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiWriter")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_tokens", &self.max_tokens)
            .field("max_chars", &self.max_chars)
            .finish_non_exhaustive()
    }
}

impl OpenAiWriter {
    /// Checks the settings and builds the client. Fails with a message naming the bad key.
    pub fn new(config: OpenAiWriterConfig) -> Result<Self, WriterError> {
        let base_url = config.base_url.trim();
        let scheme_ok = reqwest::Url::parse(base_url)
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !scheme_ok {
            return Err(WriterError::Unavailable(
                "openai.base_url must be an http(s) URL".to_owned(),
            ));
        }
        let model = config.model.trim().to_owned();
        if model.is_empty() {
            return Err(WriterError::Unavailable(
                "openai.chat_model is empty".to_owned(),
            ));
        }
        if config.timeout.is_zero() {
            return Err(WriterError::Unavailable(
                "writer.timeout_secs must be positive".to_owned(),
            ));
        }
        // A second past ours, rounded up: the library's timeout is only a backstop. At the
        // same value the two race, and the library's, firing mid-body, reports a timeout as
        // an unreadable answer.
        let whole_secs = config
            .timeout
            .as_secs()
            .saturating_add(u64::from(config.timeout.subsec_nanos() > 0))
            .saturating_add(1);
        let mut builder = OpenAIClientBuilder::new()
            .with_endpoint(base_url)
            .with_timeout(whole_secs);
        let key = config.api_key.expose_secret().trim();
        if !key.is_empty() {
            builder = builder.with_api_key(key);
        }
        let client = builder.build().map_err(|_| {
            WriterError::Unavailable("could not build the OpenAI client".to_owned())
        })?;
        Ok(Self {
            client,
            model,
            timeout: config.timeout,
            max_tokens: config.max_tokens.max(1),
            max_chars: config.max_chars.max(1),
        })
    }
}

#[async_trait]
impl ScriptWriter for OpenAiWriter {
    fn name(&self) -> &'static str {
        "openai"
    }

    #[tracing::instrument(skip_all, fields(block = %brief.block, model = %self.model))]
    async fn write(&self, brief: &ScriptBrief<'_>) -> Result<String, WriterError> {
        let messages = vec![
            message(MessageRole::system, prompt::system_prompt(brief)),
            message(MessageRole::user, prompt::user_prompt(brief)),
        ];
        let request = ChatCompletionRequest::new(self.model.clone(), messages)
            .max_tokens(i64::from(self.max_tokens));
        // The library unwraps while building its HTTP client: a panic there must not take
        // the host's task down with it.
        let call = AssertUnwindSafe(self.client.chat_completion(request)).catch_unwind();
        let asked = std::time::Instant::now();
        // Our own deadline: the library's timeout is whole seconds, and only covers the
        // HTTP exchange it knows about.
        let response = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(WriterError::Timeout),
            Ok(Err(_panic)) => Err(WriterError::Unavailable(
                "the OpenAI client panicked".to_owned(),
            )),
            Ok(Ok(result)) => result.map_err(map_api_error),
        };
        // Not streamed: the first token comes with the whole answer.
        let response = match response {
            Ok(r) => {
                crate::metrics::provider_answered(Service::Llm, "openai", asked);
                r.inner
            }
            Err(e) => {
                crate::metrics::provider_failed(Service::Llm, "openai", (&e).into());
                tracing::warn!(error = %e, "script request failed");
                return Err(e);
            }
        };
        let Some(choice) = response.choices.into_iter().next() else {
            tracing::warn!("the chat completion had no choices");
            return Err(WriterError::BadAnswer(
                "no choices in the answer".to_owned(),
            ));
        };
        let truncated = choice.finish_reason == Some(FinishReason::length);
        let raw = choice.message.content.unwrap_or_default();
        let script = clean_script(&raw, self.max_chars, truncated);
        if script.is_empty() {
            tracing::warn!(
                finish_reason = ?choice.finish_reason,
                "the chat completion had no usable text"
            );
            return Err(WriterError::BadAnswer("empty script".to_owned()));
        }
        tracing::debug!(chars = script.chars().count(), truncated, "script written");
        Ok(script)
    }
}

fn message(role: MessageRole, text: String) -> ChatCompletionMessage {
    ChatCompletionMessage {
        role,
        content: Content::Text(text),
        name: None,
        tool_calls: None,
        tool_call_id: None,
    }
}

/// Maps the library's error to ours with a short message: never the response body (it can
/// be long, and error bodies may quote part of the key) and never the key.
fn map_api_error(e: APIError) -> WriterError {
    match e {
        APIError::ReqwestError(e) if e.is_timeout() => WriterError::Timeout,
        APIError::ReqwestError(e) if e.is_connect() => {
            WriterError::Unavailable("cannot connect to the LLM server".to_owned())
        }
        APIError::ReqwestError(e) if e.is_decode() || e.is_body() => {
            WriterError::BadAnswer("unreadable response body".to_owned())
        }
        APIError::ReqwestError(_) => {
            WriterError::Unavailable("request to the LLM server failed".to_owned())
        }
        APIError::CustomError { message } => custom_error(&message),
    }
}

/// The library reports HTTP errors as `"{status}: {body}"` and unparsable 2xx bodies as
/// `"Failed to parse JSON: …"`; keep only the status, or the kind of failure.
fn custom_error(message: &str) -> WriterError {
    if message.starts_with("Failed to parse JSON") {
        return WriterError::BadAnswer("the answer is not a chat completion".to_owned());
    }
    let status = message.split(':').next().unwrap_or("").trim();
    let code_ok = status.len() >= 3
        && status.is_char_boundary(3)
        && status[..3].bytes().all(|b| b.is_ascii_digit())
        && status.len() <= 40;
    if code_ok {
        WriterError::Unavailable(format!("HTTP {status}"))
    } else {
        WriterError::Unavailable("the LLM server answered with an error".to_owned())
    }
}

/// Sentence ends in the languages we speak.
fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '。' | '！' | '？' | '…')
}

/// Turns a model's answer into plain spoken text: strips markdown headers, bullets,
/// emphasis and code fences, a leading speaker label and surrounding quotes; joins lines
/// into one paragraph; caps at `max_chars` on a sentence end. When the model stopped at its
/// token limit (`truncated`), a trailing half sentence is dropped too.
pub fn clean_script(raw: &str, max_chars: usize, truncated: bool) -> String {
    let mut text = String::new();
    for line in raw.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            continue;
        }
        let line = strip_emphasis(strip_line_marker(line));
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        join(&mut text, line);
    }
    let mut text = collapse_whitespace(&text);
    text = strip_speaker_label(&text).to_owned();
    text = strip_quotes(&text).to_owned();
    let mut text = collapse_whitespace(&text);
    if text.chars().count() > max_chars {
        text = cut_at_sentence(&text.chars().take(max_chars).collect::<String>(), true);
    } else if truncated {
        text = cut_at_sentence(&text, false);
    }
    text.trim().to_owned()
}

/// Joins lines: a space between words, nothing between Japanese (or other non-ASCII)
/// sentences, where a space would show in captions.
fn join(text: &mut String, line: &str) {
    let needs_space = match (text.chars().last(), line.chars().next()) {
        (Some(prev), Some(next)) => prev.is_ascii() || next.is_ascii(),
        _ => false,
    };
    if needs_space {
        text.push(' ');
    }
    text.push_str(line);
}

/// Drops a markdown header, bullet, numbered-list or quote marker at the start of a line.
fn strip_line_marker(line: &str) -> &str {
    let mut s = line;
    if s.starts_with('#') {
        s = s.trim_start_matches('#');
    }
    for marker in ["> ", "- ", "* ", "+ ", "• ", "・"] {
        if let Some(rest) = s.strip_prefix(marker) {
            s = rest;
            break;
        }
    }
    // "1. " or "1) "
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &s[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            s = rest;
        }
    }
    s.trim_start()
}

/// Removes `**`, `__`, `*`, `~~` and backticks. A single `_` is kept: it can be part of a
/// word, and spoken scripts rarely have one.
fn strip_emphasis(line: &str) -> String {
    line.replace("**", "")
        .replace("__", "")
        .replace("~~", "")
        .replace(['*', '`'], "")
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Drops a leading "Host:"-style label; the prompt forbids them, models add them anyway.
fn strip_speaker_label(s: &str) -> &str {
    const LABELS: &[&str] = &[
        "host",
        "radio host",
        "dj",
        "announcer",
        "narrator",
        "presenter",
        "パーソナリティ",
        "ホスト",
        "アナウンサー",
    ];
    for sep in [':', '：'] {
        if let Some((label, rest)) = s.split_once(sep) {
            let label = label.trim().to_lowercase();
            if LABELS.contains(&label.as_str()) {
                return rest.trim_start();
            }
        }
    }
    s
}

/// Drops one pair of quotes around the whole text.
fn strip_quotes(s: &str) -> &str {
    const PAIRS: &[(char, char)] = &[
        ('"', '"'),
        ('\'', '\''),
        ('“', '”'),
        ('‘', '’'),
        ('「', '」'),
        ('『', '』'),
    ];
    for (open, close) in PAIRS {
        if let Some(inner) = s.strip_prefix(*open).and_then(|r| r.strip_suffix(*close)) {
            // "A" and "B" is not a quoted whole: only strip when the inside has no quotes
            // of the same kind.
            if !inner.contains(*open) && !inner.contains(*close) {
                return inner.trim();
            }
        }
    }
    s
}

/// Cuts `s` after its last sentence end, if that keeps at least half of it (a lone "Dr." near
/// the start is no place to cut). Otherwise cuts at the last word boundary when `or_at_word`
/// (a capped answer must get shorter), else keeps `s` whole.
fn cut_at_sentence(s: &str, or_at_word: bool) -> String {
    if let Some((i, c)) = s.char_indices().rev().find(|(_, c)| is_sentence_end(*c)) {
        // Keep a closing quote or bracket that ends the sentence with it.
        let mut end = i + c.len_utf8();
        for next in s[end..].chars() {
            if matches!(next, '"' | '”' | '’' | '」' | '』' | ')' | '）') {
                end += next.len_utf8();
            } else {
                break;
            }
        }
        if end >= s.len() / 2 {
            return s[..end].to_owned();
        }
    }
    if or_at_word {
        match s.rfind(char::is_whitespace) {
            Some(i) if i > 0 => s[..i].to_owned(),
            _ => s.to_owned(),
        }
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Block;
    use crate::host::writer::NewsItem;
    use serde_json::{Value, json};
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "sk-test-not-a-real-key";

    fn config(base_url: String) -> OpenAiWriterConfig {
        OpenAiWriterConfig {
            base_url,
            api_key: SecretString::from(KEY),
            model: "test-model".to_owned(),
            timeout: Duration::from_secs(5),
            max_tokens: 300,
            max_chars: 4000,
        }
    }

    fn brief<'a>(block: Block, news: &'a [NewsItem]) -> ScriptBrief<'a> {
        ScriptBrief {
            station: "Radio24",
            block,
            topic: "night trains",
            prompt: Some("Mention the sleeper service to Aomori."),
            language: "en",
            hour: 22,
            target_secs: 30.0,
            recent: &[],
            news,
            caller: None,
        }
    }

    fn completion(content: &str) -> Value {
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "test-model",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
        })
    }

    async fn server_answering(template: ResponseTemplate) -> MockServer {
        crate::install_crypto_provider();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/chat/completions"))
            .respond_with(template)
            .mount(&server)
            .await;
        server
    }

    fn writer(server: &MockServer) -> OpenAiWriter {
        match OpenAiWriter::new(config(server.uri())) {
            Ok(w) => w,
            Err(e) => panic!("writer: {e}"),
        }
    }

    /// The JSON body of the one request the server received.
    async fn sent_body(server: &MockServer) -> Value {
        let requests = server.received_requests().await.unwrap_or_default();
        assert_eq!(requests.len(), 1, "expected exactly one request");
        requests[0].body_json().unwrap()
    }

    #[tokio::test]
    async fn request_carries_key_model_block_topic_and_prompt() {
        crate::install_crypto_provider();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/chat/completions"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion("Hello.")))
            .expect(1)
            .mount(&server)
            .await;
        let text = writer(&server)
            .write(&brief(Block::TopicA, &[]))
            .await
            .unwrap();
        assert_eq!(text, "Hello.");

        let body = sent_body(&server).await;
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["max_tokens"], 300);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["role"], "system");
        assert!(messages[0]["content"].as_str().unwrap().contains("Radio24"));
        assert_eq!(messages[1]["role"], "user");
        let user = messages[1]["content"].as_str().unwrap();
        assert!(user.contains("Block: TOPIC_A"), "{user}");
        assert!(user.contains("Topic: night trains"), "{user}");
        assert!(
            user.contains("Mention the sleeper service to Aomori."),
            "{user}"
        );
    }

    #[tokio::test]
    async fn news_brief_sends_the_headlines() {
        let server =
            server_answering(ResponseTemplate::new(200).set_body_json(completion("News."))).await;
        let news = vec![NewsItem {
            title: "Harbour bridge closes for repairs".to_owned(),
            summary: Some("Closed until Friday.".to_owned()),
            source: "City Wire".to_owned(),
            link: None,
            published: None,
        }];
        writer(&server)
            .write(&brief(Block::News, &news))
            .await
            .unwrap();
        let body = sent_body(&server).await;
        let user = body["messages"][1]["content"].as_str().unwrap();
        assert!(user.contains("Block: NEWS"), "{user}");
        assert!(
            user.contains(
                "Harbour bridge closes for repairs (source: City Wire): Closed until Friday."
            ),
            "{user}"
        );
        assert!(user.contains("Report only these items"), "{user}");
    }

    #[tokio::test]
    async fn answer_is_cleaned_into_plain_spoken_text() {
        let raw = "\"**Good evening!**\n\n# Tonight\n- Night trains are *back*.\n  Stay   tuned.\"";
        let server =
            server_answering(ResponseTemplate::new(200).set_body_json(completion(raw))).await;
        let text = writer(&server)
            .write(&brief(Block::TopicA, &[]))
            .await
            .unwrap();
        assert_eq!(
            text,
            "Good evening! Tonight Night trains are back. Stay tuned."
        );
    }

    #[tokio::test]
    async fn blank_answer_is_a_bad_answer() {
        let server =
            server_answering(ResponseTemplate::new(200).set_body_json(completion("  **  \n")))
                .await;
        let err = writer(&server)
            .write(&brief(Block::TopicA, &[]))
            .await
            .unwrap_err();
        assert!(matches!(err, WriterError::BadAnswer(_)), "{err:?}");
    }

    #[tokio::test]
    async fn server_error_is_unavailable_with_status_and_without_body() {
        let server = server_answering(
            ResponseTemplate::new(500).set_body_string(format!("boom, your key was {KEY}")),
        )
        .await;
        let err = writer(&server)
            .write(&brief(Block::TopicA, &[]))
            .await
            .unwrap_err();
        match &err {
            WriterError::Unavailable(msg) => assert!(msg.contains("500"), "{msg}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(KEY), "{shown}");
        assert!(!shown.contains("boom"), "{shown}");
    }

    #[tokio::test]
    async fn unauthorized_is_unavailable() {
        let server = server_answering(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided: sk-te****key"}}),
        ))
        .await;
        let err = writer(&server)
            .write(&brief(Block::TopicA, &[]))
            .await
            .unwrap_err();
        match &err {
            WriterError::Unavailable(msg) => {
                assert!(msg.contains("401"), "{msg}");
                assert!(!msg.contains("sk-"), "{msg}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    /// Garbage from a 2xx is the server answering something unusable: `BadAnswer`.
    #[tokio::test]
    async fn garbage_answers_are_bad_answers() {
        let not_json = ResponseTemplate::new(200).set_body_string("<html>proxy login</html>");
        let no_choices = ResponseTemplate::new(200)
            .set_body_json(json!({"id": "x", "object": "chat.completion"}));
        let empty_choices = ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}
        }));
        let null_content = ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}
        }));
        for (name, template) in [
            ("not json", not_json),
            ("no choices", no_choices),
            ("empty choices", empty_choices),
            ("null content", null_content),
        ] {
            let server = server_answering(template).await;
            let err = writer(&server)
                .write(&brief(Block::TopicA, &[]))
                .await
                .unwrap_err();
            assert!(matches!(err, WriterError::BadAnswer(_)), "{name}: {err:?}");
            assert!(!format!("{err}").contains("proxy login"), "{name}: {err}");
        }
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let server = server_answering(
            ResponseTemplate::new(200)
                .set_body_json(completion("Too late."))
                .set_delay(Duration::from_secs(30)),
        )
        .await;
        let mut cfg = config(server.uri());
        cfg.timeout = Duration::from_millis(200);
        let writer = OpenAiWriter::new(cfg).unwrap();
        let err = writer.write(&brief(Block::TopicA, &[])).await.unwrap_err();
        assert!(matches!(err, WriterError::Timeout), "{err:?}");
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        crate::install_crypto_provider();
        // A port that was just free: nothing listens on it once the listener is dropped.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let writer = OpenAiWriter::new(config(format!("http://127.0.0.1:{port}/v1"))).unwrap();
        let err = writer.write(&brief(Block::TopicA, &[])).await.unwrap_err();
        assert!(matches!(err, WriterError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let mut cfg = config("ftp://example.invalid".to_owned());
        let err = OpenAiWriter::new(cfg.clone()).unwrap_err();
        assert!(err.to_string().contains("openai.base_url"), "{err}");
        cfg.base_url = "http://127.0.0.1:1/v1".to_owned();
        cfg.model = " ".to_owned();
        let err = OpenAiWriter::new(cfg.clone()).unwrap_err();
        assert!(err.to_string().contains("openai.chat_model"), "{err}");
        cfg.model = "m".to_owned();
        cfg.timeout = Duration::ZERO;
        let err = OpenAiWriter::new(cfg).unwrap_err();
        assert!(err.to_string().contains("writer.timeout_secs"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let cfg = config("http://127.0.0.1:1/v1".to_owned());
        assert!(!format!("{cfg:?}").contains(KEY));
        let writer = OpenAiWriter::new(cfg).unwrap();
        assert!(!format!("{writer:?}").contains(KEY));
    }

    #[test]
    fn cleaning_strips_labels_quotes_and_lists() {
        assert_eq!(
            clean_script("Host: Hello there.", 100, false),
            "Hello there."
        );
        assert_eq!(
            clean_script("「こんばんは。\n今夜も始まりました。」", 100, false),
            "こんばんは。今夜も始まりました。"
        );
        assert_eq!(
            clean_script("1. First point.\n2) Second point.", 100, false),
            "First point. Second point."
        );
        assert_eq!(
            clean_script("```\nPlain words.\n```", 100, false),
            "Plain words."
        );
        // Quotes inside the text are speech, not wrapping.
        assert_eq!(
            clean_script("\"Hi\" she said, \"bye\"", 100, false),
            "\"Hi\" she said, \"bye\""
        );
    }

    #[test]
    fn long_answers_are_cut_at_a_sentence_end() {
        let text = "One sentence here. Another one follows! And a third goes on and on";
        assert_eq!(
            clean_script(text, 45, false),
            "One sentence here. Another one follows!"
        );
        assert_eq!(
            clean_script(
                "これは一文目です。これは二文目です。三文目は途中",
                20,
                false
            ),
            "これは一文目です。これは二文目です。"
        );
        // No sentence end within the cap: cut at a word.
        assert_eq!(
            clean_script("alpha beta gamma delta", 12, false),
            "alpha beta"
        );
        // A model stopped by its token limit loses its half sentence.
        assert_eq!(
            clean_script("Complete sentence. Half a sent", 4000, true),
            "Complete sentence."
        );
    }

    #[test]
    fn status_is_kept_and_body_dropped_from_http_errors() {
        match custom_error("503 Service Unavailable: {\"error\": \"sk-secret\"}") {
            WriterError::Unavailable(m) => assert_eq!(m, "HTTP 503 Service Unavailable"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            custom_error("Failed to parse JSON: expected value / response garbage"),
            WriterError::BadAnswer(_)
        ));
        match custom_error("something odd") {
            WriterError::Unavailable(m) => assert!(!m.contains("odd"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
