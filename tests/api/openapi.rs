//! `GET /openapi.json`: served, valid JSON, an OpenAPI 3.1 document whose every `$ref`
//! resolves, and complete. Complete both ways: every `resource(path, methods)` the API
//! role's route table registers (read from the source, so a new route without docs fails
//! here) is documented with exactly those methods, and for every documented path the
//! running app's 405 answer names in `Allow` exactly the documented methods. The socket
//! routes name their frames, which are schemas of the document; operator routes carry the
//! bearer scheme and their 401.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use radio24::cli::Role;

use crate::helpers::{ADMIN_TOKEN, TestApp};

/// The files whose `resource(...)` calls make the API role's routes.
const ROUTE_SOURCES: &[&str] = &[
    "src/api/routes/mod.rs",
    "src/metrics.rs",
    "src/api/web_app.rs",
];

/// The operation keys of an OpenAPI path item.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The frames each socket route's description must name, all schemas of the document.
const SOCKET_FRAMES: &[(&str, &[&str])] = &[
    (
        "/ws/broadcast",
        &[
            "Snapshot",
            "HostEvent",
            "QueueFrame",
            "ListenersFrame",
            "BroadcastErrorFrame",
        ],
    ),
    ("/ws/ptt", &["PttClientFrame", "PttServerFrame"]),
];

#[tokio::test]
async fn the_document_is_served_and_documents_every_route() {
    // A web_dir without a built app mounts `/` (the page saying how to build it), so the
    // web app's route is registered too.
    let unbuilt = tempfile::tempdir().unwrap();
    let web_dir = unbuilt.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn(Role::All, &[("RADIO24__SERVER__WEB_DIR", &web_dir)]).await;

    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: Value = match response.json().await {
        Ok(doc) => doc,
        Err(e) => panic!("/openapi.json is not JSON: {e}"),
    };
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi version {version:?}");
    let documented = documented_methods(&doc);

    // Every route registered is documented, with its methods.
    let registered = registered_routes();
    assert!(
        registered.len() >= 20,
        "the route table read from the source has only {} routes: {registered:?}",
        registered.len()
    );
    for (path, methods) in &registered {
        assert_eq!(
            documented.get(path),
            Some(methods),
            "route {path} ({methods:?}) is not documented as it is registered"
        );
    }

    // Every documented path is served, with exactly the documented methods.
    for (path, methods) in &documented {
        let concrete = concrete_path(path);
        let answer = app
            .client
            .request(
                reqwest::Method::from_bytes(b"PURGE").unwrap(),
                app.url(&concrete),
            )
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 405, "PURGE {concrete}");
        let allow: BTreeSet<String> = answer.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_ascii_lowercase())
            .collect();
        assert_eq!(&allow, methods, "the methods {path} answers");
    }

    assert_refs_resolve(&doc, &doc);
    for (path, frames) in SOCKET_FRAMES {
        let operation = &doc["paths"][path]["get"];
        let description = operation["description"].as_str().unwrap_or_default();
        for frame in *frames {
            assert!(
                doc["components"]["schemas"][frame].is_object(),
                "no schema {frame}"
            );
            assert!(
                description.contains(frame),
                "{path}'s description does not name {frame}"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                operation_ids.insert(id.to_owned()),
                "{method} {path}: operationId {id:?} is not unique"
            );
            if operation.get("security").is_some() {
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} needs a token but documents no 401"
                );
            }
        }
    }
}

/// Path → methods (lower case) of the document.
fn documented_methods(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let Some(paths) = doc["paths"].as_object() else {
        panic!("the document has no paths");
    };
    paths
        .iter()
        .map(|(path, item)| {
            let methods = METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (*m).to_owned())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// A documented path with its parameters filled in (any value routes the same).
fn concrete_path(path: &str) -> String {
    path.replace("{name}", "radio24")
        .replace("{hour}", "9")
        .replace("{id}", "00000000-0000-0000-0000-000000000000")
        .replace("{file}", "2026-11-28T09.ogg")
}

/// Every `#/components/...` reference in `value` names something `doc` has.
fn assert_refs_resolve(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let Some(pointer) = reference.strip_prefix('#') else {
                    panic!("a reference out of the document: {reference}");
                };
                assert!(
                    doc.pointer(pointer).is_some(),
                    "{reference} does not resolve"
                );
            }
            map.values().for_each(|v| assert_refs_resolve(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_refs_resolve(doc, v)),
        _ => {}
    }
}

/// The routes the source registers: every `resource("PATH", "METHODS")` call, under the
/// prefix of each `web::scope("PREFIX")` it sits in, as path → methods (lower case).
fn registered_routes() -> BTreeMap<String, BTreeSet<String>> {
    let mut routes = BTreeMap::new();
    for file in ROUTE_SOURCES {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let source = match std::fs::read_to_string(&path) {
            Ok(source) => source,
            Err(e) => panic!("reading {path}: {e}"),
        };
        for (route, methods) in resource_calls(&code_of(&source)) {
            let methods = methods
                .split(',')
                .map(|m| m.trim().to_ascii_lowercase())
                .filter(|m| !m.is_empty())
                .collect();
            routes.insert(route, methods);
        }
    }
    routes
}

/// The source without its comments (their parentheses would upset the nesting), and
/// without the unit tests at the end of a file.
fn code_of(source: &str) -> String {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(path, methods)` of each `resource("path", "methods")` call in `code`, with the prefix
/// of every enclosing `web::scope("prefix")` (one whose parenthesis, the one around the
/// scope's chain, is still open).
fn resource_calls(code: &str) -> Vec<(String, String)> {
    let mut calls = Vec::new();
    // (prefix, the depth the scope's chain sits at)
    let mut scopes: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut rest = code;
    while let Some(c) = rest.chars().next() {
        let after_identifier =
            code[..code.len() - rest.len()].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if let Some(after) = rest.strip_prefix("web::scope(") {
            let args = string_args(after);
            scopes.push((args.first().cloned().unwrap_or_default(), depth));
        } else if let Some(after) = rest.strip_prefix("resource(")
            && !after_identifier
        {
            // actix's own `web::resource(path)` has no methods: it fails the comparison, as
            // it should (its unknown methods would not get 405).
            let args = string_args(after);
            let prefix: String = scopes.iter().map(|(p, _)| p.as_str()).collect();
            let path = args.first().cloned().unwrap_or_default();
            let methods = args.get(1).cloned().unwrap_or_default();
            calls.push((format!("{prefix}{path}"), methods));
        }
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                // A scope ends with the parenthesis its chain sits in.
                scopes.retain(|(_, at)| *at <= depth);
            }
            '"' => {
                // Skip the string literal: its parentheses are text.
                let (_, len) = string_literal(rest);
                rest = &rest[len..];
                continue;
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    calls
}

/// The leading string-literal arguments of a call whose `(` was just read.
fn string_args(mut rest: &str) -> Vec<String> {
    let mut args = Vec::new();
    loop {
        rest = rest.trim_start();
        if !rest.starts_with('"') {
            break;
        }
        let (text, len) = string_literal(rest);
        args.push(text);
        rest = rest[len..].trim_start();
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None => break,
        }
    }
    args
}

/// The text and length in bytes of the string literal `rest` starts with.
fn string_literal(rest: &str) -> (String, usize) {
    let mut text = String::new();
    let mut chars = rest.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    text.push(escaped);
                }
            }
            '"' => return (text, i + 1),
            c => text.push(c),
        }
    }
    (text, rest.len())
}
