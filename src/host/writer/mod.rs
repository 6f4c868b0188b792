//! Script writers: what turns a block, a topic, the schedule's prompt and the news into
//! words. [`template::TemplateWriter`] is offline and never fails; LLM writers implement the
//! same [`ScriptWriter`] trait and fall back to it.

pub mod news;
pub mod openai;
pub mod prompt;
pub mod template;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::Block;
pub use news::{NewsConfig, NewsDesk, NewsError};
pub use openai::{OpenAiWriter, OpenAiWriterConfig};
pub use template::TemplateWriter;

/// A headline from a configured news feed (`news.feeds`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewsItem {
    pub title: String,
    pub summary: Option<String>,
    /// The feed's own title, e.g. "NHK News".
    pub source: String,
    pub link: Option<String>,
    pub published: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a writer is asked to write.
#[derive(Debug, Clone)]
pub struct ScriptBrief<'a> {
    pub station: &'a str,
    pub block: Block,
    pub topic: &'a str,
    /// The schedule row's prompt for this hour, steering the block.
    pub prompt: Option<&'a str>,
    /// BCP 47 language tag of the station, e.g. `ja`.
    pub language: &'a str,
    /// Hour of day on the station's clock, 0–23.
    pub hour: u8,
    /// How long the script should take to say, in seconds (back-timing to the hour).
    pub target_secs: f64,
    /// What the host said recently on this channel, oldest first, so it does not repeat itself.
    pub recent: &'a [String],
    /// Real headlines for NEWS; empty when no feed is configured or reachable.
    pub news: &'a [NewsItem],
    /// A listener's words to answer on air (a call-in): what they typed, or what their
    /// recording said. `Some("")` is a call whose words are unknown (a recording that was
    /// not transcribed). `None`: not an answer.
    pub caller: Option<&'a str>,
}

/// Why a writer produced no script.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("writer unavailable: {0}")]
    Unavailable(String),
    #[error("writer timed out")]
    Timeout,
    #[error("writer answered something unusable: {0}")]
    BadAnswer(String),
}

#[async_trait]
pub trait ScriptWriter: Send + Sync + 'static {
    /// A short name shown in `/now` and in scripts, e.g. `template`, `openai`.
    fn name(&self) -> &'static str;
    async fn write(&self, brief: &ScriptBrief<'_>) -> Result<String, WriterError>;
}
