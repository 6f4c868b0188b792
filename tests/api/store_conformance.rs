//! One conformance suite for every store adapter: SQLite on a temp file, PostgreSQL on a
//! throw-away database. The call-in queue has a suite of its own, and races between two
//! store instances (two pools, as two processes would have) on one database.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, TimeDelta, Utc};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use radio24::db::postgres::PgStore;
use radio24::db::sqlite::SqliteStore;
use radio24::db::{
    CallAudio, CallItem, CallKind, CallStatus, CallerLimits, ChannelListeners, EnqueueRefusal,
    ListenerCounts, NewCall, OtherInstances, QueueSignal, SlotEdit, Store, StoreError, seed,
};
use radio24::domain::{Block, ChannelName};
use secrecy::SecretString;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::helpers::{Deadline, PATIENCE, TestDb};

fn name(s: &str) -> ChannelName {
    ChannelName::parse(s).unwrap()
}

fn day() -> Vec<Block> {
    (0..24).map(|h| Block::ALL[h % Block::ALL.len()]).collect()
}

/// The results of two racing calls, each given [`PATIENCE`]: one still running after that
/// fails the test, saying how each ended.
fn both<T, E: std::fmt::Debug>(
    what: &str,
    a: Result<Result<T, E>, tokio::time::error::Elapsed>,
    b: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> (Result<T, E>, Result<T, E>) {
    let outcome = |r: &Result<Result<T, E>, _>| match r {
        Err(_) => format!("still running after {PATIENCE:?}"),
        Ok(Ok(_)) => "done".to_owned(),
        Ok(Err(e)) => format!("{e:?}"),
    };
    match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => panic!(
            "two racing {what}: the first {}, the second {}",
            outcome(&a),
            outcome(&b)
        ),
    }
}

async fn conformance(store: Arc<dyn Store>) {
    store.ping().await.unwrap();

    // Channels: created once, found by name, listed by name.
    let (created, fresh) = store.ensure_channel(&name("radio24")).await.unwrap();
    assert!(fresh);
    assert!(created.live);
    assert!(created.started_at.is_some());
    let (again, fresh) = store.ensure_channel(&name("radio24")).await.unwrap();
    assert!(!fresh);
    assert_eq!(again.id, created.id);
    assert_eq!(
        store.channel_by_name(&name("radio24")).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(store.channel_by_name(&name("nope")).await.unwrap(), None);
    store.ensure_channel(&name("alpha")).await.unwrap();
    let names: Vec<String> = store
        .list_channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "radio24"]);

    // The default schedule goes in once, hour by hour.
    assert_eq!(store.seed_schedule(created.id, &day()).await.unwrap(), 24);
    assert_eq!(store.seed_schedule(created.id, &day()).await.unwrap(), 0);
    let schedule = store.schedule(created.id).await.unwrap();
    assert_eq!(schedule.len(), 24);
    for (hour, entry) in schedule.iter().enumerate() {
        assert_eq!(entry.hour as usize, hour);
        assert_eq!(entry.block, day()[hour]);
        assert_eq!(entry.channel_id, created.id);
        assert_eq!(entry.prompt, None);
    }

    // One hour can be replaced; the schedule keeps one row per hour.
    let slot = store
        .set_schedule_slot(created.id, 7, Block::News, Some("朝のニュース"))
        .await
        .unwrap();
    assert_eq!((slot.hour, slot.block), (7, Block::News));
    assert_eq!(slot.prompt.as_deref(), Some("朝のニュース"));
    let schedule = store.schedule(created.id).await.unwrap();
    assert_eq!(schedule.len(), 24);
    assert_eq!(schedule[7], slot);
    let err = store
        .set_schedule_slot(uuid::Uuid::now_v7(), 7, Block::News, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Several hours at once are written whole, or not at all.
    let edit = |hour: u8, block: Block| SlotEdit {
        hour,
        block,
        prompt: None,
    };
    let written = store
        .set_schedule_slots(created.id, vec![edit(1, Block::Op), edit(2, Block::Jingle)])
        .await
        .unwrap();
    assert_eq!(
        written
            .iter()
            .map(|e| (e.hour, e.block))
            .collect::<Vec<_>>(),
        [(1, Block::Op), (2, Block::Jingle)]
    );
    // Hour 99 breaks the seed's CHECK: the hour before it is not kept either.
    store
        .set_schedule_slots(
            created.id,
            vec![edit(3, Block::Music), edit(99, Block::Music)],
        )
        .await
        .unwrap_err();
    let schedule = store.schedule(created.id).await.unwrap();
    assert_eq!(schedule.len(), 24);
    assert_eq!(schedule[3].block, day()[3], "rolled back");
    assert_eq!(
        (schedule[1].block, schedule[2].block),
        (Block::Op, Block::Jingle)
    );

    // Two starts racing to create the same default channel end with one channel and one
    // schedule.
    let race = name("race");
    let blocks = day();
    let (a, b) = tokio::join!(
        tokio::time::timeout(
            PATIENCE,
            seed::ensure_default_channel(store.as_ref(), &race, &blocks)
        ),
        tokio::time::timeout(
            PATIENCE,
            seed::ensure_default_channel(store.as_ref(), &race, &blocks)
        ),
    );
    let (a, b) = both("ensure_default_channel calls", a, b);
    assert_eq!(a.unwrap().id, b.unwrap().id);
    let channel = store.channel_by_name(&race).await.unwrap().unwrap();
    assert_eq!(store.schedule(channel.id).await.unwrap().len(), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/radio24.db");
    let store = SqliteStore::open(&path, 4, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(path.exists(), "the file and its folders are created");
    conformance(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_opened_twice_at_once_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("radio24.db");
    let (a, b) = tokio::join!(
        tokio::time::timeout(
            PATIENCE,
            SqliteStore::open(&path, 2, Duration::from_secs(5))
        ),
        tokio::time::timeout(
            PATIENCE,
            SqliteStore::open(&path, 2, Duration::from_secs(5))
        ),
    );
    let (a, b) = both("opens of one SQLite file", a, b);
    let (a, b) = (a.unwrap(), b.unwrap());
    let (ch, _) = a.ensure_channel(&name("radio24")).await.unwrap();
    assert_eq!(
        b.channel_by_name(&name("radio24"))
            .await
            .unwrap()
            .unwrap()
            .id,
        ch.id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(
        &SecretString::from(db.url.clone()),
        4,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied.len(), 5);
    assert!(
        store.migrate().await.unwrap().is_empty(),
        "migrations apply once"
    );
    conformance(Arc::new(store)).await;
}

// ---- The call-in queue.

/// Limits no test reaches unless it means to.
const ROOMY: CallerLimits = CallerLimits {
    max_waiting: 10_000,
    max_per_hour: 10_000,
};

fn text_call(channel: &ChannelName, user: &str, text: &str) -> NewCall {
    NewCall {
        channel: channel.clone(),
        user_id: user.to_owned(),
        text: Some(text.to_owned()),
        audio: None,
    }
}

fn audio_call(channel: &ChannelName, user: &str, audio: &CallAudio) -> NewCall {
    NewCall {
        channel: channel.clone(),
        user_id: user.to_owned(),
        text: None,
        audio: Some(audio.clone()),
    }
}

/// 100 ms at 24 kHz, every byte value in it.
fn recording() -> CallAudio {
    CallAudio {
        sample_rate: 24_000,
        pcm: (0..4800u32).map(|i| (i * 37 % 256) as u8).collect(),
    }
}

/// Enqueues within [`ROOMY`] limits: the item and its position.
async fn enqueue(store: &dyn Store, call: NewCall) -> (CallItem, u32) {
    store.enqueue_call(call, ROOMY).await.unwrap().unwrap()
}

fn ids(items: &[CallItem]) -> Vec<Uuid> {
    items.iter().map(|item| item.id).collect()
}

/// Direct access to a store's database, for rows the store itself never writes.
enum Raw {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

impl Raw {
    /// Inserts a `queued` row of `kind` with `meta` (SQL: a quoted literal or NULL), the
    /// other columns left to their defaults.
    async fn insert(&self, id: Uuid, kind: &str, meta: &str) {
        let sql = format!(
            "INSERT INTO queue (id, user_id, kind, meta, status) \
             VALUES ('{id}', 'raw-user', '{kind}', {meta}, 'queued')"
        );
        match self {
            Raw::Sqlite(_) => {
                self.sqlite(move |conn| {
                    diesel::connection::SimpleConnection::batch_execute(conn, &sql).unwrap()
                })
                .await
            }
            Raw::Postgres(url) => {
                let mut conn = Self::postgres(url).await;
                diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &sql)
                    .await
                    .unwrap();
            }
        }
    }

    /// A row's `meta` as the database holds it.
    async fn meta(&self, id: Uuid) -> String {
        match self {
            Raw::Sqlite(_) => {
                let sql = format!("SELECT meta AS line FROM queue WHERE id = '{id}'");
                self.sqlite(move |conn| {
                    diesel::RunQueryDsl::get_result::<Line>(diesel::sql_query(sql), conn)
                        .unwrap()
                        .line
                })
                .await
            }
            Raw::Postgres(url) => {
                let mut conn = Self::postgres(url).await;
                diesel_async::RunQueryDsl::get_result::<Line>(
                    diesel::sql_query(format!(
                        "SELECT meta::text AS line FROM queue WHERE id = '{id}'"
                    )),
                    &mut conn,
                )
                .await
                .unwrap()
                .line
            }
        }
    }

    /// Runs `op` on a connection of its own to the SQLite file, within [`PATIENCE`].
    async fn sqlite<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut diesel::SqliteConnection) -> T + Send + 'static,
    ) -> T {
        let Raw::Sqlite(path) = self else {
            unreachable!("a SQLite connection to a PostgreSQL store")
        };
        let path = path.to_str().unwrap().to_owned();
        let task = tokio::task::spawn_blocking(move || {
            let mut conn =
                <diesel::SqliteConnection as diesel::Connection>::establish(&path).unwrap();
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                "PRAGMA busy_timeout = 5000;",
            )
            .unwrap();
            op(&mut conn)
        });
        tokio::time::timeout(PATIENCE, task)
            .await
            .unwrap_or_else(|_| panic!("SQLite: no answer after {PATIENCE:?}"))
            .unwrap()
    }

    async fn postgres(url: &str) -> diesel_async::AsyncPgConnection {
        tokio::time::timeout(
            PATIENCE,
            <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(url),
        )
        .await
        .unwrap_or_else(|_| panic!("PostgreSQL: no connection after {PATIENCE:?}"))
        .unwrap()
    }
}

async fn queue_conformance(store: Arc<dyn Store>, raw: Raw) {
    let store = store.as_ref();
    let (a, b) = (name("calls-a"), name("calls-b"));
    let audio = recording();

    // Nothing waits yet.
    assert_eq!(store.claim_next_call(&a).await.unwrap(), None);
    assert!(store.queued_calls(&a).await.unwrap().is_empty());
    assert_eq!(store.call(Uuid::new_v4()).await.unwrap(), None);

    // Text and audio items on two channels: each told its place on its channel.
    let (t1, pos) = enqueue(store, text_call(&a, "ann", "first")).await;
    assert_eq!(pos, 1);
    assert_eq!(
        (t1.channel.as_str(), t1.user_id.as_str(), t1.kind, t1.status),
        ("calls-a", "ann", CallKind::Text, CallStatus::Queued)
    );
    assert_eq!(t1.text.as_deref(), Some("first"));
    assert_eq!((t1.priority, t1.requeues), (0, 0));
    assert_eq!((t1.duration_ms, t1.sample_rate), (None, None));
    assert_eq!(
        (&t1.transcript, &t1.reason, t1.ended_at),
        (&None, &None, None)
    );
    let (a1, pos) = enqueue(store, audio_call(&a, "bob", &audio)).await;
    assert_eq!(pos, 2);
    assert_eq!((a1.kind, a1.text.as_deref()), (CallKind::Audio, None));
    assert_eq!((a1.duration_ms, a1.sample_rate), (Some(100), Some(24_000)));
    let (b1, pos) = enqueue(store, text_call(&b, "ann", "other channel")).await;
    assert_eq!(pos, 1);
    let (t2, pos) = enqueue(store, text_call(&a, "cat", "third")).await;
    assert_eq!(pos, 3);
    // The store sets the time, finer than milliseconds, in the order the items came.
    assert!(t1.enqueued_at < a1.enqueued_at && a1.enqueued_at < t2.enqueued_at);
    assert!(
        [&t1, &a1, &b1, &t2]
            .iter()
            .any(|item| item.enqueued_at.timestamp_subsec_micros() % 1000 != 0),
        "enqueued_at has microseconds"
    );

    // What was written reads back the same, the recording byte for byte.
    for item in [&t1, &a1, &b1, &t2] {
        assert_eq!(store.call(item.id).await.unwrap().as_ref(), Some(item));
    }
    assert_eq!(store.call_audio(a1.id).await.unwrap(), Some(audio.clone()));
    assert_eq!(store.call_audio(t1.id).await.unwrap(), None);
    assert_eq!(store.call_audio(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(
        ids(&store.queued_calls(&a).await.unwrap()),
        [t1.id, a1.id, t2.id]
    );
    assert_eq!(ids(&store.queued_calls(&b).await.unwrap()), [b1.id]);

    // Priority first (a raised item moves ahead, a lowered one behind), then arrival.
    let raised = store.set_call_priority(t2.id, 5).await.unwrap().unwrap();
    assert_eq!((raised.priority, raised.id), (5, t2.id));
    assert_eq!(store.call(t2.id).await.unwrap(), Some(raised));
    assert_eq!(
        ids(&store.queued_calls(&a).await.unwrap()),
        [t2.id, t1.id, a1.id]
    );
    assert_eq!(
        store.set_call_priority(Uuid::new_v4(), 1).await.unwrap(),
        None
    );
    let (t3, pos) = enqueue(store, text_call(&a, "dan", "fourth")).await;
    assert_eq!(pos, 4);
    store.set_call_priority(t3.id, 5).await.unwrap().unwrap();
    store.set_call_priority(t1.id, -1).await.unwrap().unwrap();
    let (t4, pos) = enqueue(store, text_call(&a, "eve", "fifth")).await;
    assert_eq!(pos, 4, "ahead of the lowered item");
    let queued = store.queued_calls(&a).await.unwrap();
    assert_eq!(ids(&queued), [t2.id, t3.id, a1.id, t4.id, t1.id]);

    let transcribed = store
        .set_call_transcript(a1.id, "hello radio")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(transcribed.transcript.as_deref(), Some("hello radio"));
    assert_eq!(store.call(a1.id).await.unwrap(), Some(transcribed));
    assert_eq!(
        store
            .set_call_transcript(Uuid::new_v4(), "x")
            .await
            .unwrap(),
        None
    );

    // Listing: the newest `limit`, oldest first, optionally of one status.
    let listed = |status, limit| store.list_calls(&a, status, limit);
    let all = [t1.id, a1.id, t2.id, t3.id, t4.id];
    assert_eq!(ids(&listed(None, 10).await.unwrap()), all);
    assert_eq!(ids(&listed(None, 2).await.unwrap()), [t3.id, t4.id]);
    assert!(listed(None, 0).await.unwrap().is_empty());
    assert_eq!(
        ids(&listed(Some(CallStatus::Queued), 10).await.unwrap()),
        all
    );
    assert!(listed(Some(CallStatus::Live), 10).await.unwrap().is_empty());
    assert_eq!(ids(&store.list_calls(&b, None, 10).await.unwrap()), [b1.id]);

    // Claiming takes the head and makes it live; an empty channel has nothing to give.
    let claimed = store.claim_next_call(&a).await.unwrap().unwrap();
    assert_eq!((claimed.id, claimed.status), (t2.id, CallStatus::Live));
    assert_eq!(store.call(t2.id).await.unwrap().as_ref(), Some(&claimed));
    assert_eq!(
        ids(&store.queued_calls(&a).await.unwrap()),
        [t3.id, a1.id, t4.id, t1.id]
    );
    assert_eq!(ids(&store.live_calls(&a).await.unwrap()), [t2.id]);
    assert_eq!(
        ids(&listed(Some(CallStatus::Live), 10).await.unwrap()),
        [t2.id]
    );
    assert_eq!(store.claim_next_call(&b).await.unwrap().unwrap().id, b1.id);
    assert_eq!(store.claim_next_call(&b).await.unwrap(), None);

    // Status changes are compare-and-set.
    assert_eq!(
        store
            .set_call_status(t2.id, &[CallStatus::Queued], CallStatus::Done, None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.call(t2.id).await.unwrap().as_ref(), Some(&claimed));
    assert_eq!(
        store
            .set_call_status(Uuid::new_v4(), &[CallStatus::Live], CallStatus::Done, None)
            .await
            .unwrap(),
        None
    );
    // Back from live to queued: one more requeue, and its place at the head again.
    let requeued = store
        .set_call_status(
            t2.id,
            &[CallStatus::Live],
            CallStatus::Queued,
            Some("host_lost"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            requeued.status,
            requeued.requeues,
            requeued.reason.as_deref()
        ),
        (CallStatus::Queued, 1, Some("host_lost"))
    );
    assert_eq!(requeued.ended_at, None);
    assert_eq!(requeued.enqueued_at, t2.enqueued_at);
    assert_eq!(store.call(t2.id).await.unwrap().as_ref(), Some(&requeued));
    assert!(store.live_calls(&a).await.unwrap().is_empty());
    let again = store.claim_next_call(&a).await.unwrap().unwrap();
    assert_eq!((again.id, again.requeues), (t2.id, 1));
    // Done: when it ended is recorded (and the requeue is kept).
    let earliest = Utc::now().trunc_subsecs(6);
    let done = store
        .set_call_status(t2.id, &[CallStatus::Live], CallStatus::Done, Some("aired"))
        .await
        .unwrap()
        .unwrap();
    let latest = Utc::now();
    assert_eq!(
        (done.status, done.reason.as_deref(), done.requeues),
        (CallStatus::Done, Some("aired"), 1)
    );
    let ended = done.ended_at.expect("ended_at on done");
    assert!(
        earliest <= ended && ended <= latest,
        "{earliest} {ended} {latest}"
    );
    assert_eq!(store.call(t2.id).await.unwrap().as_ref(), Some(&done));
    // Dropped, from either of two statuses: ended too; without a reason, none is set.
    let dropped = store
        .set_call_status(
            t1.id,
            &[CallStatus::Queued, CallStatus::Live],
            CallStatus::Dropped,
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (dropped.status, dropped.reason),
        (CallStatus::Dropped, None)
    );
    assert!(dropped.ended_at.is_some());
    assert!(store.live_calls(&a).await.unwrap().is_empty());

    // A caller's items: those not final, and those ended since a time.
    let of = |channel, user, since| store.calls_of_user(channel, user, since);
    let long_ago = Utc::now() - TimeDelta::days(1);
    let later = Utc::now() + TimeDelta::days(1);
    assert_eq!(ids(&of(&a, "cat", ended).await.unwrap()), [t2.id]);
    assert!(
        of(&a, "cat", ended + TimeDelta::microseconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ids(&of(&a, "ann", long_ago).await.unwrap()), [t1.id]);
    assert!(of(&a, "ann", later).await.unwrap().is_empty());
    assert_eq!(ids(&of(&b, "ann", later).await.unwrap()), [b1.id], "live");
    let (d2, _) = enqueue(store, text_call(&a, "dan", "again")).await;
    assert_eq!(ids(&of(&a, "dan", later).await.unwrap()), [t3.id, d2.id]);
    assert!(of(&a, "nobody", long_ago).await.unwrap().is_empty());

    // A second recording, live (so not ended) when the first is purged.
    let (a2, _) = enqueue(store, audio_call(&b, "fay", &audio)).await;
    assert_eq!(store.claim_next_call(&b).await.unwrap().unwrap().id, a2.id);

    // Expiry drops what waited since before the time given, on every channel; what is
    // live or final stays as it is.
    assert!(
        store
            .expire_calls(Utc::now() - TimeDelta::hours(1))
            .await
            .unwrap()
            .is_empty()
    );
    let expired = store
        .expire_calls(Utc::now() + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(ids(&expired), [a1.id, t3.id, t4.id, d2.id]);
    for item in &expired {
        assert_eq!(item.status, CallStatus::Dropped);
        assert_eq!(item.reason.as_deref(), Some("expired"));
        assert!(item.ended_at.is_some());
        assert_eq!(store.call(item.id).await.unwrap().as_ref(), Some(item));
    }
    assert_eq!(expired[0].transcript.as_deref(), Some("hello radio"));
    assert!(store.queued_calls(&a).await.unwrap().is_empty());
    assert_eq!(
        store.call(b1.id).await.unwrap().unwrap().status,
        CallStatus::Live
    );
    assert_eq!(store.call(t2.id).await.unwrap().as_ref(), Some(&done));

    // Recordings of ended items go; a live item's stays.
    assert_eq!(
        store
            .purge_call_audio(Utc::now() - TimeDelta::hours(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge_call_audio(Utc::now() + TimeDelta::hours(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.call_audio(a1.id).await.unwrap(), None);
    assert_eq!(store.call_audio(a2.id).await.unwrap(), Some(audio.clone()));
    assert_eq!(
        store
            .purge_call_audio(Utc::now() + TimeDelta::hours(1))
            .await
            .unwrap(),
        0
    );

    // A row another writer made: its column defaults read, and keys this version does not
    // know survive an edit.
    let foreign = Uuid::new_v4();
    raw.insert(
        foreign,
        "text",
        r#"'{"channel": "raw", "future_key": {"kept": true}}'"#,
    )
    .await;
    let item = store.call(foreign).await.unwrap().unwrap();
    assert_eq!(
        (item.priority, item.requeues, item.status),
        (0, 0, CallStatus::Queued)
    );
    store.set_call_priority(foreign, 2).await.unwrap().unwrap();
    let meta: serde_json::Value = serde_json::from_str(&raw.meta(foreign).await).unwrap();
    assert_eq!(meta["future_key"]["kept"], true, "{meta}");
    assert_eq!(meta["priority"], 2, "{meta}");
    assert_eq!(
        ids(&store.queued_calls(&name("raw")).await.unwrap()),
        [foreign]
    );

    // Rows this version cannot read are corrupt, not misread.
    for (kind, meta) in [
        ("phone", r#"'{"channel": "corrupt"}'"#),
        ("text", "NULL"),
        ("text", r#"'{"priority": 1}'"#),
        ("text", r#"'{"channel": "Not A Channel!"}'"#),
        ("text", r#"'{"channel": "corrupt", "priority": "high"}'"#),
    ] {
        let id = Uuid::new_v4();
        raw.insert(id, kind, meta).await;
        let err = store.call(id).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(_)),
            "{kind} {meta}: {err:?}"
        );
        let err = store.set_call_priority(id, 1).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(_)),
            "{kind} {meta}: {err:?}"
        );
    }
    let err = store.queued_calls(&name("corrupt")).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

/// Per caller and channel: `max_waiting` items queued at once, `max_per_hour` enqueued
/// in the last hour whatever became of them.
async fn limits_conformance(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (ch, other) = (name("limits"), name("limits-other"));
    let limits = CallerLimits {
        max_waiting: 2,
        max_per_hour: 3,
    };
    let enqueue = |channel, user| store.enqueue_call(text_call(channel, user, "hi"), limits);
    let (x1, pos) = enqueue(&ch, "xena").await.unwrap().unwrap();
    assert_eq!(pos, 1);
    let (x2, pos) = enqueue(&ch, "xena").await.unwrap().unwrap();
    assert_eq!(pos, 2);
    assert_eq!(
        enqueue(&ch, "xena").await.unwrap(),
        Err(EnqueueRefusal::TooManyWaiting)
    );
    // Another caller, or the same caller on another channel, is not held back.
    let (y1, pos) = enqueue(&ch, "yuri").await.unwrap().unwrap();
    assert_eq!(pos, 3);
    assert_eq!(enqueue(&other, "xena").await.unwrap().unwrap().1, 1);
    assert_eq!(
        ids(&store.queued_calls(&ch).await.unwrap()),
        [x1.id, x2.id, y1.id],
        "a refusal writes nothing"
    );

    // A claimed item no longer waits, but still counts for the hour.
    assert_eq!(store.claim_next_call(&ch).await.unwrap().unwrap().id, x1.id);
    let (_, pos) = enqueue(&ch, "xena").await.unwrap().unwrap();
    assert_eq!(pos, 3);
    assert_eq!(
        enqueue(&ch, "xena").await.unwrap(),
        Err(EnqueueRefusal::TooManyWaiting)
    );
    assert_eq!(store.claim_next_call(&ch).await.unwrap().unwrap().id, x2.id);
    assert_eq!(
        enqueue(&ch, "xena").await.unwrap(),
        Err(EnqueueRefusal::TooManyThisHour)
    );
    store
        .set_call_status(x1.id, &[CallStatus::Live], CallStatus::Done, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        enqueue(&ch, "xena").await.unwrap(),
        Err(EnqueueRefusal::TooManyThisHour)
    );
    assert!(enqueue(&ch, "yuri").await.unwrap().is_ok());
}

/// Spawns `tasks` and awaits them all, within one [`PATIENCE`] deadline.
async fn race<T: Send + 'static>(
    what: &str,
    tasks: Vec<impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let total = tasks.len();
    let mut set = JoinSet::new();
    for task in tasks {
        set.spawn(task);
    }
    let mut deadline = Deadline::new(format!("{total} racing {what}"), PATIENCE);
    let mut ended = Vec::with_capacity(total);
    while let Some(result) = deadline.step(set.join_next()).await {
        ended.push(result.unwrap());
        deadline.saw(format!("{} of {total} ended", ended.len()));
    }
    ended
}

/// Two stores (two pools) claim from one queue of 200 items, two loops each: every item
/// is claimed once, none twice, none left.
async fn claims_race(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let ch = name("claims");
    let mut enqueued = HashSet::new();
    for i in 0..200 {
        let store = if i % 2 == 0 { &first } else { &second };
        let user = format!("caller-{}", i % 7);
        let (item, pos) = enqueue(store.as_ref(), text_call(&ch, &user, "race")).await;
        assert_eq!(pos, i + 1);
        enqueued.insert(item.id);
    }
    let start = Arc::new(Barrier::new(4));
    let loops = [&first, &second, &first, &second].map(|store| {
        let (store, ch, start) = (Arc::clone(store), ch.clone(), Arc::clone(&start));
        async move {
            start.wait().await;
            let mut claimed = Vec::new();
            while let Some(item) = store.claim_next_call(&ch).await.unwrap() {
                assert_eq!(item.status, CallStatus::Live);
                claimed.push(item.id);
            }
            claimed
        }
    });
    let claimed: Vec<Uuid> = race("claim loops", loops.into_iter().collect())
        .await
        .into_iter()
        .flatten()
        .collect();
    let distinct: HashSet<Uuid> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), claimed.len(), "an item was claimed twice");
    assert_eq!(distinct, enqueued, "every item was claimed");
    assert!(first.queued_calls(&ch).await.unwrap().is_empty());
    assert_eq!(second.live_calls(&ch).await.unwrap().len(), 200);
}

/// Twenty enqueues of one caller at once, through two stores: exactly `max_waiting` go in
/// (places 1 to 3); with `max_per_hour` the tighter limit, exactly that many.
async fn enqueue_race(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let ch = name("enqueues");
    let attempts = |user: &'static str, limits: CallerLimits| {
        let start = Arc::new(Barrier::new(20));
        (0..20)
            .map(|i| {
                let store = Arc::clone(if i % 2 == 0 { &first } else { &second });
                let (ch, start) = (ch.clone(), Arc::clone(&start));
                async move {
                    start.wait().await;
                    store
                        .enqueue_call(text_call(&ch, user, "me too"), limits)
                        .await
                        .unwrap()
                        .map(|(_, pos)| pos)
                }
            })
            .collect::<Vec<_>>()
    };
    let waiting = CallerLimits {
        max_waiting: 3,
        max_per_hour: 100,
    };
    let outcomes = race("enqueues", attempts("rush", waiting)).await;
    let mut positions: Vec<u32> = outcomes.iter().filter_map(|o| o.ok()).collect();
    positions.sort();
    assert_eq!(positions, [1, 2, 3], "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(_) | Err(EnqueueRefusal::TooManyWaiting))),
        "{outcomes:?}"
    );
    assert_eq!(first.queued_calls(&ch).await.unwrap().len(), 3);

    let hourly = CallerLimits {
        max_waiting: 100,
        max_per_hour: 2,
    };
    let outcomes = race("enqueues", attempts("hurry", hourly)).await;
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        2,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(_) | Err(EnqueueRefusal::TooManyThisHour))),
        "{outcomes:?}"
    );
    assert_eq!(second.queued_calls(&ch).await.unwrap().len(), 5);
}

/// A fresh SQLite file and two stores open on it (two pools, as two processes would have).
async fn sqlite_pair() -> (tempfile::TempDir, PathBuf, Arc<dyn Store>, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("radio24.db");
    let first = SqliteStore::open(&path, 4, Duration::from_secs(5))
        .await
        .unwrap();
    let second = SqliteStore::open(&path, 4, Duration::from_secs(5))
        .await
        .unwrap();
    (dir, path, Arc::new(first), Arc::new(second))
}

/// A throw-away PostgreSQL database, migrated, and two stores connected to it.
async fn postgres_pair() -> Option<(TestDb, Arc<dyn Store>, Arc<dyn Store>)> {
    let db = TestDb::create().await?;
    let url = SecretString::from(db.url.clone());
    let first = PgStore::connect(&url, 4, Duration::from_secs(5))
        .await
        .unwrap();
    first.migrate().await.unwrap();
    let second = PgStore::connect(&url, 4, Duration::from_secs(5))
        .await
        .unwrap();
    Some((db, Arc::new(first), Arc::new(second)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_call_queue_conforms() {
    let (_dir, path, store, _) = sqlite_pair().await;
    queue_conformance(Arc::clone(&store), Raw::Sqlite(path)).await;
    limits_conformance(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_call_queue_conforms() {
    let Some((db, store, _)) = postgres_pair().await else {
        return;
    };
    queue_conformance(Arc::clone(&store), Raw::Postgres(db.url.clone())).await;
    limits_conformance(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_stores_claim_each_call_once() {
    let (_dir, _, first, second) = sqlite_pair().await;
    claims_race(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_stores_claim_each_call_once() {
    let Some((_db, first, second)) = postgres_pair().await else {
        return;
    };
    claims_race(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_enqueues_keep_the_caller_limits() {
    let (_dir, _, first, second) = sqlite_pair().await;
    enqueue_race(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_enqueues_keep_the_caller_limits() {
    let Some((_db, first, second)) = postgres_pair().await else {
        return;
    };
    enqueue_race(first, second).await;
}

/// Two stores on one database are two API instances: each reports its listener counts and
/// reads the other's; a stale instance drops out, a stopping one can leave at once.
async fn instances_conformance(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    assert_ne!(first.instance_id(), second.instance_id());
    let minute = Duration::from_secs(60);
    let counts = |stream, broadcast| ListenerCounts { stream, broadcast };
    let mine: ChannelListeners = [(name("radio24"), counts(1, 2))].into();
    let theirs: ChannelListeners = [
        (name("radio24"), counts(3, 4)),
        (name("other"), counts(0, 1)),
    ]
    .into();

    let alone = first.report_listeners(&mine, minute).await.unwrap();
    assert_eq!(alone, OtherInstances::default(), "nobody else yet");
    let seen = second.report_listeners(&theirs, minute).await.unwrap();
    assert_eq!(seen.instances, 1);
    assert_eq!(seen.listeners, mine);
    let seen = first.report_listeners(&mine, minute).await.unwrap();
    assert_eq!((seen.instances, &seen.listeners), (1, &theirs));
    // A new report replaces the old one.
    let fewer: ChannelListeners = [(name("radio24"), counts(0, 1))].into();
    second.report_listeners(&fewer, minute).await.unwrap();
    let seen = first.report_listeners(&mine, minute).await.unwrap();
    assert_eq!(seen.listeners, fewer);

    // Not seen within the limit: forgotten (a limit of zero makes every other row stale).
    let seen = first.report_listeners(&mine, Duration::ZERO).await.unwrap();
    assert_eq!(seen, OtherInstances::default());
    // Back, and then gone on purpose.
    second.report_listeners(&theirs, minute).await.unwrap();
    assert_eq!(
        first
            .report_listeners(&mine, minute)
            .await
            .unwrap()
            .instances,
        1
    );
    second.forget_instance().await.unwrap();
    let seen = first.report_listeners(&mine, minute).await.unwrap();
    assert_eq!(seen, OtherInstances::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_instances_share_listener_counts() {
    let (_dir, _, first, second) = sqlite_pair().await;
    assert!(first.queue_changes().is_none(), "one instance: no feed");
    first
        .announce_queue_change(&name("radio24"), &[Uuid::new_v4()])
        .await
        .unwrap();
    instances_conformance(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_share_listener_counts() {
    let Some((_db, first, second)) = postgres_pair().await else {
        return;
    };
    instances_conformance(first, second).await;
}

/// The next signal of a queue feed, within [`PATIENCE`].
async fn signal(feed: &mut tokio::sync::broadcast::Receiver<QueueSignal>) -> QueueSignal {
    tokio::time::timeout(PATIENCE, feed.recv())
        .await
        .unwrap_or_else(|_| panic!("no queue signal after {PATIENCE:?}"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_changes_reach_the_other_instance_and_survive_a_lost_connection() {
    let Some((db, first, second)) = postgres_pair().await else {
        return;
    };
    let mut heard = second.queue_changes().unwrap();
    assert_eq!(
        signal(&mut heard).await,
        QueueSignal::Missed,
        "first, once listening"
    );
    let ch = name("radio24");
    // Its own changes the second does not hear back; the first's it does, with every id
    // (more than fit in one notification).
    second.announce_queue_change(&ch, &[]).await.unwrap();
    let ids: Vec<Uuid> = (0..150).map(|_| Uuid::new_v4()).collect();
    first.announce_queue_change(&ch, &ids).await.unwrap();
    let mut got = Vec::new();
    while got.len() < ids.len() {
        match signal(&mut heard).await {
            QueueSignal::Changed { channel, ids } => {
                assert_eq!(channel, ch);
                got.extend(ids);
            }
            other => panic!("{other:?} instead of the first's change"),
        }
    }
    assert_eq!(got, ids);

    // The listening connection is killed: it comes back, says changes may have been
    // missed, and hears the next one.
    let mut admin = RawPg::connect(&db.url).await;
    admin.terminate().await;
    assert_eq!(signal(&mut heard).await, QueueSignal::Missed);
    let id = Uuid::new_v4();
    first.announce_queue_change(&ch, &[id]).await.unwrap();
    assert_eq!(
        signal(&mut heard).await,
        QueueSignal::Changed {
            channel: ch,
            ids: vec![id]
        }
    );
}

/// A plain connection to the test database, to kill the listener's.
struct RawPg(diesel_async::AsyncPgConnection);

impl RawPg {
    async fn connect(url: &str) -> Self {
        use diesel_async::AsyncConnection;
        Self(
            tokio::time::timeout(PATIENCE, diesel_async::AsyncPgConnection::establish(url))
                .await
                .unwrap()
                .unwrap(),
        )
    }

    /// Terminates the backends listening for queue changes on this database.
    async fn terminate(&mut self) {
        use diesel_async::RunQueryDsl;
        let killed = diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'radio24 queue listener'",
        )
        .execute(&mut self.0)
        .await
        .unwrap();
        assert_eq!(killed, 1, "one listening connection");
    }
}
