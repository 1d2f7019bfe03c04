//! Webhooks (`WEBHOOK_URL`, `WEBHOOK_SECRET`): a real HTTP receiver on
//! 127.0.0.1 gets the room's events signed, in order, again after a
//! failure, and a receiver that is down does not hold up the chat.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use testkit::{spawn_app_with, TestApp};

const SECRET: &str = "webhook-test-secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    event: String,
    delivery: String,
    signature: String,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver: answers 503 to its first `failures` requests, then
/// 200, and keeps every request.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

struct Script {
    got: Arc<Mutex<Vec<Received>>>,
    failures: usize,
}

async fn receive(req: HttpRequest, body: web::Bytes, script: web::Data<Script>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut got = script.got.lock().expect("not poisoned");
    got.push(Received {
        event: header("x-chatterbox-event"),
        delivery: header("x-chatterbox-delivery"),
        signature: header("x-chatterbox-signature"),
        body: body.to_vec(),
    });
    if got.len() <= script.failures {
        HttpResponse::ServiceUnavailable().finish()
    } else {
        HttpResponse::NoContent().finish()
    }
}

impl Receiver {
    fn start(failures: usize) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = web::Data::new(Script {
            got: got.clone(),
            failures,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(script.clone())
                .route("/hooks", web::post().to(receive))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("the receiver binds");
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        Receiver { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// Waits until `n` requests have come (or 15 s), then returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.got.lock().expect("not poisoned").clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn app_posting_to(url: String) -> TestApp {
    spawn_app_with(move |c| {
        c.webhook_url = Some(url);
        c.webhook_secret = Some(SECRET.into());
    })
    .await
}

fn signed(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[actix_web::test]
async fn a_room_s_events_arrive_signed_and_in_order() {
    let receiver = Receiver::start(0);
    let app = app_posting_to(receiver.url()).await;
    let mut alice = app.connect("alice").await;
    alice.join("general").await;
    alice
        .send(json!({"type": "chat", "room": "general", "text": "hi hooks", "ref": "a"}))
        .await;
    let echo = alice.expect("chat").await;
    alice
        .send(json!({"type": "leave", "room": "general"}))
        .await;
    alice.expect("leave").await;

    let got = receiver.wait_for(3).await;
    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["room.occupied", "message", "room.vacated"]);
    for request in &got {
        assert_eq!(
            request.signature,
            signed(&request.body),
            "{} is signed with WEBHOOK_SECRET",
            request.event
        );
        let body = request.json();
        assert_eq!(body["event"], request.event);
        assert_eq!(body["room"], "general");
        assert_eq!(body["id"], request.delivery);
    }
    let message = got[1].json();
    assert_eq!(message["message"]["id"], echo["id"], "the stored chat's id");
    assert_eq!(message["message"]["user"], "alice");
    assert_eq!(message["message"]["text"], "hi hooks");
    let ids: std::collections::HashSet<_> = got.iter().map(|r| r.delivery.clone()).collect();
    assert_eq!(ids.len(), 3, "each event has its own delivery id");

    let metrics = testkit::scrape(app.port).await;
    assert_eq!(
        metrics.get(
            "chatterbox_webhook_events_total",
            Some(("outcome", "delivered"))
        ),
        3.0
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_failed_post_is_sent_again_with_the_same_id_until_it_is_taken() {
    let receiver = Receiver::start(2);
    let app = app_posting_to(receiver.url()).await;
    let mut alice = app.connect("alice").await;
    alice.join("general").await;

    // Two 503s, then 204: after 0.5 s and 1 s.
    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|r| r.event == "room.occupied"));
    assert!(
        got.iter().all(|r| r.delivery == got[0].delivery),
        "a retry is the same event: the receiver can drop repeats"
    );
    assert!(got.iter().all(|r| r.body == got[0].body));
    app.stop().await;
}

#[actix_web::test]
async fn a_receiver_that_is_down_does_not_hold_up_the_chat() {
    // Nothing listens there: every POST fails and is retried for 7.5 s.
    let closed = format!("http://127.0.0.1:{}/hooks", testkit::free_port());
    let app = app_posting_to(closed).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.join("general").await;
    bob.join("general").await;
    alice.expect("join").await;
    let started = Instant::now();
    for n in 0..20 {
        alice
            .send(json!({"type": "chat", "room": "general", "text": format!("m{n}")}))
            .await;
    }
    for n in 0..20 {
        let chat = bob.expect("chat").await;
        assert_eq!(chat["text"], format!("m{n}"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the chat went on while the webhooks retried: {:?}",
        started.elapsed()
    );
    app.stop().await;
}
