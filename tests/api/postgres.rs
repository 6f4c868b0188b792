//! PostgreSQL: `radio24 migrate` with the seed's env names creates the seed's schema
//! exactly, and the station runs on it.

use std::process::Stdio;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use radio24::cli::Role;
use serde_json::Value;

use crate::broadcast::captions_of;
use crate::helpers::{PATIENCE, TestApp, TestDb, config_dir};

/// The seed document's DDL, verbatim.
const SEED_DDL: &str = r#"
CREATE TABLE channel (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name TEXT NOT NULL UNIQUE,
    live BOOLEAN DEFAULT true,
    started_at TIMESTAMPTZ DEFAULT now()
);
CREATE TABLE schedule (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    channel_id UUID REFERENCES channel(id) ON DELETE CASCADE,
    hour INTEGER CHECK (hour >= 0 AND hour <= 23),
    block TEXT CHECK (block IN ('OP', 'NEWS', 'QANDA', 'MUSIC', 'TOPIC_A', 'JINGLE')) NOT NULL,
    prompt TEXT,
    created_at TIMESTAMPTZ DEFAULT now()
);
CREATE TABLE queue (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id TEXT,
    kind TEXT CHECK (kind IN ('audio', 'text', 'phone')) NOT NULL,
    text TEXT,
    meta JSONB,
    enqueued_at TIMESTAMPTZ DEFAULT now(),
    status TEXT CHECK (status IN ('queued', 'live', 'done', 'dropped')) DEFAULT 'queued'
);
"#;

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// A connection to `url`, within [`PATIENCE`].
async fn connect(url: &str) -> AsyncPgConnection {
    tokio::time::timeout(PATIENCE, AsyncPgConnection::establish(url))
        .await
        .unwrap_or_else(|_| panic!("PostgreSQL: no connection after {PATIENCE:?}"))
        .unwrap()
}

/// Columns (name, type, nullability, default) and constraints of the seed's tables.
async fn describe(url: &str) -> Vec<String> {
    let mut conn = connect(url).await;
    let mut lines: Vec<Line> = diesel::sql_query(
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable \
         || ' default=' || coalesce(column_default, '-') AS line \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name IN ('channel', 'schedule', 'queue')",
    )
    .load(&mut conn)
    .await
    .unwrap();
    lines.extend(
        diesel::sql_query(
            "SELECT conrelid::regclass::text || ' ' || contype::text || ' ' || pg_get_constraintdef(oid) AS line \
             FROM pg_constraint WHERE conrelid::regclass::text IN ('channel', 'schedule', 'queue')",
        )
        .load::<Line>(&mut conn)
        .await
        .unwrap(),
    );
    let mut lines: Vec<String> = lines.into_iter().map(|l| l.line).collect();
    lines.sort();
    lines
}

async fn run_migrate(db: &TestDb) -> String {
    run_migrate_at(db, &url_parts(&db.url).host).await
}

/// `radio24 migrate` with the seed's names, `POSTGRES_HOST` = `host` (a name or a folder).
async fn run_migrate_at(db: &TestDb, host: &str) -> String {
    use tokio::io::AsyncReadExt;
    let url = url_parts(&db.url);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_radio24"))
        .args(["migrate", "--config-dir"])
        .arg(config_dir())
        .env_remove("DATABASE_URL")
        .env("POSTGRES_HOST", host)
        .env("POSTGRES_PORT", &url.port)
        .env("POSTGRES_USER", &url.user)
        .env("POSTGRES_DB", &db.name)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    // Read as it runs (what it printed so far is in the message if it never ends).
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let finished = tokio::time::timeout(PATIENCE, async {
        let (read_out, read_err, status) = tokio::join!(
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err),
            child.wait()
        );
        read_out.unwrap();
        read_err.unwrap();
        status.unwrap()
    })
    .await;
    let Ok(status) = finished else {
        let _ = child.kill().await;
        panic!(
            "radio24 migrate still running after {PATIENCE:?}; it printed {:?} and {:?}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
    };
    assert!(
        status.success(),
        "radio24 migrate failed: {}",
        String::from_utf8_lossy(&err)
    );
    String::from_utf8(out).unwrap()
}

struct UrlParts {
    host: String,
    port: String,
    user: String,
}

fn url_parts(url: &str) -> UrlParts {
    let parsed = reqwest::Url::parse(url).unwrap();
    UrlParts {
        host: parsed.host_str().unwrap().to_owned(),
        port: parsed.port().unwrap_or(5432).to_string(),
        user: if parsed.username().is_empty() {
            "postgres".into()
        } else {
            parsed.username().into()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_with_the_seed_env_names_creates_the_seed_schema_exactly() {
    let Some(reference) = TestDb::create().await else {
        return;
    };
    let Some(migrated) = TestDb::create().await else {
        return;
    };
    let mut conn = connect(&reference.url).await;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, SEED_DDL)
        .await
        .unwrap();
    drop(conn);

    let out = run_migrate(&migrated).await;
    assert!(out.contains("applied 5 migration(s)"), "{out}");
    assert_eq!(
        run_migrate(&migrated).await.trim(),
        "database is up to date"
    );

    let expected = describe(&reference.url).await;
    let actual = describe(&migrated.url).await;
    assert!(
        expected.len() > 20,
        "the description covers the schema: {expected:?}"
    );
    assert_eq!(actual, expected);

    // The seed's tables are exactly as the seed has them; the additions are indexes (the
    // schedule's (channel_id, hour), the call-in queue's) and the `queue_audio` table.
    let mut conn = connect(&migrated.url).await;
    let indexes: Vec<Line> = diesel::sql_query(
        "SELECT indexname AS line FROM pg_indexes WHERE schemaname = 'public' \
         AND tablename IN ('channel', 'schedule', 'queue') ORDER BY indexname",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let indexes: Vec<&str> = indexes.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(
        indexes,
        [
            "channel_name_key",
            "channel_pkey",
            "queue_channel_status",
            "queue_claim_order",
            "queue_pkey",
            "queue_queued_enqueued",
            "queue_user_enqueued",
            "schedule_channel_hour",
            "schedule_pkey"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_station_runs_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let app = TestApp::spawn(Role::All, &[("DATABASE_URL", &db.url)]).await;
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["store"]["backend"], "postgres");
    assert_eq!(health["store"]["ok"], true);
    app.wait_for_status("/ready", 200).await;
    let mut ws = app.broadcast("radio24").await;
    assert_eq!(ws.next_json().await["type"], "snapshot");
    let accepted: Value = app.speak("Postgres on air.").await.json().await.unwrap();
    let id = accepted["segment_id"].as_str().unwrap();
    assert_eq!(captions_of(&mut ws, id).await, ["Postgres on air."]);

    // A second process on the same database finds the channel and its schedule as they are.
    let second = TestApp::spawn(Role::All, &[("DATABASE_URL", &db.url)]).await;
    assert_eq!(second.get("/health").await.status(), 200);
    let mut conn = connect(&db.url).await;
    let rows: Vec<Line> = diesel::sql_query("SELECT count(*)::text AS line FROM schedule")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows[0].line, "24");
}

/// Cloud SQL on Cloud Run is a Unix socket: `POSTGRES_HOST=/cloudsql/PROJECT:REGION:INSTANCE`,
/// a folder holding `.s.PGSQL.5432`. Here the local server's socket folder stands in for it
/// (`RADIO24_TEST_POSTGRES_SOCKET_DIR`, default `/var/run/postgresql`): `migrate` and the
/// station both connect through it, and the server sees their sessions arrive by socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_host_may_be_a_unix_socket_folder() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let url = url_parts(&db.url);
    let folder = std::env::var("RADIO24_TEST_POSTGRES_SOCKET_DIR")
        .unwrap_or_else(|_| "/var/run/postgresql".to_owned());
    let socket = std::path::Path::new(&folder).join(format!(".s.PGSQL.{}", url.port));
    if !socket.exists() {
        eprintln!("SKIPPED: no PostgreSQL socket at {}", socket.display());
        return;
    }
    let out = run_migrate_at(&db, &folder).await;
    assert!(out.contains("applied 5 migration(s)"), "{out}");

    let app = TestApp::spawn(
        Role::Api,
        &[
            ("POSTGRES_HOST", folder.as_str()),
            ("POSTGRES_PORT", url.port.as_str()),
            ("POSTGRES_USER", url.user.as_str()),
            ("POSTGRES_DB", db.name.as_str()),
            ("RADIO24__BUS__HOST_URL", "http://127.0.0.1:9"),
        ],
    )
    .await;
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["store"]["backend"], "postgres", "{health}");
    assert_eq!(health["store"]["ok"], true, "{health}");
    let channels: Value = app.get("/v1/channels").await.json().await.unwrap();
    assert!(channels.to_string().contains("radio24"), "{channels}");

    // The station's sessions on this database came by socket (no client address), none by TCP.
    let mut conn = connect(&db.url).await;
    let rows: Vec<Line> = diesel::sql_query(format!(
        "SELECT (client_addr IS NULL)::text AS line FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
    .load(&mut conn)
    .await
    .unwrap();
    let lines: Vec<&str> = rows.iter().map(|r| r.line.as_str()).collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| *l == "true"),
        "{lines:?}"
    );
}
