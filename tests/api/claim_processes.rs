//! Two OS processes claim from one PostgreSQL call-in queue: every item is claimed exactly
//! once. `store_conformance` races two pools inside one process; this one gives each
//! claimer a process of its own, as two API servers would be.
//!
//! The claimers are this test executable run again with `--exact` on
//! [`claimer_child`], which does nothing unless `RADIO24_CLAIMER_DB_URL` is set. Each
//! connects its own store, says it is ready on stdout, waits for `go` on stdin, claims
//! until the queue is empty, and writes the claimed ids to the file named by
//! `RADIO24_CLAIMER_OUT`. Its stdout and stderr are piped to the parent, never mixed into
//! the parent's test output, and shown only when it fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use radio24::db::postgres::PgStore;
use radio24::db::{CallStatus, CallerLimits, NewCall, Store};
use radio24::domain::ChannelName;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::{PATIENCE, TestDb};

/// The database a claimer connects to; unset, [`claimer_child`] does nothing.
const DB_URL_VAR: &str = "RADIO24_CLAIMER_DB_URL";
/// Where a claimer writes its claimed ids, one a line.
const OUT_VAR: &str = "RADIO24_CLAIMER_OUT";
/// The line a claimer prints once its store is connected. It starts a line of its own,
/// so the test runner's unterminated `test … ` line cannot run into it.
const READY: &str = "RADIO24_CLAIMER_READY";
const ITEMS: usize = 200;
/// For each wait on a child: starting a process, connecting, 200 claims. Generous, since
/// other builds share the machine; only a hang reaches it.
const CHILD_PATIENCE: Duration = PATIENCE.saturating_mul(4);

fn channel() -> ChannelName {
    ChannelName::parse("claims").unwrap()
}

/// The child's test name as the test runner knows it (without the crate's name).
fn child_test_name() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    format!("{module}::claimer_child")
}

/// One claimer process and what it prints.
struct Claimer {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    out: PathBuf,
    ready: oneshot::Receiver<()>,
    /// Everything it printed (stdout, then stderr), once it exits.
    printed: JoinHandle<String>,
}

impl Claimer {
    fn spawn(name: &'static str, db_url: &str, dir: &Path) -> Self {
        let out = dir.join(format!("{name}.ids"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &child_test_name(), "--nocapture"])
            .args(["--test-threads", "1"])
            .env(DB_URL_VAR, db_url)
            .env(OUT_VAR, &out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (ready_tx, ready) = oneshot::channel();
        // Both pipes drained as it runs, so a chatty child never blocks on a full pipe.
        let printed = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let out = async {
                let mut text = String::new();
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == READY {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    text.push_str(&line);
                    text.push('\n');
                }
                text
            };
            let err = async {
                let mut text = String::new();
                let _ = BufReader::new(stderr).read_to_string(&mut text).await;
                text
            };
            let (out, err) = tokio::join!(out, err);
            format!("-- stdout --\n{out}-- stderr --\n{err}")
        });
        Self {
            name,
            child,
            stdin,
            out,
            ready,
            printed,
        }
    }

    /// Kills the child; why it failed and what it printed, for the test's panic.
    async fn failure(mut self, why: impl std::fmt::Display) -> String {
        let _ = self.child.kill().await;
        let printed = tokio::time::timeout(PATIENCE, self.printed)
            .await
            .map_or_else(|_| "(its pipes stayed open)".to_owned(), |p| p.unwrap());
        format!("claimer {}: {why}; it printed:\n{printed}", self.name)
    }

    async fn await_ready(mut self) -> Self {
        let ready = tokio::time::timeout(CHILD_PATIENCE, &mut self.ready).await;
        match ready {
            Ok(Ok(())) => self,
            Ok(Err(_)) => panic!("{}", self.failure("exited before it was ready").await),
            Err(_) => {
                let why = format!("not ready after {CHILD_PATIENCE:?}");
                panic!("{}", self.failure(why).await)
            }
        }
    }

    /// Sends the start signal, and closes its stdin.
    async fn go(&mut self) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Waits for the child to exit successfully; its claimed ids, in claim order.
    async fn claimed(mut self) -> Vec<Uuid> {
        let exited = tokio::time::timeout(CHILD_PATIENCE, self.child.wait()).await;
        let status: ExitStatus = match exited {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let why = format!("still running after {CHILD_PATIENCE:?}");
                panic!("{}", self.failure(why).await)
            }
        };
        if !status.success() {
            panic!("{}", self.failure(format!("exited with {status}")).await);
        }
        std::fs::read_to_string(&self.out)
            .unwrap_or_else(|e| panic!("claimer {}: {}: {e}", self.name, self.out.display()))
            .lines()
            .map(|line| Uuid::parse_str(line).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_claim_each_call_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(
        &SecretString::from(db.url.clone()),
        2,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let ch = channel();
    let roomy = CallerLimits {
        max_waiting: 10_000,
        max_per_hour: 10_000,
    };
    let mut enqueued = HashSet::new();
    for i in 0..ITEMS {
        let call = NewCall {
            channel: ch.clone(),
            user_id: format!("caller-{i}"),
            text: Some(format!("call {i}")),
            audio: None,
        };
        let (item, _) = store.enqueue_call(call, roomy).await.unwrap().unwrap();
        enqueued.insert(item.id);
    }
    assert_eq!(enqueued.len(), ITEMS);

    let dir = tempfile::tempdir().unwrap();
    let a = Claimer::spawn("a", &db.url, dir.path());
    let b = Claimer::spawn("b", &db.url, dir.path());
    let (mut a, mut b) = (a.await_ready().await, b.await_ready().await);
    a.go().await;
    b.go().await;
    let (from_a, from_b) = (a.claimed().await, b.claimed().await);

    eprintln!(
        "claims split between the two processes: {} and {}",
        from_a.len(),
        from_b.len()
    );
    let all: Vec<Uuid> = from_a.iter().chain(&from_b).copied().collect();
    let distinct: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "an item was claimed twice");
    assert_eq!(distinct, enqueued, "every item was claimed");

    let live = store.live_calls(&ch).await.unwrap();
    assert!(
        live.iter().all(|item| item.status == CallStatus::Live),
        "{live:?}"
    );
    assert_eq!(
        live.iter().map(|item| item.id).collect::<HashSet<_>>(),
        enqueued,
        "every item is live in the store"
    );
    assert!(store.queued_calls(&ch).await.unwrap().is_empty());
}

/// A claimer process for [`postgres_two_processes_claim_each_call_once`]; run by
/// `cargo test` itself (without `RADIO24_CLAIMER_DB_URL`) it does nothing.
#[test]
fn claimer_child() {
    let Ok(db_url) = std::env::var(DB_URL_VAR) else {
        return;
    };
    let out = PathBuf::from(std::env::var(OUT_VAR).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let claimed = runtime.block_on(async {
        let store = PgStore::connect(&SecretString::from(db_url), 1, Duration::from_secs(5))
            .await
            .unwrap();
        println!("\n{READY}");
        let mut line = String::new();
        BufReader::new(tokio::io::stdin())
            .read_line(&mut line)
            .await
            .unwrap();
        // Without `go` the parent has gone: claim nothing.
        assert_eq!(line.trim(), "go", "no start signal");
        let ch = channel();
        let mut claimed = Vec::new();
        while let Some(item) = store.claim_next_call(&ch).await.unwrap() {
            assert_eq!(item.status, CallStatus::Live);
            claimed.push(item.id);
        }
        claimed
    });
    // Written whole, then renamed: the parent never reads half a list.
    let text: String = claimed.iter().map(|id| format!("{id}\n")).collect();
    let partial = out.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &out).unwrap();
}
