//! The broadcast hub behind `/ws/broadcast`: per channel, the on-air state and recent
//! captions (for the snapshot a new client gets first) and a bounded fan-out of JSON frames.
//! Each event is serialized once; every client reads it from a `tokio::sync::broadcast`
//! ring of `broadcast.client_queue` frames, so a slow client never slows the others: one
//! that falls behind by more than that is resynced with a fresh snapshot. The snapshot also
//! says how many listen to the channel on the whole station: HTTP stream listeners (counted
//! by each instance's relay, see [`StreamListeners`]) and `/ws/broadcast` clients, this
//! instance's counted live and the other API instances' as they last reported them: every
//! `broadcast.instance_heartbeat_ms` each instance writes its own counts to the store and
//! reads the others' ([`Hub::spawn_instance_heartbeat`]; an instance silent for
//! [`STALE_HEARTBEATS`] heartbeats drops out). A task checks the counts every
//! [`LISTENERS_CHECK_EVERY`] (and after each heartbeat) and sends a `listeners` frame to a
//! channel whose counts changed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use bytestring::ByteString;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::api::queue::QueueSummary;
use crate::bus::{HostEvent, OnAir, PlayoutTiming, PublisherStatus, Speaker};
use crate::db::{ChannelListeners, ListenerCounts, OtherInstances, Store};
use crate::domain::ChannelName;

/// A caption kept for the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecentCaption {
    pub segment_id: Uuid,
    pub index: u32,
    pub text: String,
    pub at: DateTime<Utc>,
    /// The host, or a caller on air.
    pub speaker: Speaker,
}

/// Where the hub learns how many listen to a channel's HTTP stream on this instance.
pub trait StreamListeners: Send + Sync + 'static {
    fn stream_listeners(&self, channel: &ChannelName) -> usize;
}

/// Who is listening to a channel (on the station, or on one API instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Listeners {
    /// Listeners of the HTTP live stream (`GET /v1/channels/{name}/stream`).
    pub stream: usize,
    /// `/ws/broadcast` clients of the channel (the one receiving the snapshot included).
    pub broadcast: usize,
}

/// The first frame a client receives, and the frame that resyncs one that fell behind.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Snapshot<'a> {
    /// Always `snapshot`.
    r#type: &'static str,
    channel: &'a ChannelName,
    /// What is on air and what comes next; `null` until the host has reported.
    on_air: Option<&'a OnAir>,
    /// Recent captions, oldest first.
    captions: Vec<&'a RecentCaption>,
    /// Whether the API currently hears from the host.
    host_connected: bool,
    /// True when this snapshot replaces frames the client missed.
    resync: bool,
    /// Who listens to the channel, all API instances together.
    listeners: Listeners,
    /// The channel's call-in queue: how many wait, and their ids in order.
    queue: &'a QueueSummary,
}

/// A change of the channel's call-in queue (no text, audio or callers).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueFrame<'a> {
    /// Always `queue`.
    r#type: &'static str,
    channel: &'a ChannelName,
    #[serde(flatten)]
    queue: &'a QueueSummary,
}

/// The channel's listener counts changed (see [`Room::check_listeners`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListenersFrame<'a> {
    /// Always `listeners`.
    r#type: &'static str,
    channel: &'a ChannelName,
    listeners: Listeners,
}

#[derive(Default)]
struct RoomState {
    on_air: Option<OnAir>,
    captions: VecDeque<RecentCaption>,
    queue: QueueSummary,
    /// When the last `queue` frame went out, and whether one is scheduled.
    queue_sent_at: Option<tokio::time::Instant>,
    queue_flush_scheduled: bool,
    /// The counts the last listener check found; `None` before the first.
    listeners_checked: Option<Listeners>,
    /// The other API instances' listeners of the channel, as they last reported them.
    others: Listeners,
}

/// `queue` frames go out at most this often per channel: the first change at once, later
/// ones within this, coalesced to the latest state. At 50 call-ins a second and 1 000
/// listeners that is 4 000 frames a second instead of 50 000.
const QUEUE_FRAME_EVERY: Duration = Duration::from_millis(250);

/// How often each channel's listener counts are checked. A `listeners` frame goes out only
/// after a check that found them changed, so a channel gets at most one this often, and a
/// listener who comes and goes between two checks costs no frame at all.
pub const LISTENERS_CHECK_EVERY: Duration = Duration::from_secs(5);

/// One channel's state and fan-out.
pub struct Room {
    channel: ChannelName,
    state: Mutex<RoomState>,
    frames: broadcast::Sender<ByteString>,
    recent_limit: usize,
    stream_listeners: Option<Arc<dyn StreamListeners>>,
}

/// A client's view of a room: its receiver and the snapshot to send first.
pub struct Subscription {
    pub frames: broadcast::Receiver<ByteString>,
    pub snapshot: ByteString,
}

fn to_frame<T: Serialize>(value: &T) -> ByteString {
    // Serializing these plain structs cannot fail; an empty frame would be skipped.
    ByteString::from(serde_json::to_string(value).unwrap_or_default())
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // Every update below leaves the state consistent, so a poisoned lock is usable.
        crate::sync::lock(&self.state)
    }

    fn snapshot(&self, st: &RoomState, host_connected: bool, resync: bool) -> ByteString {
        to_frame(&Snapshot {
            r#type: "snapshot",
            channel: &self.channel,
            on_air: st.on_air.as_ref(),
            captions: st.captions.iter().collect(),
            host_connected,
            resync,
            listeners: self.station(st.others),
            queue: &st.queue,
        })
    }

    /// The channel's call-in queue changed: kept for snapshots, and sent to the clients as
    /// `{"type": "queue", "channel", "length", "ids"}`.
    /// Snapshots always carry the latest; frames are coalesced (see [`QUEUE_FRAME_EVERY`]).
    pub fn set_queue(self: &Arc<Self>, queue: QueueSummary) {
        let mut st = self.lock();
        st.queue = queue;
        if st.queue_flush_scheduled {
            return;
        }
        let now = tokio::time::Instant::now();
        let due = st
            .queue_sent_at
            .map_or(now, |sent| sent + QUEUE_FRAME_EVERY);
        if due <= now {
            self.send_queue(&mut st, now);
            return;
        }
        st.queue_flush_scheduled = true;
        let room = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let mut st = room.lock();
            st.queue_flush_scheduled = false;
            room.send_queue(&mut st, tokio::time::Instant::now());
        });
    }

    fn send_queue(&self, st: &mut RoomState, now: tokio::time::Instant) {
        let frame = to_frame(&QueueFrame {
            r#type: "queue",
            channel: &self.channel,
            queue: &st.queue,
        });
        st.queue_sent_at = Some(now);
        let _ = self.frames.send(frame);
    }

    /// Who listens to this channel on this instance now.
    pub fn own_listeners(&self) -> Listeners {
        Listeners {
            stream: self
                .stream_listeners
                .as_ref()
                .map_or(0, |s| s.stream_listeners(&self.channel)),
            broadcast: self.clients(),
        }
    }

    /// Who listens to this channel on the whole station: this instance's listeners now, and
    /// the other instances' as they last reported them.
    pub fn listeners(&self) -> Listeners {
        let others = self.lock().others;
        self.station(others)
    }

    fn station(&self, others: Listeners) -> Listeners {
        let own = self.own_listeners();
        Listeners {
            stream: own.stream.saturating_add(others.stream),
            broadcast: own.broadcast.saturating_add(others.broadcast),
        }
    }

    /// Sends `{"type": "listeners", "channel", "listeners": {stream, broadcast}}` to the
    /// room's clients when the counts differ from what the last check found; says whether it
    /// did. The frame is serialized once and shared, as every other frame is. With no client
    /// nothing is sent: one that comes gets the counts in its snapshot.
    pub fn check_listeners(&self) -> bool {
        let mut st = self.lock();
        // The gauge is this instance's own count (Prometheus sums the instances); the frame
        // says the station's.
        let own = self.own_listeners();
        crate::metrics::set_listeners(&self.channel, own.stream, own.broadcast);
        let now = self.station(st.others);
        if st.listeners_checked == Some(now) {
            return false;
        }
        st.listeners_checked = Some(now);
        if now.broadcast == 0 {
            return false;
        }
        let frame = to_frame(&ListenersFrame {
            r#type: "listeners",
            channel: &self.channel,
            listeners: now,
        });
        self.frames.send(frame).is_ok()
    }

    /// Subscribes a client. The snapshot and the subscription are taken under one lock, so
    /// the client sees every event after the snapshot, and none twice.
    pub fn subscribe(&self, host_connected: bool) -> Subscription {
        let st = self.lock();
        // Subscribed first, so the snapshot counts the client it is for.
        let frames = self.frames.subscribe();
        Subscription {
            frames,
            snapshot: self.snapshot(&st, host_connected, false),
        }
    }

    /// Resubscribes a client that fell behind: a new receiver at the head, and a snapshot.
    pub fn resync(
        &self,
        frames: &mut broadcast::Receiver<ByteString>,
        host_connected: bool,
    ) -> ByteString {
        let st = self.lock();
        *frames = self.frames.subscribe();
        self.snapshot(&st, host_connected, true)
    }

    /// Connected clients of this room.
    pub fn clients(&self) -> usize {
        self.frames.receiver_count()
    }

    fn apply(&self, event: &HostEvent) {
        let mut st = self.lock();
        match event {
            HostEvent::Hello { .. } => {}
            HostEvent::OnAir { state } => st.on_air = Some(state.clone()),
            HostEvent::SegmentStarted { segment, .. } => {
                if let Some(on_air) = st.on_air.as_mut() {
                    on_air.next.retain(|s| s.id != segment.id);
                    on_air.segment = Some(segment.clone());
                }
            }
            // Calls reach listeners as captions and queue frames; these are for the queue.
            HostEvent::CallerWanted { .. }
            | HostEvent::CallLive { .. }
            | HostEvent::CallEnded(_) => return,
            HostEvent::Caption {
                segment_id,
                index,
                text,
                at,
                speaker,
                ..
            } => {
                if st.captions.len() >= self.recent_limit {
                    st.captions.pop_front();
                }
                st.captions.push_back(RecentCaption {
                    segment_id: *segment_id,
                    index: *index,
                    text: text.clone(),
                    at: *at,
                    speaker: *speaker,
                });
            }
            HostEvent::SegmentEnded { segment_id, .. } => {
                if let Some(on_air) = st.on_air.as_mut()
                    && on_air.segment.as_ref().is_some_and(|s| s.id == *segment_id)
                {
                    on_air.segment = None;
                }
            }
        }
        // No receivers is normal (nobody listening); the frame is simply not kept.
        let _ = self.frames.send(to_frame(event));
    }

    fn replace(&self, on_air: OnAir, host_connected: bool) {
        let mut st = self.lock();
        st.on_air = Some(on_air);
        let _ = self.frames.send(self.snapshot(&st, host_connected, true));
    }
}

/// All rooms of this API instance.
pub struct Hub {
    rooms: RwLock<HashMap<ChannelName, Arc<Room>>>,
    client_queue: usize,
    recent_limit: usize,
    host_connected: std::sync::atomic::AtomicBool,
    stream_listeners: Option<Arc<dyn StreamListeners>>,
    /// Other API instances that reported within the staleness limit.
    other_instances: std::sync::atomic::AtomicUsize,
}

/// An instance not heard from for this many heartbeats drops out of the station's counts.
pub const STALE_HEARTBEATS: u32 = 3;

impl Hub {
    pub fn new(client_queue: usize, recent_limit: usize) -> Self {
        Self {
            rooms: RwLock::new(HashMap::new()),
            client_queue,
            recent_limit,
            host_connected: Default::default(),
            stream_listeners: None,
            other_instances: Default::default(),
        }
    }

    /// Counts stream listeners in snapshots with `counter` (the API's stream relay).
    pub fn with_stream_listeners(mut self, counter: Arc<dyn StreamListeners>) -> Self {
        self.stream_listeners = Some(counter);
        self
    }

    /// The room of `channel`, created on first use.
    pub fn room(&self, channel: &ChannelName) -> Arc<Room> {
        if let Some(room) = self
            .rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
        {
            return room.clone();
        }
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(channel.clone())
            .or_insert_with(|| {
                Arc::new(Room {
                    channel: channel.clone(),
                    state: Mutex::new(RoomState::default()),
                    frames: broadcast::channel(self.client_queue).0,
                    recent_limit: self.recent_limit,
                    stream_listeners: self.stream_listeners.clone(),
                })
            })
            .clone()
    }

    pub fn host_connected(&self) -> bool {
        self.host_connected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_host_connected(&self, up: bool) {
        self.host_connected
            .store(up, std::sync::atomic::Ordering::Relaxed);
    }

    /// Connected `/ws/broadcast` clients, all channels.
    pub fn clients(&self) -> usize {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        rooms.values().map(|r| r.clients()).sum()
    }

    fn all_rooms(&self) -> Vec<Arc<Room>> {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        rooms.values().cloned().collect()
    }

    /// Who listens to each channel on this instance.
    pub fn own_listeners(&self) -> BTreeMap<ChannelName, Listeners> {
        self.all_rooms()
            .iter()
            .map(|room| (room.channel.clone(), room.own_listeners()))
            .collect()
    }

    /// Who listens to each channel on the whole station.
    pub fn station_listeners(&self) -> BTreeMap<ChannelName, Listeners> {
        self.all_rooms()
            .iter()
            .map(|room| (room.channel.clone(), room.listeners()))
            .collect()
    }

    /// API instances counted in the station's numbers, this one included.
    pub fn instances(&self) -> usize {
        1 + self
            .other_instances
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the other instances' counts (as the store summed them) into every room: a room
    /// they report and this instance has not yet is made.
    pub fn set_other_instances(&self, others: &OtherInstances) {
        self.other_instances
            .store(others.instances, std::sync::atomic::Ordering::Relaxed);
        for channel in others.listeners.keys() {
            self.room(channel);
        }
        for room in self.all_rooms() {
            let counts = others
                .listeners
                .get(&room.channel)
                .copied()
                .unwrap_or_default();
            room.lock().others = Listeners {
                stream: usize::try_from(counts.stream).unwrap_or(usize::MAX),
                broadcast: usize::try_from(counts.broadcast).unwrap_or(usize::MAX),
            };
        }
    }

    /// Every `every`, reports this instance's listener counts to `store` and takes in the
    /// other instances' (then checks the rooms' counts, so a change elsewhere reaches the
    /// clients here within a heartbeat), on a task that ends with the hub. When the store
    /// cannot be reached for [`STALE_HEARTBEATS`] heartbeats, the others are no longer
    /// counted (they may have gone meanwhile).
    pub fn spawn_instance_heartbeat(self: &Arc<Self>, store: Arc<dyn Store>, every: Duration) {
        tokio::spawn(heartbeat(Arc::downgrade(self), store, every));
    }

    /// Each channel's LiveKit publisher state, as the host last reported it.
    pub fn livekit_status(&self) -> BTreeMap<ChannelName, PublisherStatus> {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        rooms
            .iter()
            .filter_map(|(name, room)| {
                Some((
                    name.clone(),
                    room.lock().on_air.as_ref()?.livekit.as_deref()?.clone(),
                ))
            })
            .collect()
    }

    /// Each channel's frame clock timing, as of the host's last `on_air` report.
    pub fn playout_timing(&self) -> BTreeMap<ChannelName, PlayoutTiming> {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        rooms
            .iter()
            .filter_map(|(name, room)| {
                Some((name.clone(), room.lock().on_air.as_ref()?.playout.clone()))
            })
            .collect()
    }

    /// Checks every room's listener counts every [`LISTENERS_CHECK_EVERY`] (see
    /// [`Room::check_listeners`]), on a task that ends with the hub (or the runtime).
    pub fn spawn_listener_checks(self: &Arc<Self>) {
        tokio::spawn(check_listeners_every_period(Arc::downgrade(self)));
    }

    /// Applies a host event to the rooms and forwards it to their clients.
    pub fn apply(&self, event: HostEvent) {
        match event {
            HostEvent::Hello { channels, .. } => {
                let up = self.host_connected();
                for on_air in channels {
                    self.room(&on_air.channel.clone()).replace(on_air, up);
                }
            }
            other => {
                if let Some(channel) = other.channel() {
                    self.room(channel).apply(&other);
                }
            }
        }
    }
}

/// The loop of [`Hub::spawn_instance_heartbeat`]. It holds the hub only while it reports.
async fn heartbeat(hub: Weak<Hub>, store: Arc<dyn Store>, every: Duration) {
    let stale = every * STALE_HEARTBEATS;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_ok = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        ticks.tick().await;
        let Some(own) = hub.upgrade().map(|hub| hub.own_listeners()) else {
            return;
        };
        let own: ChannelListeners = own
            .into_iter()
            .map(|(channel, l)| {
                let counts = ListenerCounts {
                    stream: l.stream as u64,
                    broadcast: l.broadcast as u64,
                };
                (channel, counts)
            })
            .collect();
        let reported = store.report_listeners(&own, stale).await;
        let Some(hub) = hub.upgrade() else { return };
        match reported {
            Ok(others) => {
                if failing {
                    tracing::info!("listener counts reach the store again");
                    failing = false;
                }
                last_ok = tokio::time::Instant::now();
                hub.set_other_instances(&others);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "could not exchange listener counts with the other instances");
                    failing = true;
                }
                if last_ok.elapsed() >= stale {
                    hub.set_other_instances(&OtherInstances::default());
                }
            }
        }
        for room in hub.all_rooms() {
            room.check_listeners();
        }
    }
}

/// The loop of [`Hub::spawn_listener_checks`]. It holds the hub only while it checks, so
/// the hub can go, and the loop with it.
async fn check_listeners_every_period(hub: Weak<Hub>) {
    let mut every = tokio::time::interval(LISTENERS_CHECK_EVERY);
    // After a stall, one check and then the period again, not a burst of catching up.
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let rooms: Vec<Arc<Room>> = hub
            .rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for room in rooms {
            room.check_listeners();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> ChannelName {
        ChannelName::parse("radio24").unwrap()
    }

    fn caption(i: u32) -> HostEvent {
        HostEvent::Caption {
            channel: name(),
            segment_id: Uuid::nil(),
            index: i,
            text: format!("line {i}"),
            at: Utc::now(),
            speaker: Speaker::Host,
        }
    }

    #[test]
    fn snapshot_keeps_only_the_recent_captions() {
        let hub = Hub::new(8, 3);
        for i in 0..5 {
            hub.apply(caption(i));
        }
        let sub = hub.room(&name()).subscribe(true);
        let snap: serde_json::Value = serde_json::from_str(&sub.snapshot).unwrap();
        assert_eq!(snap["type"], "snapshot");
        let texts: Vec<_> = snap["captions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts, ["line 2", "line 3", "line 4"]);
    }

    struct FixedListeners(usize);

    impl StreamListeners for FixedListeners {
        fn stream_listeners(&self, channel: &ChannelName) -> usize {
            if channel.as_str() == "radio24" {
                self.0
            } else {
                0
            }
        }
    }

    #[test]
    fn the_snapshot_counts_stream_listeners_and_clients_of_its_channel() {
        let hub = Hub::new(8, 3).with_stream_listeners(Arc::new(FixedListeners(3)));
        let first = hub.room(&name()).subscribe(true);
        let snap: serde_json::Value = serde_json::from_str(&first.snapshot).unwrap();
        assert_eq!(
            snap["listeners"],
            serde_json::json!({"stream": 3, "broadcast": 1})
        );
        let second = hub.room(&name()).subscribe(true);
        let snap: serde_json::Value = serde_json::from_str(&second.snapshot).unwrap();
        assert_eq!(snap["listeners"]["broadcast"], 2);
        let other = hub
            .room(&ChannelName::parse("other").unwrap())
            .subscribe(true);
        let snap: serde_json::Value = serde_json::from_str(&other.snapshot).unwrap();
        assert_eq!(
            snap["listeners"],
            serde_json::json!({"stream": 0, "broadcast": 1})
        );
        drop(first);
        assert_eq!(hub.room(&name()).listeners().broadcast, 1);
    }

    #[test]
    fn the_station_s_counts_add_the_other_instances_to_this_one_s() {
        let hub = Hub::new(8, 3).with_stream_listeners(Arc::new(FixedListeners(3)));
        let room = hub.room(&name());
        let mut sub = room.subscribe(true);
        assert!(room.check_listeners());
        let _ = sub.frames.try_recv();
        let others = OtherInstances {
            instances: 2,
            listeners: [(
                name(),
                ListenerCounts {
                    stream: 2,
                    broadcast: 5,
                },
            )]
            .into(),
        };
        hub.set_other_instances(&others);
        assert_eq!(hub.instances(), 3);
        let station = Listeners {
            stream: 5,
            broadcast: 6,
        };
        assert_eq!(room.listeners(), station);
        assert_eq!(
            hub.own_listeners()[&name()],
            Listeners {
                stream: 3,
                broadcast: 1
            }
        );
        assert_eq!(hub.station_listeners()[&name()], station);
        // A change elsewhere is a change: the clients here hear it.
        assert!(room.check_listeners());
        let frame: serde_json::Value =
            serde_json::from_str(&sub.frames.try_recv().unwrap()).unwrap();
        assert_eq!(
            frame["listeners"],
            serde_json::json!({"stream": 5, "broadcast": 6})
        );
        let snap: serde_json::Value = serde_json::from_str(&room.subscribe(true).snapshot).unwrap();
        assert_eq!(
            snap["listeners"]["broadcast"], 7,
            "the new client counted too"
        );
        // The others gone: this instance's own again.
        hub.set_other_instances(&OtherInstances::default());
        assert_eq!(hub.instances(), 1);
        assert_eq!(room.listeners().stream, 3);
    }

    /// Stream listeners of every channel, set by the test.
    #[derive(Default)]
    struct StreamCount(std::sync::atomic::AtomicUsize);

    impl StreamCount {
        fn set(&self, n: usize) {
            self.0.store(n, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl StreamListeners for StreamCount {
        fn stream_listeners(&self, _: &ChannelName) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn listeners_of(frame: &ByteString) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(frame).unwrap();
        assert_eq!(v["type"], "listeners", "{v}");
        assert_eq!(v["channel"], "radio24", "{v}");
        v["listeners"].clone()
    }

    #[test]
    fn a_listeners_frame_goes_out_only_when_the_counts_changed() {
        let stream = Arc::new(StreamCount::default());
        let hub = Hub::new(8, 3).with_stream_listeners(stream.clone());
        let room = hub.room(&name());
        assert!(!room.check_listeners(), "nobody to tell");

        let mut first = room.subscribe(true);
        assert!(room.check_listeners());
        assert_eq!(
            listeners_of(&first.frames.try_recv().unwrap()),
            serde_json::json!({"stream": 0, "broadcast": 1})
        );
        assert!(!room.check_listeners(), "unchanged");
        assert!(first.frames.try_recv().is_err());

        // Changes between two checks make one frame, with the counts of the second.
        stream.set(2);
        stream.set(3);
        let mut second = room.subscribe(true);
        assert!(room.check_listeners());
        let expected = serde_json::json!({"stream": 3, "broadcast": 2});
        assert_eq!(listeners_of(&first.frames.try_recv().unwrap()), expected);
        assert_eq!(listeners_of(&second.frames.try_recv().unwrap()), expected);
        assert!(first.frames.try_recv().is_err(), "and only one");

        // Someone who came and went between two checks changed nothing.
        drop(room.subscribe(true));
        assert!(!room.check_listeners());

        drop(second);
        assert!(room.check_listeners());
        assert_eq!(
            listeners_of(&first.frames.try_recv().unwrap()),
            serde_json::json!({"stream": 3, "broadcast": 1})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn listener_checks_run_once_a_period_and_end_with_the_hub() {
        let stream = Arc::new(StreamCount::default());
        let hub = Arc::new(Hub::new(64, 3).with_stream_listeners(stream.clone()));
        let room = hub.room(&name());
        let mut sub = room.subscribe(true);
        let checks = tokio::spawn(check_listeners_every_period(Arc::downgrade(&hub)));

        // The first check comes at once; the paused clock moves on while this awaits.
        let first = sub.frames.recv().await.unwrap();
        assert_eq!(listeners_of(&first)["broadcast"], 1);
        let sent = tokio::time::Instant::now();
        stream.set(1);
        let second = sub.frames.recv().await.unwrap();
        assert_eq!(listeners_of(&second)["stream"], 1);
        assert!(
            sent.elapsed() >= LISTENERS_CHECK_EVERY,
            "not before the next check"
        );

        // Unchanged: nothing, however many periods pass.
        tokio::time::sleep(LISTENERS_CHECK_EVERY * 4).await;
        assert!(sub.frames.try_recv().is_err());

        drop(hub);
        tokio::time::timeout(LISTENERS_CHECK_EVERY * 2, checks)
            .await
            .expect("the checks end with the hub")
            .unwrap();
    }

    #[test]
    fn a_client_that_falls_behind_lags_instead_of_blocking_the_sender() {
        let hub = Hub::new(4, 3);
        let room = hub.room(&name());
        let mut sub = room.subscribe(true);
        for i in 0..10 {
            hub.apply(caption(i));
        }
        assert!(matches!(
            sub.frames.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(6))
        ));
        let snapshot = room.resync(&mut sub.frames, true);
        assert!(snapshot.contains("\"resync\":true"));
        assert!(matches!(
            sub.frames.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
        hub.apply(caption(10));
        assert!(sub.frames.try_recv().unwrap().contains("line 10"));
    }

    #[tokio::test(start_paused = true)]
    async fn queue_frames_are_coalesced_to_the_latest_state() {
        let hub = Hub::new(64, 3);
        let room = hub.room(&name());
        let mut sub = room.subscribe(true);
        let summary = |n: usize| QueueSummary {
            length: n,
            ids: (0..n).map(|_| Uuid::new_v4()).collect(),
        };
        let length = |frame: &ByteString| {
            let v: serde_json::Value = serde_json::from_str(frame).unwrap();
            assert_eq!(v["type"], "queue");
            v["length"].as_u64().unwrap()
        };
        // The first change goes out at once.
        room.set_queue(summary(1));
        assert_eq!(length(&sub.frames.try_recv().unwrap()), 1);
        // Three more within the interval: one frame, with the last of them, after it.
        for n in 2..=4 {
            room.set_queue(summary(n));
        }
        assert!(
            sub.frames.try_recv().is_err(),
            "nothing before the interval ends"
        );
        // The paused clock moves on to the scheduled flush while this awaits it.
        assert_eq!(length(&sub.frames.recv().await.unwrap()), 4);
        assert!(sub.frames.try_recv().is_err(), "and only one");
        // Snapshots always have the latest.
        let snap: serde_json::Value = serde_json::from_str(&room.subscribe(true).snapshot).unwrap();
        assert_eq!(snap["queue"]["length"], 4);
    }
}
