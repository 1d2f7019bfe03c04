//! `GET /metrics`, parsed by a real Prometheus text parser.

/// Scrapes `/metrics` on `port`; fails unless it answers 200 with
/// Prometheus text.
pub async fn scrape(port: u16) -> Metrics {
    let (status, content_type, body) = crate::http::get(port, "/metrics").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = String::from_utf8(body).expect("metrics are UTF-8");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Metrics {
        scrape: prometheus_parse::Scrape::parse(lines).expect("metrics parse as Prometheus text"),
        text,
    }
}

/// One scrape: parsed, and the text it came from (for failure messages).
pub struct Metrics {
    pub scrape: prometheus_parse::Scrape,
    pub text: String,
}

impl Metrics {
    /// The value of the counter or gauge `name` (with `label` = `value`, if
    /// given); panics if the series is missing.
    pub fn get(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        use prometheus_parse::Value as V;
        let sample = self
            .scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.map_or(true, |(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no series {name} {label:?} in\n{}", self.text));
        match &sample.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => *v,
            other => panic!("{name} is not a single number: {other:?}"),
        }
    }

    pub fn value(&self, name: &str) -> f64 {
        self.get(name, None)
    }
}
