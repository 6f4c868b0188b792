//! A channel's desk: the queue of segments waiting to air and the task that airs them one at
//! a time, sending `segment_started`, a `caption` per sentence as it airs, and
//! `segment_ended`. Without a voice (this issue), each sentence is timed from its length at
//! `host.chars_per_second`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::HostError;
use crate::bus::{HostEvent, Segment, SpeakMode};
use crate::domain::ChannelName;

/// Shortest time a caption stays up, however short its sentence.
const MIN_SENTENCE: Duration = Duration::from_millis(400);

/// What the desk task and the request handlers share.
#[derive(Debug, Default)]
pub struct DeskState {
    pub on_air: Option<Segment>,
    pub next: VecDeque<Segment>,
    /// A `now` request asked to cut this segment short.
    cut: Option<Uuid>,
}

pub struct Desk {
    channel: ChannelName,
    state: Arc<Mutex<DeskState>>,
    wake: Arc<Notify>,
    queue_limit: usize,
    chars_per_second: f64,
    task: JoinHandle<()>,
}

impl Drop for Desk {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<DeskState>) -> MutexGuard<'_, DeskState> {
    // A panic while holding this lock cannot leave the queue half-updated (every update is a
    // single push/pop), so a poisoned lock is still safe to use.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Desk {
    pub fn spawn(
        channel: ChannelName,
        events: broadcast::Sender<HostEvent>,
        queue_limit: usize,
        chars_per_second: f64,
    ) -> Self {
        let state = Arc::new(Mutex::new(DeskState::default()));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(air_loop(
            channel.clone(),
            state.clone(),
            wake.clone(),
            events,
            chars_per_second,
        ));
        Self {
            channel,
            state,
            wake,
            queue_limit,
            chars_per_second,
            task,
        }
    }

    /// Estimated airtime of a text.
    pub fn estimate(&self, text: &str) -> Duration {
        split_sentences(text)
            .iter()
            .map(|s| sentence_duration(s, self.chars_per_second))
            .sum()
    }

    /// Queues a segment; returns how many segments air before it.
    pub fn enqueue(&self, segment: Segment, mode: SpeakMode) -> Result<usize, HostError> {
        let mut st = lock(&self.state);
        if st.next.len() >= self.queue_limit {
            return Err(HostError::QueueFull {
                channel: self.channel.clone(),
                limit: self.queue_limit,
            });
        }
        let ahead = match mode {
            SpeakMode::Next => {
                st.next.push_back(segment);
                st.next.len() - 1 + usize::from(st.on_air.is_some())
            }
            SpeakMode::Now => {
                st.next.push_front(segment);
                st.cut = st.on_air.as_ref().map(|s| s.id);
                0
            }
        };
        drop(st);
        // One waiter (the air loop); a stored permit covers a request made between its checks.
        self.wake.notify_one();
        Ok(ahead)
    }

    /// What is on air and what is queued.
    pub fn snapshot(&self) -> (Option<Segment>, Vec<Segment>) {
        let st = lock(&self.state);
        (st.on_air.clone(), st.next.iter().cloned().collect())
    }
}

/// Splits a script into sentences, keeping their end punctuation (Japanese and Latin).
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            push_sentence(&mut out, &mut current);
            continue;
        }
        current.push(c);
        let ends = matches!(c, '。' | '！' | '？' | '!' | '?')
            || (c == '.' && chars.peek().is_none_or(|n| n.is_whitespace()));
        if ends {
            // Keep closing quotes and brackets with their sentence.
            while let Some(&n) = chars.peek() {
                if matches!(n, '」' | '』' | '"' | '\'' | ')' | '）') {
                    current.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            push_sentence(&mut out, &mut current);
        }
    }
    push_sentence(&mut out, &mut current);
    out
}

fn push_sentence(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_owned());
    }
    current.clear();
}

fn sentence_duration(sentence: &str, chars_per_second: f64) -> Duration {
    let chars = sentence.chars().filter(|c| !c.is_whitespace()).count() as f64;
    Duration::from_secs_f64(chars / chars_per_second).max(MIN_SENTENCE)
}

async fn air_loop(
    channel: ChannelName,
    state: Arc<Mutex<DeskState>>,
    wake: Arc<Notify>,
    events: broadcast::Sender<HostEvent>,
    chars_per_second: f64,
) {
    loop {
        let notified = wake.notified();
        let segment = {
            let mut st = lock(&state);
            let next = st.next.pop_front();
            if let Some(seg) = &next {
                let mut on_air = seg.clone();
                on_air.started_at = Some(Utc::now());
                st.on_air = Some(on_air);
                st.cut = None;
            }
            next
        };
        let Some(mut segment) = segment else {
            notified.await;
            continue;
        };
        segment.started_at = Some(Utc::now());
        let id = segment.id;
        tracing::info!(%channel, segment = %id, "segment on air");
        // Nobody listening is normal (e.g. the API is not connected yet): ignore send errors.
        let _ = events.send(HostEvent::SegmentStarted {
            channel: channel.clone(),
            segment: segment.clone(),
        });
        let mut interrupted = false;
        'sentences: for (index, sentence) in split_sentences(&segment.text).into_iter().enumerate()
        {
            let deadline = Instant::now() + sentence_duration(&sentence, chars_per_second);
            let _ = events.send(HostEvent::Caption {
                channel: channel.clone(),
                segment_id: id,
                index: index as u32,
                text: sentence,
                at: Utc::now(),
            });
            loop {
                let notified = wake.notified();
                if lock(&state).cut == Some(id) {
                    interrupted = true;
                    break 'sentences;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = notified => {}
                }
            }
        }
        lock(&state).on_air = None;
        let _ = events.send(HostEvent::SegmentEnded {
            channel: channel.clone(),
            segment_id: id,
            interrupted,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_in_japanese_and_english() {
        assert_eq!(
            split_sentences("こんにちは。今日は晴れ！「元気？」そうですか"),
            vec!["こんにちは。", "今日は晴れ！", "「元気？」", "そうですか"]
        );
        assert_eq!(
            split_sentences("Hello there. It is 3.5 degrees! Fine?\nYes"),
            vec!["Hello there.", "It is 3.5 degrees!", "Fine?", "Yes"]
        );
        assert!(split_sentences("  \n ").is_empty());
    }

    #[test]
    fn short_sentences_still_show_for_a_moment() {
        assert_eq!(sentence_duration("あ", 12.0), MIN_SENTENCE);
        assert_eq!(
            sentence_duration(&"a".repeat(24), 12.0),
            Duration::from_secs(2)
        );
    }
}
