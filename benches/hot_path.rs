//! The per-message hot path of a chat, without sockets or actors: decode the
//! client's frame, encode the broadcast once (and the sender's own copy with
//! its `ref`), and fan the encoded bytes out to every member's queue. A
//! change that slows any step shows up here; the load tester measures the
//! whole server (docs/BENCHMARKS.md).

use bytestring::ByteString;
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

/// Decode, encode once plus the sender's copy, and queue for every member.
fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("chat to a room");
    for members in [10usize, 1000] {
        let mut queues: Vec<Vec<ByteString>> = vec![Vec::with_capacity(64); members];
        group.throughput(Throughput::Elements(members as u64));
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter(|| {
                let ClientFrame::Chat {
                    text, reference, ..
                } = decode_client_frame(black_box(FRAME), 4096).expect("a valid frame")
                else {
                    unreachable!("FRAME is a chat")
                };
                let message = stored(text);
                let frame: ByteString = ServerFrame::chat(&message, None).encode().into();
                let own: ByteString = ServerFrame::chat(&message, reference.as_deref())
                    .encode()
                    .into();
                let (first, rest) = queues.split_first_mut().expect("at least one member");
                first.push(own);
                for queue in rest {
                    queue.push(frame.clone());
                }
                if queues[0].len() >= 64 {
                    queues.iter_mut().for_each(Vec::clear);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode, fan_out);
criterion_main!(benches);
