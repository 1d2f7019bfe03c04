//! Plain HTTP requests to a server on 127.0.0.1.

use serde_json::Value;

/// `GET path` on `port`: status, content type and the body as JSON
/// (`Value::Null` when the body is not JSON).
pub async fn get_json(port: u16, path: &str) -> (u16, String, Value) {
    let (status, content_type, body) = get(port, path).await;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, content_type, json)
}

/// `GET path` on `port`: status, content type (empty if none) and body.
pub(crate) async fn get(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    let client = awc::Client::default();
    let mut response = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} gets an answer: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let body = response.body().await.expect("a body");
    (status, content_type, body.to_vec())
}
