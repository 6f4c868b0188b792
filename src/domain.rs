//! Domain types shared by every module: parsed once at the edge, so invalid input never
//! reaches the engine or the database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest channel name accepted (the seed stores it as TEXT; this keeps URLs and logs sane).
pub const MAX_CHANNEL_NAME: usize = 64;

/// Why a piece of input was refused. `code` is the snake_case error code clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    /// Stable, machine-readable code, e.g. `empty_text`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl InvalidInput {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A channel's name: 1–64 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter or
/// digit. It doubles as the LiveKit room name, so it stays URL- and log-safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChannelName(String);

/// In the OpenAPI document: a string of the form [`ChannelName::parse`] takes (the derive
/// cannot say a pattern of a newtype's string).
impl utoipa::PartialSchema for ChannelName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_CHANNEL_NAME))
            .pattern(Some("^[a-z0-9][a-z0-9_-]*$"))
            .examples(["radio24"])
            .into()
    }
}

impl utoipa::ToSchema for ChannelName {}

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InvalidInput::new(
                "invalid_channel",
                "channel name is empty",
            ));
        }
        if name.len() > MAX_CHANNEL_NAME {
            return Err(InvalidInput::new(
                "invalid_channel",
                format!("channel name is longer than {MAX_CHANNEL_NAME} characters"),
            ));
        }
        let valid_first = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_rest = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_first || !valid_rest {
            return Err(InvalidInput::new(
                "invalid_channel",
                "channel name may contain only a-z, 0-9, '-' and '_', and must start with a letter or digit",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A programme block, as the seed's `schedule.block` CHECK constraint names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Block {
    #[serde(rename = "OP")]
    Op,
    #[serde(rename = "NEWS")]
    News,
    #[serde(rename = "QANDA")]
    Qanda,
    #[serde(rename = "MUSIC")]
    Music,
    #[serde(rename = "TOPIC_A")]
    TopicA,
    #[serde(rename = "JINGLE")]
    Jingle,
}

impl Block {
    pub const ALL: [Block; 6] = [
        Block::Op,
        Block::News,
        Block::Qanda,
        Block::Music,
        Block::TopicA,
        Block::Jingle,
    ];

    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Block::Op => "OP",
            Block::News => "NEWS",
            Block::Qanda => "QANDA",
            Block::Music => "MUSIC",
            Block::TopicA => "TOPIC_A",
            Block::Jingle => "JINGLE",
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Block {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Block::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                InvalidInput::new(
                    "invalid_block",
                    format!("unknown block {s:?}; valid blocks are OP, NEWS, QANDA, MUSIC, TOPIC_A, JINGLE"),
                )
            })
    }
}

/// Text for the host to say or to use as a topic: trimmed, non-empty, at most `max_chars`
/// characters (Unicode scalar values, so Japanese counts per character, not per byte).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SpokenText(String);

impl SpokenText {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, InvalidInput> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(InvalidInput::new("empty_text", "text is empty"));
        }
        let chars = text.chars().count();
        if chars > max_chars {
            return Err(InvalidInput::new(
                "text_too_long",
                format!("text has {chars} characters; the limit is {max_chars}"),
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(InvalidInput::new(
                "invalid_text",
                "text contains control characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_checked() {
        assert_eq!(
            ChannelName::parse(" radio24 ").map(|c| c.0),
            Ok("radio24".into())
        );
        assert!(ChannelName::parse("").is_err());
        assert!(ChannelName::parse("Radio24").is_err());
        assert!(ChannelName::parse("-x").is_err());
        assert!(ChannelName::parse("a/b").is_err());
        assert!(ChannelName::parse(&"a".repeat(65)).is_err());
        assert!(ChannelName::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn blocks_round_trip_through_their_seed_names() {
        for block in Block::ALL {
            assert_eq!(block.as_str().parse::<Block>(), Ok(block));
            let json = serde_json::to_string(&block).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", block.as_str()));
        }
        assert_eq!("topic_a".parse::<Block>(), Ok(Block::TopicA));
        assert_eq!(
            "DJ".parse::<Block>().map_err(|e| e.code),
            Err("invalid_block")
        );
    }

    #[test]
    fn spoken_text_limits_count_characters_not_bytes() {
        assert_eq!(
            SpokenText::parse("  ", 10).map_err(|e| e.code),
            Err("empty_text")
        );
        assert!(SpokenText::parse("こんにちは", 5).is_ok());
        assert_eq!(
            SpokenText::parse("こんにちは!", 5).map_err(|e| e.code),
            Err("text_too_long")
        );
        assert_eq!(
            SpokenText::parse("a\u{0}b", 5).map_err(|e| e.code),
            Err("invalid_text")
        );
        assert_eq!(SpokenText::parse(" hi\n", 5).map(|t| t.0), Ok("hi".into()));
    }
}
