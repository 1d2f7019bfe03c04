//! The per-message hot path of a chat, without sockets or actors: decode the
//! client's frame, encode the broadcast once (and the sender's own copy with
//! its `ref`), and fan the encoded bytes out to every member's queue, with
//! the room's own delivery code (`actors::room::delivery`) over members
//! whose outbox is a plain queue. A change that slows any step shows up
//! here; the load tester measures the whole server (docs/BENCHMARKS.md).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use chatterbox::actors::outbox::Overflow;
use chatterbox::actors::room::delivery::{fan_out, InFlight, Sender, Stored, StoredChat};
use chatterbox::actors::room::members::{Members, Outlet};
use chatterbox::actors::SessionId;

use chatterbox::protocol::{decode_client_frame, ChatMessage, ClientFrame, ServerFrame};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const FRAME: &str = r#"{"type":"chat","room":"general","text":"lt 3 1042 9812345 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","ref":"1042"}"#;

fn stored(text: String) -> ChatMessage {
    ChatMessage {
        id: 123_456,
        room: "general".into(),
        user: "alice".into(),
        text,
        timestamp: "2026-11-26T01:00:00.000Z".into(),
        ..ChatMessage::default()
    }
}

fn decode(c: &mut Criterion) {
    c.bench_function("decode chat frame", |b| {
        b.iter(|| decode_client_frame(black_box(FRAME), 4096).expect("a valid frame"))
    });
}

fn encode(c: &mut Criterion) {
    let message = stored("lt 3 1042 9812345 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".into());
    c.bench_function("encode chat frame", |b| {
        b.iter(|| ByteString::from(ServerFrame::chat(black_box(&message), None).encode()))
    });
}

/// An outbox that keeps each batch it is given, bounded like the real one
/// (by frames queued), and emptied every 64 chats so memory stays flat.
#[derive(Default)]
struct Queue(RefCell<Vec<ByteString>>);

impl Outlet for Queue {
    type Receipt = ();

    fn push(&self, frame: ByteString, limit: usize) -> Result<(), Overflow> {
        self.push_all(Arc::from(vec![frame]), (), limit)
    }

    fn push_all(&self, frames: Arc<[ByteString]>, _: (), limit: usize) -> Result<(), Overflow> {
        let mut queue = self.0.borrow_mut();
        if queue.len() + frames.len() > limit {
            return Err(Overflow);
        }
        queue.extend(frames.iter().cloned());
        Ok(())
    }
}

/// Decode, encode once plus the sender's copy (the room's
/// [`StoredChat::answer`]), and hand every member its frames (the room's
/// [`fan_out`]).
fn fan_out_to_room(c: &mut Criterion) {
    let mut group = c.benchmark_group("chat to a room");
    for size in [10usize, 1000] {
        let mut members = Members::default();
        for n in 0..size as u64 {
            members.insert(SessionId(n), format!("user{n}"), Queue::default());
        }
        let sender = SessionId(0);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                let ClientFrame::Chat {
                    text, reference, ..
                } = decode_client_frame(black_box(FRAME), 4096).expect("a valid frame")
                else {
                    unreachable!("FRAME is a chat")
                };
                let chat = InFlight {
                    sender: Sender::Member(sender),
                    reference,
                    received: Instant::now(),
                };
                let batch = [StoredChat::answer::<()>(
                    chat,
                    Ok(Stored::New(stored(text))),
                )];
                let result = fan_out(&batch, &members, 64, || ());
                debug_assert!(result.overflowed.is_empty());
                if members
                    .get(sender)
                    .is_some_and(|m| m.outbox.0.borrow().len() >= 64)
                {
                    for (_, member) in members.iter() {
                        member.outbox.0.borrow_mut().clear();
                    }
                }
                result.delivered
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode, fan_out_to_room);
criterion_main!(benches);
