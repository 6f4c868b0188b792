//! The host: the on-air engine. It keeps a [`desk::Desk`] per channel, writes scripts
//! ([`writer`]), airs what it is asked to say, and publishes what happens as
//! [`HostEvent`]s. It implements [`HostBus`], so in `--role all` the API calls it directly
//! and in `--role host` the bus routes ([`crate::bus::http_server`]) expose it over HTTP.
//! It needs no database: the API pushes the channels and schedules ([`Programme`]).
//!
//! Config keys read here: `station.*`, `schedule.*`, `host.*`, `server.max_text_chars`.

pub mod audio;
pub mod clock;
pub mod desk;
pub mod playout;
pub mod programme;
pub mod voice;
pub mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{Timelike, Utc};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;

use crate::bus::{
    BusError, ChannelProgramme, EventStream, HostBus, HostEvent, OnAir, Programme, Rejection,
    ScheduleSlot, Script, ScriptRequest, Segment, SpeakAccepted, SpeakRequest,
};
use crate::config::Settings;
use crate::domain::{Block, ChannelName, InvalidInput, SpokenText};
use desk::Desk;
use writer::{ScriptBrief, ScriptWriter, TemplateWriter, WriterError};

/// Longest topic accepted in a script request, in characters.
const MAX_TOPIC_CHARS: usize = 200;

/// The host module's errors.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("channel {0:?} is not on this host")]
    UnknownChannel(ChannelName),
    #[error("channel {0:?} is off air")]
    OffAir(ChannelName),
    #[error("channel {channel:?} already has {limit} segments waiting")]
    QueueFull { channel: ChannelName, limit: usize },
    #[error("script writer failed: {0}")]
    Writer(#[from] WriterError),
}

impl From<HostError> for BusError {
    fn from(e: HostError) -> Self {
        let message = e.to_string();
        match e {
            HostError::Invalid(invalid) => invalid.into(),
            HostError::UnknownChannel(_) => {
                BusError::rejected(Rejection::NotFound, "unknown_channel", message)
            }
            HostError::OffAir(_) => {
                BusError::rejected(Rejection::BadRequest, "channel_off_air", message)
            }
            HostError::QueueFull { .. } => {
                BusError::rejected(Rejection::Busy, "queue_full", message)
            }
            HostError::Writer(_) => BusError::Internal(message),
        }
    }
}

/// The host's settings, taken from [`Settings`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub station_name: String,
    pub language: String,
    pub default_channel: ChannelName,
    pub default_schedule: Vec<Block>,
    pub topics: Vec<String>,
    pub max_text_chars: usize,
    pub speak_queue: usize,
    pub event_buffer: usize,
    pub chars_per_second: f64,
}

impl HostConfig {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            station_name: s.station.name.clone(),
            language: s.station.language.clone(),
            default_channel: s.station.default_channel.clone(),
            default_schedule: s.schedule.default.clone(),
            topics: s.schedule.topics.clone(),
            max_text_chars: s.server.max_text_chars,
            speak_queue: s.host.speak_queue,
            event_buffer: s.host.event_buffer,
            chars_per_second: s.host.chars_per_second,
        }
    }
}

/// One channel as the host runs it.
struct Channel {
    live: bool,
    schedule: Vec<ScheduleSlot>,
    next_topic: Arc<AtomicUsize>,
    desk: Arc<Desk>,
}

struct Inner {
    config: HostConfig,
    channels: RwLock<HashMap<ChannelName, Arc<Channel>>>,
    events: broadcast::Sender<HostEvent>,
    writer: Arc<dyn ScriptWriter>,
}

/// The on-air engine. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

impl Host {
    /// A host with the default channel on the default schedule, until a programme arrives.
    /// Must be called inside a tokio runtime (each channel's desk is a task).
    pub fn new(config: HostConfig) -> Self {
        let (events, _) = broadcast::channel(config.event_buffer);
        let host = Self {
            inner: Arc::new(Inner {
                channels: RwLock::new(HashMap::new()),
                events,
                writer: Arc::new(TemplateWriter::new()),
                config,
            }),
        };
        let default = ChannelProgramme {
            name: host.inner.config.default_channel.clone(),
            live: true,
            schedule: host
                .inner
                .config
                .default_schedule
                .iter()
                .enumerate()
                .map(|(hour, block)| ScheduleSlot {
                    hour: hour as u8,
                    block: *block,
                    prompt: None,
                })
                .collect(),
        };
        host.apply_programme(Programme {
            channels: vec![default],
        });
        host
    }

    fn channel(
        &self,
        name: Option<&ChannelName>,
    ) -> Result<(ChannelName, Arc<Channel>), HostError> {
        let name = name.unwrap_or(&self.inner.config.default_channel);
        let channels = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        channels
            .get(name)
            .map(|c| (name.clone(), c.clone()))
            .ok_or_else(|| HostError::UnknownChannel(name.clone()))
    }

    fn apply_programme(&self, programme: Programme) {
        let mut channels = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::with_capacity(programme.channels.len());
        for ch in programme.channels {
            // Keep the running desk (and what it has queued) of a channel that stays.
            let (desk, next_topic) = match channels.remove(&ch.name) {
                Some(old) => (old.desk.clone(), old.next_topic.clone()),
                None => (
                    Arc::new(Desk::spawn(
                        ch.name.clone(),
                        self.inner.events.clone(),
                        self.inner.config.speak_queue,
                        self.inner.config.chars_per_second,
                    )),
                    Arc::new(AtomicUsize::new(0)),
                ),
            };
            next.insert(
                ch.name,
                Arc::new(Channel {
                    live: ch.live,
                    schedule: ch.schedule,
                    next_topic,
                    desk,
                }),
            );
        }
        *channels = next;
    }

    /// The block and prompt the schedule names for the current hour.
    fn current_slot(channel: &Channel) -> Option<&ScheduleSlot> {
        // Station time zones arrive with the programme clock; until then hours are UTC.
        let hour = Utc::now().hour() as u8;
        channel.schedule.iter().find(|s| s.hour == hour)
    }

    fn on_air(&self, name: &ChannelName, channel: &Channel) -> OnAir {
        let (segment, next) = channel.desk.snapshot();
        let ready_ahead_secs = next.iter().map(|s| s.duration_ms as f64 / 1000.0).sum();
        OnAir {
            channel: name.clone(),
            block: Self::current_slot(channel).map(|s| s.block),
            segment,
            next,
            writer: self.inner.writer.name().to_owned(),
            voice: "captions".to_owned(),
            ready_ahead_secs,
        }
    }

    fn hello(&self) -> HostEvent {
        let channels = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut states: Vec<OnAir> = channels.iter().map(|(n, c)| self.on_air(n, c)).collect();
        states.sort_by(|a, b| a.channel.cmp(&b.channel));
        HostEvent::Hello {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: states,
        }
    }
}

#[async_trait]
impl HostBus for Host {
    #[tracing::instrument(skip_all, fields(channel))]
    async fn generate_script(&self, req: ScriptRequest) -> Result<Script, BusError> {
        let (name, channel) = self.channel(req.channel.as_ref())?;
        tracing::Span::current().record("channel", name.as_str());
        let slot = Self::current_slot(&channel);
        let block = req.block.or(slot.map(|s| s.block)).unwrap_or(Block::TopicA);
        // The hour's prompt steers only the block it was written for.
        let prompt = slot
            .filter(|s| s.block == block)
            .and_then(|s| s.prompt.clone());
        let topic = match req.topic {
            Some(t) => SpokenText::parse(&t, MAX_TOPIC_CHARS)
                .map_err(|e| InvalidInput::new("invalid_topic", format!("topic: {}", e.message)))?
                .into_string(),
            None => {
                let topics = &self.inner.config.topics;
                let turn = channel.next_topic.fetch_add(1, Ordering::Relaxed);
                topics[turn % topics.len()].clone()
            }
        };
        let brief = ScriptBrief {
            station: &self.inner.config.station_name,
            block,
            topic: &topic,
            prompt: prompt.as_deref(),
            language: &self.inner.config.language,
            hour: Utc::now().hour() as u8,
            target_secs: 30.0,
            recent: &[],
            news: &[],
        };
        let text = self
            .inner
            .writer
            .write(&brief)
            .await
            .map_err(HostError::from)?;
        Ok(Script {
            channel: name,
            block,
            topic,
            text,
            writer: self.inner.writer.name().to_owned(),
        })
    }

    #[tracing::instrument(skip_all, fields(channel, mode = ?req.mode))]
    async fn speak(&self, req: SpeakRequest) -> Result<SpeakAccepted, BusError> {
        let text = SpokenText::parse(&req.text, self.inner.config.max_text_chars)?;
        let (name, channel) = self.channel(req.channel.as_ref())?;
        tracing::Span::current().record("channel", name.as_str());
        if !channel.live {
            return Err(HostError::OffAir(name).into());
        }
        let segment = Segment {
            id: Uuid::now_v7(),
            block: Self::current_slot(&channel).map(|s| s.block),
            topic: None,
            duration_ms: channel.desk.estimate(text.as_str()).as_millis() as u64,
            text: text.into_string(),
            started_at: None,
        };
        let segment_id = segment.id;
        let queued_ahead = channel.desk.enqueue(segment, req.mode)?;
        tracing::info!(segment = %segment_id, queued_ahead, "speak request queued");
        Ok(SpeakAccepted {
            segment_id,
            channel: name,
            mode: req.mode,
            queued_ahead,
        })
    }

    async fn now_playing(&self, channel: &ChannelName) -> Result<OnAir, BusError> {
        let (name, ch) = self.channel(Some(channel))?;
        Ok(self.on_air(&name, &ch))
    }

    async fn set_programme(&self, programme: Programme) -> Result<(), BusError> {
        for ch in &programme.channels {
            if let Some(bad) = ch.schedule.iter().find(|s| s.hour > 23) {
                return Err(InvalidInput::new(
                    "invalid_schedule",
                    format!("channel {}: hour {} is not 0-23", ch.name, bad.hour),
                )
                .into());
            }
        }
        tracing::info!(channels = programme.channels.len(), "programme updated");
        self.apply_programme(programme);
        Ok(())
    }

    async fn subscribe(&self) -> Result<EventStream, BusError> {
        // Subscribe before taking the snapshot, so nothing falls between the two.
        let receiver = self.inner.events.subscribe();
        let hello = self.hello();
        let host = self.clone();
        let events = BroadcastStream::new(receiver).map(move |item| match item {
            Ok(event) => event,
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "a subscriber fell behind; sending it a fresh snapshot"
                );
                host.hello()
            }
        });
        Ok(futures::stream::once(async move { hello })
            .chain(events)
            .boxed())
    }
}
