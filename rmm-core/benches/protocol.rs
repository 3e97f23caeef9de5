//! Wire-codec benchmarks: control-message decode/encode rate and the
//! data-frame path's throughput.
//!
//! `cargo bench -p rmm-core --bench protocol`
#![allow(missing_docs, clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rmm_core::protocol::{
    Codec, CommandContext, CommandType, Frame, Heartbeat, Message, RunCommand,
};
use std::hint::black_box;
use uuid::Uuid;

fn control(c: &mut Criterion) {
    let codec = Codec::default();
    let heartbeat = codec
        .encode_to_vec(&Frame::Control(Message::Heartbeat(Heartbeat {
            seq: 123_456,
            running: 2,
        })))
        .unwrap();
    let run = Frame::Control(Message::RunCommand(RunCommand {
        command_id: Uuid::from_u128(7),
        command_type: CommandType::Bash,
        command: "systemctl restart nginx && journalctl -u nginx -n 20".into(),
        context: CommandContext::System,
        timeout_secs: Some(60),
    }));

    let mut g = c.benchmark_group("control");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_heartbeat", |b| {
        b.iter(|| codec.decode_message(black_box(&heartbeat)).unwrap())
    });
    let mut buf = BytesMut::with_capacity(256);
    g.bench_function("encode_heartbeat", |b| {
        let f = Frame::Control(Message::Heartbeat(Heartbeat { seq: 1, running: 0 }));
        b.iter(|| {
            buf.clear();
            codec.encode(black_box(&f), &mut buf).unwrap();
        })
    });
    let run_bytes = codec.encode_to_vec(&run).unwrap();
    g.bench_function("decode_run_command", |b| {
        b.iter(|| codec.decode_message(black_box(&run_bytes)).unwrap())
    });
    g.finish();
}

fn data(c: &mut Criterion) {
    let codec = Codec::default();
    let payload = Bytes::from(vec![0xa5u8; 32 * 1024]);
    let mut g = c.benchmark_group("data");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    // Encode into a reused buffer, then stream-decode it (zero-copy split).
    let mut wire = BytesMut::with_capacity(64 * 1024);
    g.bench_function("encode_decode_32KiB", |b| {
        b.iter(|| {
            codec
                .encode_data(7, black_box(&payload), &mut wire)
                .unwrap();
            let f = codec.decode(&mut wire).unwrap().unwrap();
            black_box(f);
        })
    });
    g.finish();
}

criterion_group!(benches, control, data);
criterion_main!(benches);
