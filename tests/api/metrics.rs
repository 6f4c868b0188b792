//! `GET /metrics` after real traffic: a station (role all, OpenAI faked at the wire, the
//! programme on a fast clock) airs segments, says what the studio asks, puts a recorded
//! call-in through, records its archive, and has a broadcast client and a stream listener;
//! the scrape, parsed as the Prometheus text format, has every family with values that
//! match (listeners as connected, latency histograms with counts, counters moved). The
//! split roles serve it on both ports. The Grafana dashboard and the alert rules in
//! `deploy/` name only families a scrape really shows, and the dashboard shows them all.
//!
//! The recorder is one per process, shared by every app the test binary builds, so each
//! check reads the series of a channel only this test uses, or a counter's increase.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use radio24::cli::Role;

use crate::callins::{Ptt, tone_at};
use crate::fake_openai::{Behaviour, FakeOpenAi, FakeSetup};
use crate::helpers::{
    ADMIN_TOKEN, NO_QANDA, PATIENCE, PROGRAMME_PATIENCE, TestApp, WsClient, poll_until,
};
use crate::raw_ws::{RawWs, frame};

/// The channel of the traffic test: no other test airs it.
const CHANNEL: &str = "metrics";

// ---- The Prometheus text format (version 0.0.4), parsed strictly enough to trust.

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: each family's type and help, and the samples.
#[derive(Debug, Default)]
pub(crate) struct Scrape {
    types: HashMap<String, String>,
    helps: HashMap<String, String>,
    samples: Vec<Sample>,
}

/// Parses a label set's inside (`a="x",b="y\"z"`), unescaping values.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\": {rest}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("dangling escape in {text}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {text}")),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice in {text}"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(labels)
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("not a value: {text:?}")),
    }
}

pub(crate) fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, help) = help.split_once(' ').unwrap_or((help, ""));
            scrape.helps.insert(name.to_owned(), help.to_owned());
        } else if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind
                .split_once(' ')
                .ok_or_else(|| format!("TYPE without a type: {line}"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("unknown type: {line}"));
            }
            scrape.types.insert(name.to_owned(), kind.to_owned());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| format!("sample without a value: {line}"))?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels
                        .strip_suffix('}')
                        .ok_or_else(|| format!("unclosed labels: {line}"))?;
                    (name, parse_labels(labels)?)
                }
                None => (series, BTreeMap::new()),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                return Err(format!("bad metric name: {line}"));
            }
            scrape.samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: parse_value(value)?,
            });
        }
    }
    for sample in &scrape.samples {
        if scrape.family_of(&sample.name).is_none() {
            return Err(format!("sample of no declared family: {}", sample.name));
        }
    }
    Ok(scrape)
}

impl Scrape {
    /// The family a sample name belongs to: itself, or a histogram's or summary's base.
    fn family_of(&self, sample: &str) -> Option<String> {
        if self.types.contains_key(sample) {
            return Some(sample.to_owned());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = sample.strip_suffix(suffix)?;
            matches!(
                self.types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            )
            .then(|| base.to_owned())
        })
    }

    /// The radio24 families the scrape shows.
    fn families(&self) -> BTreeSet<String> {
        self.types
            .keys()
            .filter(|n| n.starts_with("radio24_"))
            .cloned()
            .collect()
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples named `name` with `labels`; `None` when there are none.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = false;
        let total = self
            .matching(name, labels)
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }

    /// The family's type, or a message saying it is missing.
    fn kind(&self, family: &str) -> Result<&str, String> {
        self.types
            .get(family)
            .map(String::as_str)
            .ok_or_else(|| format!("no family {family}"))
    }

    /// Checks that each series of histogram `family` is whole: its buckets rise, the `+Inf`
    /// bucket equals the count, and there is a sum.
    fn check_histogram(&self, family: &str) -> Result<(), String> {
        if self.kind(family)? != "histogram" {
            return Err(format!(
                "{family} is a {}, not a histogram",
                self.kind(family)?
            ));
        }
        let bucket = format!("{family}_bucket");
        // Each series (its labels but `le`) and its buckets as (le, count).
        let mut series: BTreeMap<Vec<(String, String)>, Buckets> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let le = parse_value(s.labels.get("le").ok_or("a bucket without le")?)?;
            let key = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family}{labels:?}: buckets fall: {buckets:?}"));
            }
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = self.sum(&format!("{family}_count"), &pairs);
            let inf = buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1);
            if inf.is_none() || inf != count {
                return Err(format!("{family}{labels:?}: +Inf {inf:?}, count {count:?}"));
            }
            if self.sum(&format!("{family}_sum"), &pairs).is_none() {
                return Err(format!("{family}{labels:?}: no sum"));
            }
        }
        Ok(())
    }

    /// The count of histogram `family`'s series with `labels` (0 when there is none).
    fn count(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(&format!("{family}_count"), labels).unwrap_or(0.0)
    }
}

/// A histogram series' buckets, as (upper bound, count).
type Buckets = Vec<(f64, f64)>;

/// Scrapes `app`'s `/metrics` and parses it.
async fn scrape(app: &TestApp) -> Result<Scrape, String> {
    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("GET /metrics: {}", resp.status()));
    }
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !kind.starts_with("text/plain; version=0.0.4") {
        return Err(format!("GET /metrics: content type {kind:?}"));
    }
    parse(&resp.text().await.map_err(|e| e.to_string())?)
}

// ---- The traffic test.

/// Every family, with values that say the traffic happened; what is missing, if not.
fn check_families(s: &Scrape) -> Result<(), String> {
    use radio24::metrics as m;
    let ch = ("channel", CHANNEL);
    let mut missing = Vec::new();
    // Each check that fails says what it saw.
    let mut check = |ok: bool, what: String| {
        if !ok {
            missing.push(what);
        }
    };

    let stream = s.sum(m::LISTENERS, &[ch, ("transport", "stream")]);
    let broadcast = s.sum(m::LISTENERS, &[ch, ("transport", "broadcast")]);
    check(
        stream == Some(1.0) && broadcast == Some(1.0),
        format!("listeners stream {stream:?}, broadcast {broadcast:?} (want 1 and 1)"),
    );
    // The call was taken: nobody waits.
    let depth = s.sum(m::QUEUE_DEPTH, &[ch]);
    check(
        depth == Some(0.0),
        format!("queue depth {depth:?} (want 0)"),
    );
    let waits = s.count(m::QUEUE_WAIT, &[ch]);
    check(waits >= 1.0, format!("queue waits {waits}"));
    let talk = s.sum(m::SEGMENTS_AIRED, &[ch, ("kind", "talk")]);
    let speak = s.sum(m::SEGMENTS_AIRED, &[ch, ("kind", "speak")]);
    let caller = s.sum(m::SEGMENTS_AIRED, &[ch, ("kind", "caller")]);
    check(
        talk >= Some(1.0) && speak >= Some(1.0) && caller >= Some(1.0),
        format!("segments aired: talk {talk:?}, speak {speak:?}, caller {caller:?}"),
    );
    let gaps = s.sum(m::GAPS, &[ch]);
    let dead_air = s.sum(m::DEAD_AIR, &[ch]);
    check(
        gaps.is_some_and(|g| g >= 0.0) && dead_air.is_some_and(|d| d >= 0.0),
        format!("gaps {gaps:?}, dead air {dead_air:?} (want them counted, from 0)"),
    );
    let llm = s.count(m::LLM_FIRST_TOKEN, &[("provider", "openai")]);
    let tts = s.count(m::TTS_FIRST_AUDIO, &[("provider", "openai-speech")]);
    let stt = s.count(m::TRANSCRIPTION, &[("provider", "openai")]);
    check(
        llm >= 1.0 && tts >= 1.0 && stt >= 1.0,
        format!("latency counts: llm {llm}, tts {tts}, transcription {stt}"),
    );
    let moderation = s.sum(
        m::PROVIDER_ERRORS,
        &[("service", "moderation"), ("provider", "openai")],
    );
    check(
        moderation >= Some(1.0),
        format!("moderation errors {moderation:?} (the fake's moderation is broken)"),
    );
    let speaks = s.sum(m::BUS_CALLS, &[("operation", "speak")]);
    let takes = s.sum(m::BUS_CALLS, &[("operation", "take_call")]);
    check(
        speaks >= Some(1.0) && takes >= Some(1.0),
        format!("bus calls: speak {speaks:?}, take_call {takes:?}"),
    );
    let refused = s.sum(
        m::BUS_ERRORS,
        &[("operation", "archive_file"), ("kind", "rejected")],
    );
    check(
        refused >= Some(1.0),
        format!("bus errors of archive_file {refused:?}"),
    );
    let bus_timed = s.count(m::BUS_CALL_DURATION, &[("operation", "speak")]);
    check(bus_timed >= 1.0, format!("speak calls timed {bus_timed}"));
    for outcome in ["resynced", "dropped"] {
        let lagged = s.sum(m::WS_LAGGING, &[("outcome", outcome)]);
        check(lagged.is_some(), format!("no {outcome} lagging series"));
    }
    let archived = s.sum(m::ARCHIVE_BYTES, &[ch]);
    check(
        archived.is_some_and(|b| b > 4096.0),
        format!("archive bytes {archived:?}"),
    );
    let link = s.sum(m::HOST_LINK_UP, &[]);
    check(link == Some(1.0), format!("host link up {link:?}"));

    for family in [
        m::QUEUE_WAIT,
        m::LLM_FIRST_TOKEN,
        m::TTS_FIRST_AUDIO,
        m::TRANSCRIPTION,
        m::BUS_CALL_DURATION,
    ] {
        if let Err(e) = s.check_histogram(family) {
            missing.push(e);
        }
    }
    for family in s.families() {
        if s.helps.get(&family).is_none_or(|h| h.is_empty()) {
            missing.push(format!("{family} has no help text"));
        }
    }
    for (family, kind) in [
        (m::LISTENERS, "gauge"),
        (m::QUEUE_DEPTH, "gauge"),
        (m::HOST_LINK_UP, "gauge"),
        (m::SEGMENTS_AIRED, "counter"),
        (m::GAPS, "counter"),
        (m::DEAD_AIR, "counter"),
        (m::PROVIDER_ERRORS, "counter"),
        (m::BUS_CALLS, "counter"),
        (m::BUS_ERRORS, "counter"),
        (m::WS_LAGGING, "counter"),
        (m::ARCHIVE_BYTES, "counter"),
    ] {
        match s.kind(family) {
            Ok(k) if k == kind => {}
            Ok(k) => missing.push(format!("{family} is a {k}, not a {kind}")),
            Err(e) => missing.push(e),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

/// Sends `secs` of a tone at 16 kHz as one recording on `ptt`; its item id.
async fn send_recording(ptt: &mut Ptt, secs: f64) -> String {
    ptt.send(json!({"type": "audio_start", "encoding": "pcm_s16le", "sample_rate": 16_000}))
        .await;
    for chunk in tone_at(16_000, 800.0, secs).chunks(16_000) {
        ptt.send_binary(chunk.to_vec()).await;
    }
    ptt.send(json!({"type": "audio_end"})).await;
    let queued = ptt.next().await;
    assert_eq!(queued["type"], "queued", "{queued}");
    queued["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_traffic_every_family_is_scraped_with_sensible_values() {
    let openai = FakeOpenAi::start_with(FakeSetup {
        // Moderation fails (a 500, then garbage; no hang): provider errors, and the call
        // still airs (a broken moderation lets calls through).
        moderation: Behaviour {
            hang: None,
            ..Behaviour::broken()
        },
        ..FakeSetup::default()
    })
    .await;
    let base = openai.base_url();
    let archive = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__STATION__DEFAULT_CHANNEL", CHANNEL),
            ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
            ("RADIO24__OPENAI__API_KEY", "sk-test-metrics"),
            ("RADIO24__OPENAI__BASE_URL", &base),
            ("RADIO24__VOICE__BACKEND", "openai-speech"),
            ("RADIO24__ARCHIVE__DIR", archive.path().to_str().unwrap()),
        ],
    )
    .await;

    // A broadcast client and a stream listener, each kept reading.
    let mut broadcast = app.broadcast(CHANNEL).await;
    let snapshot = broadcast.next_json().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let stream = app.get(&format!("/v1/channels/{CHANNEL}/stream")).await;
    assert_eq!(stream.status(), 200);
    let mut stream = stream.bytes_stream();
    let listening = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });

    // The studio speaks; a recorded call-in is put through, transcribed and aired.
    let resp = app.speak("メトリクスのテストです。").await;
    assert_eq!(resp.status(), 202);
    let url = format!("ws://127.0.0.1:{}/ws/ptt?channel={CHANNEL}", app.port);
    let mut ptt = Ptt {
        ws: WsClient::connect(&url).await,
    };
    ptt.send(json!({"type": "hello"})).await;
    let ready = ptt.next().await;
    assert_eq!(ready["type"], "ready", "{ready}");
    let id = send_recording(&mut ptt, 1.5).await;
    let taken = app.take_next().await;
    assert_eq!(taken.status(), 200, "{:?}", taken.text().await);
    let done = ptt
        .ws
        .wait_for("status", |f| {
            f["id"] == id.as_str() && f["status"] == "done"
        })
        .await;
    assert_eq!(done["status"], "done", "{done}");
    // A recording the archive does not have: a bus call the host refuses.
    let resp = app
        .get(&format!("/v1/channels/{CHANNEL}/archive/2000-01-01T00.ogg"))
        .await;
    assert_eq!(resp.status(), 404);

    // The broadcast client keeps reading while the scrape is awaited.
    let reading = tokio::spawn(async move {
        loop {
            broadcast.next_json().await;
        }
    });
    let scraped = poll_until(
        "every family with sensible values",
        PROGRAMME_PATIENCE,
        Duration::from_millis(250),
        async || {
            let s = scrape(&app).await?;
            check_families(&s)?;
            Ok(s)
        },
    )
    .await;
    assert_names_match_the_deployment_files(&scraped);
    reading.abort();
    listening.abort();
    app.stop().await;
}

// ---- Dashboard and alert rules against the scrape.

fn deploy_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The metric names in a PromQL expression: identifiers that start `radio24_`, without a
/// histogram's `_bucket`, `_sum` or `_count`.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("radio24_") {
        let starts_word = !rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let name = &tail[..len];
        if starts_word {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// Every `expr` of a dashboard's panels (rows' panels too) and its variables' queries.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = variable["name"].as_str().unwrap_or("?");
        for query in [
            &variable["query"],
            &variable["query"]["query"],
            &variable["definition"],
        ] {
            if let Some(q) = query.as_str() {
                out.push((format!("variable {name}"), q.to_owned()));
            }
        }
    }
    out
}

/// Every alert rule's name and `expr`.
fn alert_exprs(rules: &serde_norway::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().into_iter().flatten() {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .unwrap_or("?");
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("rule {name} has no expr"));
            out.push((name.to_owned(), expr.to_owned()));
        }
    }
    out
}

/// The dashboard and the rules name only families the scrape shows; the dashboard shows
/// every one; each alert has `for`, a severity and a summary.
fn assert_names_match_the_deployment_files(scrape: &Scrape) {
    let exported = scrape.families();
    let dashboard: Value =
        serde_json::from_str(&deploy_file("grafana/dashboards/radio24.json")).unwrap();
    let rules: serde_norway::Value =
        serde_norway::from_str(&deploy_file("prometheus/alerts.yml")).unwrap();
    let panels = dashboard_exprs(&dashboard);
    let alerts = alert_exprs(&rules);
    assert!(
        panels.len() >= 10,
        "the dashboard has {} queries",
        panels.len()
    );
    assert!(alerts.len() >= 5, "the rules have {} alerts", alerts.len());

    let mut unknown = Vec::new();
    for (source, (title, expr)) in panels
        .iter()
        .map(|p| ("dashboard", p))
        .chain(alerts.iter().map(|a| ("alerts.yml", a)))
    {
        let names = names_in(expr);
        if names.is_empty() && source == "alerts.yml" {
            unknown.push(format!(
                "{source}: {title}: names no radio24 metric: {expr}"
            ));
        }
        for name in names.difference(&exported) {
            unknown.push(format!("{source}: {title}: {name} is not exported"));
        }
    }
    assert!(
        unknown.is_empty(),
        "names that /metrics does not export:\n{}\nexported: {exported:?}",
        unknown.join("\n")
    );

    let shown: BTreeSet<String> = panels.iter().flat_map(|(_, e)| names_in(e)).collect();
    let unshown: Vec<_> = exported.difference(&shown).collect();
    assert!(unshown.is_empty(), "families no panel shows: {unshown:?}");

    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap_or("?");
            assert!(rule["for"].as_str().is_some(), "{name}: no `for`");
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{name}: no severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: no summary"
            );
        }
    }
    let titles: Vec<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in [
        "Radio24DeadAir",
        "Radio24Gaps",
        "Radio24HostLinkDown",
        "Radio24QueueWait",
        "Radio24ProviderErrors",
    ] {
        assert!(titles.contains(&wanted), "no alert {wanted}: {titles:?}");
    }
}

#[test]
fn names_are_found_in_promql_without_histogram_suffixes() {
    let expr = r#"histogram_quantile(0.9, sum by (le) (rate(radio24_queue_wait_seconds_bucket{channel=~"$channel"}[5m]))) / on() group_left radio24_host_link_up + my_radio24_x"#;
    let names: Vec<String> = names_in(expr).into_iter().collect();
    assert_eq!(
        names,
        ["radio24_host_link_up", "radio24_queue_wait_seconds"]
    );
}

#[test]
fn the_parser_reads_labels_values_and_histograms() {
    let text = "# HELP radio24_x_seconds a help\n# TYPE radio24_x_seconds histogram\n\
        radio24_x_seconds_bucket{a=\"q\\\"z\",le=\"1\"} 1\n\
        radio24_x_seconds_bucket{a=\"q\\\"z\",le=\"+Inf\"} 2\n\
        radio24_x_seconds_sum{a=\"q\\\"z\"} 3.5\nradio24_x_seconds_count{a=\"q\\\"z\"} 2\n";
    let s = parse(text).unwrap();
    assert_eq!(s.count("radio24_x_seconds", &[("a", "q\"z")]), 2.0);
    s.check_histogram("radio24_x_seconds").unwrap();
    assert!(
        parse("radio24_untyped 1\n").is_err(),
        "a sample of no family"
    );
    let broken = text.replace("le=\"+Inf\"} 2", "le=\"+Inf\"} 3");
    assert!(
        parse(&broken)
            .unwrap()
            .check_histogram("radio24_x_seconds")
            .is_err()
    );
}

// ---- Split roles, and lagging clients.

#[tokio::test]
async fn split_roles_serve_metrics_on_both_ports() {
    let host = TestApp::spawn(Role::Host, &[]).await;
    let api = TestApp::spawn(Role::Api, &[("RADIO24__BUS__HOST_URL", &host.address)]).await;
    // The host's port: its playout airs (fillers at least) on its own default channel.
    poll_until(
        "the host's /metrics with segments aired",
        PATIENCE,
        Duration::from_millis(100),
        async || {
            let s = scrape(&host).await?;
            match s.sum(radio24::metrics::SEGMENTS_AIRED, &[("channel", "radio24")]) {
                Some(n) if n >= 1.0 => Ok(()),
                other => Err(format!("segments aired {other:?}")),
            }
        },
    )
    .await;
    // The API's port: its link up, over the HTTP bus (subscribe, the programme push).
    poll_until(
        "the API's /metrics with its link up",
        PATIENCE,
        Duration::from_millis(100),
        async || {
            let s = scrape(&api).await?;
            let link = s.sum(radio24::metrics::HOST_LINK_UP, &[]);
            let subscribes = s.sum(radio24::metrics::BUS_CALLS, &[("operation", "subscribe")]);
            let pushes = s.sum(
                radio24::metrics::BUS_CALLS,
                &[("operation", "set_programme")],
            );
            if link == Some(1.0) && subscribes >= Some(1.0) && pushes >= Some(1.0) {
                Ok(())
            } else {
                Err(format!(
                    "link {link:?}, subscribes {subscribes:?}, pushes {pushes:?}"
                ))
            }
        },
    )
    .await;
    // No token needed, and nothing but GET and HEAD.
    let resp = api
        .client
        .post(api.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    api.stop().await;
    host.stop().await;
}

#[tokio::test]
async fn a_client_dropped_for_lagging_is_counted() {
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__BROADCAST__SEND_TIMEOUT_SECS", "1"),
            ("RADIO24__SERVER__SEND_BUFFER_BYTES", "4096"),
        ],
    )
    .await;
    let dropped = async || -> Result<f64, String> {
        let s = scrape(&app).await?;
        s.sum(radio24::metrics::WS_LAGGING, &[("outcome", "dropped")])
            .ok_or_else(|| "no dropped series".to_owned())
    };
    let before = dropped().await.unwrap();
    // A client that never reads and floods pings: its pongs back up until a send times out.
    let ws = RawWs::open_with_small_receive_buffer(app.port, "/ws/broadcast").await;
    let (_read, mut write) = ws.tcp.into_split();
    let flood = tokio::spawn(async move {
        let ping = frame(true, 9, &[0x50; 125]);
        for _ in 0..20_000 {
            if write.write_all(&ping).await.is_err() {
                break;
            }
        }
        write
    });
    poll_until(
        "a dropped client counted",
        PATIENCE,
        Duration::from_millis(100),
        async || match dropped().await? {
            n if n > before => Ok(()),
            n => Err(format!("dropped {n}, {before} before")),
        },
    )
    .await;
    flood.abort();
    app.stop().await;
}
