//! The news desk: real headlines for the NEWS block, from the RSS or Atom feeds the operator
//! configured. Feeds are fetched together, each under a timeout and a size cap, parsed with
//! `feed-rs`, merged newest first and capped; the result is cached for a TTL so a busy hour
//! does not hammer the feeds. A failing feed is logged (by host only: feed URLs can carry
//! tokens) and skipped; when every feed fails, the last good headlines are kept. With no feeds
//! configured the desk makes no requests and has no news, and NEWS says so.
//!
//! Config keys read here (through [`NewsConfig`]; the wiring is done by the caller):
//! `news.feeds`, `news.max_items`, `news.ttl_secs`, `news.timeout_secs`.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Url;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::NewsItem;

/// Longest headline kept, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Longest summary kept, in characters: the prompt shortens it further.
const MAX_SUMMARY_CHARS: usize = 400;
/// Largest feed body read. Real feeds are well under this; anything bigger is not worth
/// parsing on the on-air path.
const MAX_FEED_BYTES: usize = 2 * 1024 * 1024;

/// Settings of [`NewsDesk`].
#[derive(Debug, Clone)]
pub struct NewsConfig {
    /// `news.feeds`: RSS or Atom feed URLs (http or https). Empty: no news, no requests.
    pub feeds: Vec<String>,
    /// `news.max_items`: most headlines kept, over all feeds.
    pub max_items: usize,
    /// `news.ttl_secs`: how long fetched headlines are reused before the feeds are asked
    /// again (also how long to wait before retrying after every feed failed).
    pub ttl: Duration,
    /// `news.timeout_secs`: per feed, connect to last byte.
    pub timeout: Duration,
}

impl Default for NewsConfig {
    fn default() -> Self {
        Self {
            feeds: Vec::new(),
            max_items: 10,
            ttl: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a news desk could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NewsError {
    #[error("news.feeds: {url:?} is not an http(s) URL")]
    InvalidFeed { url: String },
    #[error("news: building the HTTP client: {0}")]
    Client(String),
}

/// What the last fetch left behind.
#[derive(Debug, Default)]
struct Cache {
    items: Vec<NewsItem>,
    fetched_at: Option<Instant>,
}

/// Fetches, merges and caches headlines from the configured feeds.
#[derive(Debug)]
pub struct NewsDesk {
    client: reqwest::Client,
    feeds: Vec<Url>,
    max_items: usize,
    ttl: Duration,
    timeout: Duration,
    // A tokio mutex held across the refresh, so callers arriving during a fetch wait for it
    // instead of starting their own: one fetch per TTL whatever the load.
    cache: Mutex<Cache>,
}

impl NewsDesk {
    /// Checks the feed URLs and builds the HTTP client. Fails with a message naming
    /// `news.feeds` on a bad URL.
    pub fn new(config: NewsConfig) -> Result<Self, NewsError> {
        let feeds = config
            .feeds
            .iter()
            .map(|raw| {
                let url = Url::parse(raw.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                url.ok_or_else(|| NewsError::InvalidFeed { url: redact(raw) })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // reqwest panics without a crypto provider; installing it again is harmless.
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .user_agent(concat!("radio24/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NewsError::Client(e.without_url().to_string()))?;
        Ok(Self {
            client,
            feeds,
            max_items: config.max_items,
            ttl: config.ttl,
            timeout: config.timeout,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The current headlines, newest first, at most `news.max_items`. Fetches the feeds when
    /// the cache is older than the TTL; never fails (no news is an empty list).
    pub async fn headlines(&self) -> Vec<NewsItem> {
        if self.feeds.is_empty() || self.max_items == 0 {
            return Vec::new();
        }
        let mut cache = self.cache.lock().await;
        let fresh = cache.fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
        if fresh {
            return cache.items.clone();
        }
        let results =
            futures::future::join_all(self.feeds.iter().map(|url| self.fetch_feed(url))).await;
        let mut items = Vec::new();
        let mut any_ok = false;
        for (url, result) in self.feeds.iter().zip(results) {
            match result {
                Ok(feed_items) => {
                    any_ok = true;
                    items.extend(feed_items);
                }
                Err(reason) => {
                    tracing::warn!(
                        feed_host = url.host_str().unwrap_or("?"),
                        %reason,
                        "news feed skipped"
                    );
                }
            }
        }
        // Failures wait for the TTL too, so a dead feed is not asked on every NEWS block.
        cache.fetched_at = Some(Instant::now());
        if any_ok {
            cache.items = merge(items, self.max_items);
        } else {
            tracing::warn!(
                kept = cache.items.len(),
                "every news feed failed; keeping the last good headlines"
            );
        }
        cache.items.clone()
    }

    /// One feed's items, or a short reason it has none (no URL: it may hold a token).
    async fn fetch_feed(&self, url: &Url) -> Result<Vec<NewsItem>, String> {
        let body = match tokio::time::timeout(self.timeout, self.fetch_body(url)).await {
            Ok(body) => body?,
            Err(_) => return Err("timed out".to_owned()),
        };
        let feed =
            feed_rs::parser::parse(body.as_slice()).map_err(|e| format!("not a feed: {e}"))?;
        Ok(items_of(feed, url))
    }

    async fn fetch_body(&self, url: &Url) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| transport_reason(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_FEED_BYTES as u64)
        {
            return Err("feed too large".to_owned());
        }
        // Raw bytes, not `text()`: feed-rs decodes using the XML prolog's encoding.
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_reason(&e))?;
            if body.len() + chunk.len() > MAX_FEED_BYTES {
                return Err("feed too large".to_owned());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// A feed URL for an error message: scheme, host and path, no query (it may hold a token).
fn redact(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(mut url) => {
            url.set_query(None);
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => raw.chars().take(80).collect(),
    }
}

/// Turns a parsed feed into headlines. Entries without a title are skipped: there is
/// nothing to read out.
fn items_of(feed: feed_rs::model::Feed, url: &Url) -> Vec<NewsItem> {
    let source = feed
        .title
        .as_ref()
        .map(|t| plain_text(&t.content, MAX_TITLE_CHARS))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| url.host_str().unwrap_or("news").to_owned());
    feed.entries
        .into_iter()
        .filter_map(|entry| {
            let title = plain_text(&entry.title?.content, MAX_TITLE_CHARS);
            if title.is_empty() {
                return None;
            }
            let summary = entry
                .summary
                .map(|s| plain_text(&s.content, MAX_SUMMARY_CHARS))
                .filter(|s| !s.is_empty());
            let link = entry
                .links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
                .or_else(|| entry.links.first())
                .map(|l| l.href.clone());
            Some(NewsItem {
                title,
                summary,
                source: source.clone(),
                link,
                published: entry.published.or(entry.updated),
            })
        })
        .collect()
}

/// Newest first (undated items after dated ones, in feed order), at most `max`.
fn merge(mut items: Vec<NewsItem>, max: usize) -> Vec<NewsItem> {
    // A stable sort keeps each feed's own order among equal or missing dates.
    items.sort_by_key(|item| std::cmp::Reverse(item.published));
    items.truncate(max);
    items
}

/// Feed text as speakable plain text: HTML tags dropped, common entities decoded,
/// whitespace collapsed, capped at `max` characters with an ellipsis.
fn plain_text(html: &str, max: usize) -> String {
    let text = decode_entities(&strip_tags(html));
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut = cut.trim_end().to_owned();
    cut.push('…');
    cut
}

/// Drops HTML tags. A `<` only opens a tag when a letter, `/` or `!` follows, so a plain
/// "a < b" in a title survives. Block tags (`p`, `br`, `div`, `li`, headings…) become a
/// space so paragraphs do not run into each other; inline ones (`b`, `a`, `span`) vanish.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut chars = html.chars().peekable();
    while let Some(c) = chars.next() {
        let opens_tag = c == '<'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '/' || *n == '!');
        if !opens_tag {
            out.push(c);
            continue;
        }
        let mut tag = String::new();
        for t in chars.by_ref() {
            if t == '>' {
                break;
            }
            tag.push(t);
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        const BLOCK: &[&str] = &[
            "p",
            "br",
            "div",
            "li",
            "ul",
            "ol",
            "tr",
            "td",
            "th",
            "table",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "blockquote",
            "hr",
            "section",
            "article",
            "figure",
            "figcaption",
        ];
        if BLOCK.contains(&name.as_str()) {
            out.push(' ');
        }
    }
    out
}

/// The entities feeds double-escape most often. `&amp;` goes last so "&amp;lt;" stays "&lt;".
fn decode_entities(s: &str) -> String {
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#039;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const RSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0">
  <channel>
    <title>Harbour Times</title>
    <link>https://harbour.example/</link>
    <description>Local news</description>
    <item>
      <title>  Ferry timetable
        changes  </title>
      <link>https://harbour.example/ferry</link>
      <description>&lt;p&gt;New &lt;b&gt;winter&lt;/b&gt; times&lt;/p&gt;&lt;p&gt;from Monday.&lt;/p&gt;</description>
      <pubDate>Tue, 10 Nov 2026 09:00:00 GMT</pubDate>
    </item>
    <item>
      <title>Fish market record</title>
      <link>https://harbour.example/fish</link>
      <pubDate>Tue, 10 Nov 2026 07:00:00 GMT</pubDate>
    </item>
    <item>
      <title>Old lighthouse story</title>
      <pubDate>Mon, 09 Nov 2026 07:00:00 GMT</pubDate>
    </item>
  </channel>
</rss>"#;

    const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Science Wire</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2026-11-10T08:30:00Z</updated>
  <entry>
    <title>Comet brightens</title>
    <id>urn:uuid:1</id>
    <link href="https://science.example/comet"/>
    <updated>2026-11-10T08:30:00Z</updated>
    <summary>Visible to the naked eye tonight.</summary>
  </entry>
  <entry>
    <title>Glacier survey published</title>
    <id>urn:uuid:2</id>
    <updated>2026-11-09T12:00:00Z</updated>
  </entry>
</feed>"#;

    /// An Atom feed without a title: the source falls back to the host.
    const UNTITLED_ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>urn:x</id>
  <updated>2026-11-10T10:00:00Z</updated>
  <entry><title>Untitled feed item</title><id>urn:x:1</id><updated>2026-11-10T10:00:00Z</updated></entry>
</feed>"#;

    fn feed_response(body: &str, content_type: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), content_type)
    }

    async fn mount(server: &MockServer, route: &str, template: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path(route))
            .respond_with(template)
            .mount(server)
            .await;
    }

    fn desk(server: &MockServer, routes: &[&str], max_items: usize, ttl: Duration) -> NewsDesk {
        crate::install_crypto_provider();
        let config = NewsConfig {
            feeds: routes
                .iter()
                .map(|r| format!("{}{r}", server.uri()))
                .collect(),
            max_items,
            ttl,
            timeout: Duration::from_secs(5),
        };
        NewsDesk::new(config).unwrap()
    }

    fn titles(items: &[NewsItem]) -> Vec<&str> {
        items.iter().map(|i| i.title.as_str()).collect()
    }

    #[tokio::test]
    async fn rss_and_atom_merge_newest_first_with_sources() {
        let server = MockServer::start().await;
        mount(&server, "/rss", feed_response(RSS, "application/rss+xml")).await;
        mount(
            &server,
            "/atom",
            feed_response(ATOM, "application/atom+xml"),
        )
        .await;
        let desk = desk(&server, &["/rss", "/atom"], 10, Duration::from_secs(600));

        let items = desk.headlines().await;
        assert_eq!(
            titles(&items),
            [
                "Ferry timetable changes",
                "Comet brightens",
                "Fish market record",
                "Glacier survey published",
                "Old lighthouse story",
            ]
        );
        let ferry = &items[0];
        assert_eq!(ferry.source, "Harbour Times");
        assert_eq!(
            ferry.summary.as_deref(),
            Some("New winter times from Monday.")
        );
        assert_eq!(ferry.link.as_deref(), Some("https://harbour.example/ferry"));
        assert_eq!(
            ferry.published.map(|d| d.to_rfc3339()).as_deref(),
            Some("2026-11-10T09:00:00+00:00")
        );
        let comet = &items[1];
        assert_eq!(comet.source, "Science Wire");
        assert_eq!(
            comet.summary.as_deref(),
            Some("Visible to the naked eye tonight.")
        );
        assert_eq!(comet.link.as_deref(), Some("https://science.example/comet"));
        assert_eq!(items[3].summary, None);
    }

    #[tokio::test]
    async fn items_are_capped_over_all_feeds() {
        let server = MockServer::start().await;
        mount(&server, "/rss", feed_response(RSS, "application/rss+xml")).await;
        mount(
            &server,
            "/atom",
            feed_response(ATOM, "application/atom+xml"),
        )
        .await;
        let desk = desk(&server, &["/rss", "/atom"], 2, Duration::from_secs(600));
        assert_eq!(
            titles(&desk.headlines().await),
            ["Ferry timetable changes", "Comet brightens"]
        );
    }

    #[tokio::test]
    async fn untitled_feed_is_named_by_its_host() {
        let server = MockServer::start().await;
        mount(
            &server,
            "/untitled",
            feed_response(UNTITLED_ATOM, "application/atom+xml"),
        )
        .await;
        let desk = desk(&server, &["/untitled"], 10, Duration::from_secs(600));
        let items = desk.headlines().await;
        assert_eq!(titles(&items), ["Untitled feed item"]);
        assert_eq!(items[0].source, "127.0.0.1");
    }

    #[tokio::test]
    async fn failing_and_garbage_feeds_are_skipped() {
        let server = MockServer::start().await;
        mount(&server, "/broken", ResponseTemplate::new(500)).await;
        mount(
            &server,
            "/garbage",
            ResponseTemplate::new(200).set_body_string("this is not a feed"),
        )
        .await;
        mount(
            &server,
            "/atom",
            feed_response(ATOM, "application/atom+xml"),
        )
        .await;
        let desk = desk(
            &server,
            &["/broken", "/garbage", "/atom"],
            10,
            Duration::from_secs(600),
        );
        assert_eq!(
            titles(&desk.headlines().await),
            ["Comet brightens", "Glacier survey published"]
        );
    }

    #[tokio::test]
    async fn cache_serves_repeat_calls_within_the_ttl() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/rss"))
            .respond_with(feed_response(RSS, "application/rss+xml"))
            .expect(1)
            .mount(&server)
            .await;
        let desk = desk(&server, &["/rss"], 10, Duration::from_secs(3600));
        let first = desk.headlines().await;
        let second = desk.headlines().await;
        assert_eq!(first.len(), 3);
        assert_eq!(first, second);
        // Checked here rather than only on drop, so a failure names this test clearly.
        server.verify().await;
    }

    #[tokio::test]
    async fn every_feed_failing_keeps_the_last_good_items() {
        let server = MockServer::start().await;
        // Good once, then broken: a TTL of zero makes every call fetch again.
        Mock::given(method("GET"))
            .and(path("/rss"))
            .respond_with(feed_response(RSS, "application/rss+xml"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/rss"))
            .respond_with(ResponseTemplate::new(503))
            .expect(1)
            .mount(&server)
            .await;
        let desk = desk(&server, &["/rss"], 10, Duration::ZERO);
        let good = desk.headlines().await;
        assert_eq!(good.len(), 3);
        let after_failure = desk.headlines().await;
        assert_eq!(after_failure, good);
        server.verify().await;
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/rss"))
            .respond_with(
                feed_response(RSS, "application/rss+xml").set_delay(Duration::from_millis(100)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let desk = desk(&server, &["/rss"], 10, Duration::from_secs(3600));
        let (a, b, c) = tokio::join!(desk.headlines(), desk.headlines(), desk.headlines());
        assert_eq!(a.len(), 3);
        assert_eq!(a, b);
        assert_eq!(a, c);
        server.verify().await;
    }

    /// An empty `news.feeds` is a valid setting (the default), not an error.
    #[tokio::test]
    async fn no_feeds_is_valid_and_has_no_news() {
        crate::install_crypto_provider();
        let desk = NewsDesk::new(NewsConfig::default()).unwrap();
        assert!(desk.headlines().await.is_empty());
    }

    #[test]
    fn bad_feed_urls_are_refused_without_their_query() {
        crate::install_crypto_provider();
        for bad in ["not a url", "ftp://feeds.example/rss", "file:///etc/passwd"] {
            let err = NewsDesk::new(NewsConfig {
                feeds: vec![bad.to_owned()],
                ..NewsConfig::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains("news.feeds"), "{err}");
        }
        let err = NewsDesk::new(NewsConfig {
            feeds: vec!["ftp://feeds.example/rss?token=hunter2".to_owned()],
            ..NewsConfig::default()
        })
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn plain_text_strips_tags_entities_and_caps() {
        assert_eq!(
            plain_text("<p>Rain &amp; wind<br/>expected</p>", 100),
            "Rain & wind expected"
        );
        assert_eq!(plain_text("a &amp;lt; b", 100), "a &lt; b");
        assert_eq!(
            plain_text("<b>Bold</b>, <a href=\"x\">linked</a>.", 100),
            "Bold, linked."
        );
        assert_eq!(plain_text("1 < 2 and 3 > 2", 100), "1 < 2 and 3 > 2");
        let capped = plain_text(&"word ".repeat(100), 20);
        assert_eq!(capped.chars().count(), 20);
        assert!(capped.ends_with('…'), "{capped}");
        assert_eq!(plain_text("東京で初雪", 3), "東京…");
    }
}
