//! The pages, built into the binary: one HTML shell, one script and one
//! style sheet (no build step, no Node), and the API's OpenAPI document.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const OPENAPI: &str = include_str!("assets/openapi.json");

pub(super) async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub(super) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(super) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/api/login",
            "/api/logout",
            "/api/me",
            "/api/password",
            "/api/wallboard",
            "/api/wallboard/events",
            "/api/agents/{agent}",
            "/api/acd/reset",
            "/api/calls/{id}/pop",
            "/api/calls/{id}/wrap",
            "/api/originate",
            "/api/records",
            "/api/records.csv",
            "/api/recordings/{id}",
            "/api/reports",
            "/api/reports.csv",
            "/api/config",
            "/api/config/history",
            "/api/config/history/{version}",
            "/api/prompts",
            "/api/prompts/{name}",
            "/api/users",
            "/api/users/{name}",
            "/api/audit",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
    }

    #[test]
    fn every_text_key_has_both_languages() {
        // The script's dictionary: `en: {...}` then `zh: {...}`, one
        // `key: "…"` per line.
        let s = super::SCRIPT;
        let block = |lang: &str| -> Vec<String> {
            let start = s.find(&format!("  {lang}: {{")).unwrap();
            let end = start + s[start..].find("\n  },").unwrap();
            s[start..end]
                .lines()
                .skip(1)
                .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
                .collect()
        };
        let (en, zh) = (block("en"), block("zh"));
        assert!(en.len() > 20, "{en:?}");
        assert_eq!(en, zh);
    }
}
