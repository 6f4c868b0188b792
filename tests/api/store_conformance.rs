//! One conformance suite for every store adapter: SQLite on a temp file, PostgreSQL on a
//! throw-away database.

use std::sync::Arc;
use std::time::Duration;

use radio24::db::postgres::PgStore;
use radio24::db::sqlite::SqliteStore;
use radio24::db::{Store, StoreError, seed};
use radio24::domain::{Block, ChannelName};
use secrecy::SecretString;

use crate::helpers::{PATIENCE, TestDb};

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
    assert_eq!(applied.len(), 3);
    assert!(
        store.migrate().await.unwrap().is_empty(),
        "migrations apply once"
    );
    conformance(Arc::new(store)).await;
}
