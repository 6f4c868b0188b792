//! The web app: the built listener page and studio (`frontend/out`, `server.web_dir`),
//! served at `/` by the API role after every API route, so no file can shadow one. When the
//! folder is not there, `/` answers a short page saying how to build it (the API works
//! without it). Files are served by `actix-files`: no directory listings, no hidden files,
//! nothing outside the folder (`..` is refused, and so is a symlink that leads out); a path that is not a file is a JSON 404.

use std::path::{Path, PathBuf};

use actix_web::{HttpResponse, web};

/// Where the web app is, if it is built.
#[derive(Debug, Clone)]
pub struct WebApp {
    dir: Option<PathBuf>,
    configured: String,
}

impl WebApp {
    /// `server.web_dir`: the folder is used when it holds an `index.html`.
    pub fn new(web_dir: &str) -> Self {
        let configured = web_dir.trim().to_owned();
        let dir = Some(PathBuf::from(&configured))
            .filter(|d| !configured.is_empty() && d.join("index.html").is_file());
        match &dir {
            Some(d) => tracing::info!(dir = %d.display(), "serving the web app at /"),
            None if configured.is_empty() => tracing::info!("no web app (server.web_dir is empty)"),
            None => tracing::info!(
                dir = %configured,
                "the web app is not built; / says how to build it"
            ),
        }
        Self { dir, configured }
    }

    /// Mounts the app at `/` (after everything else), or the page that says how to build it.
    pub fn mount(&self, cfg: &mut web::ServiceConfig) {
        match &self.dir {
            Some(dir) => {
                cfg.service(files(dir));
            }
            None if self.configured.is_empty() => {}
            None => {
                let page = how_to_build(&self.configured);
                let answer = move || {
                    let page = page.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/html; charset=utf-8")
                            .body(page)
                    }
                };
                // HEAD as well, as `Allow` says (schemathesis found it answered 405).
                cfg.service(
                    crate::web::resource("/", "GET, HEAD")
                        .route(web::get().to(answer.clone()))
                        .route(web::head().to(answer)),
                );
            }
        }
    }
}

fn files(dir: &Path) -> actix_files::Files {
    // actix-files follows symlinks; a path that resolves outside the folder (a symlink
    // left in the build output) is answered as if it were not there.
    let root = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let inside = root.clone();
    actix_files::Files::new("/", dir)
        .path_filter(move |path, _| stays_inside(&inside, path))
        .index_file("index.html")
        .redirect_to_slash_directory()
        .prefer_utf8(true)
        .default_handler(web::to(|| async {
            crate::web::error_response(
                actix_web::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such page",
            )
        }))
}

/// Whether `path` (relative, as asked) resolves to something inside `root` (canonical); a
/// path that does not exist is left to the file service (a 404).
fn stays_inside(root: &Path, path: &Path) -> bool {
    match root.join(path).canonicalize() {
        Ok(real) => real.starts_with(root),
        Err(_) => true,
    }
}

/// The page `/` answers when the app is not built.
fn how_to_build(dir: &str) -> String {
    let dir = dir
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Radio24</title></head><body style=\"font-family: system-ui, sans-serif; \
         max-width: 40rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5\">\
         <h1>Radio24 is on air</h1>\
         <p>The web app is not built, so this server has no page to show here \
         (it looked in <code>{dir}</code>, <code>server.web_dir</code>).</p>\
         <p>Build it with <code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code> \
         and restart. Until then, listen with any audio player at \
         <a href=\"/v1/channels/radio24/stream\"><code>/v1/channels/radio24/stream</code></a>, \
         and see <code>docs/api.md</code> for the rest.</p></body></html>\n"
    )
}
