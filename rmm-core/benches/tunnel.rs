//! Tunnel machine throughput: 8 channels moving data from the agent to the
//! server through both machines (write -> poll_transmit -> handle_frame ->
//! read -> window adjust back), with default windows (256 KiB) and frames
//! (32 KiB). One variant hands frames over directly, one also encodes and
//! decodes every frame with the codec, as a WebSocket driver does.
#![allow(missing_docs)]
// criterion_group! generates an undocumented fn
// The bench reads the clock once, as the origin of virtual time.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rmm_core::protocol::{ChannelKind, Codec, Frame};
use rmm_core::tunnel::{AgentTunnel, Event, ServerTunnel, TunnelConfig};
use uuid::Uuid;

const CHANNELS: usize = 8;
const PER_CHANNEL: u64 = 4 << 20;

struct Pair {
    agent: AgentTunnel,
    server: ServerTunnel,
    now: Instant,
    ids: Vec<u32>,
    codec: Option<Codec>,
    wire: BytesMut,
}

impl Pair {
    fn new(codec: Option<Codec>) -> Self {
        let now = Instant::now();
        let mut p = Pair {
            agent: AgentTunnel::new(TunnelConfig::default()),
            server: ServerTunnel::new(TunnelConfig::default()),
            now,
            ids: Vec::new(),
            codec,
            wire: BytesMut::new(),
        };
        p.server
            .open_session(now, Uuid::from_u128(1), "bench".into())
            .expect("session");
        p.exchange();
        for _ in 0..CHANNELS {
            let id = p
                .server
                .open_channel(now, ChannelKind::File, serde_json::Value::Null)
                .expect("channel");
            p.exchange();
            p.agent.accept_channel(id).expect("accept");
            p.exchange();
            p.ids.push(id);
        }
        p
    }

    fn carry(&mut self, frame: Frame) -> Frame {
        match self.codec {
            None => frame,
            Some(codec) => {
                codec.encode(&frame, &mut self.wire).expect("encode");
                codec
                    .decode(&mut self.wire)
                    .expect("decode")
                    .expect("whole frame")
            }
        }
    }

    fn flush_to_server(&mut self) {
        while let Some(f) = self.agent.poll_transmit(self.now) {
            let f = self.carry(f);
            self.server.handle_frame(self.now, f).expect("server input");
        }
    }

    fn flush_to_agent(&mut self) {
        while let Some(f) = self.server.poll_transmit(self.now) {
            let f = self.carry(f);
            self.agent.handle_frame(self.now, f).expect("agent input");
        }
    }

    fn exchange(&mut self) {
        self.flush_to_agent();
        self.flush_to_server();
        self.drain_events();
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.agent.poll_event() {
            black_box(&ev);
        }
        while let Some(ev) = self.server.poll_event() {
            if let Event::ChannelClosed { .. } | Event::SessionClosed { .. } = ev {
                panic!("unexpected {ev:?}");
            }
        }
    }

    /// Moves `PER_CHANNEL` bytes on every channel, agent -> server.
    fn transfer(&mut self, src: &[u8]) -> u64 {
        let mut written = [0u64; CHANNELS];
        let mut read = [0u64; CHANNELS];
        let mut total = 0;
        while read.iter().any(|r| *r < PER_CHANNEL) {
            for (i, id) in self.ids.clone().into_iter().enumerate() {
                let left = (PER_CHANNEL - written[i]) as usize;
                let n = self
                    .agent
                    .write(id, &src[..left.min(src.len())])
                    .expect("write");
                written[i] += n as u64;
            }
            self.flush_to_server();
            for (i, id) in self.ids.clone().into_iter().enumerate() {
                while let Some(chunk) = self.server.read_chunk(id, usize::MAX).expect("read") {
                    read[i] += chunk.len() as u64;
                    total += black_box(chunk).len() as u64;
                }
            }
            self.flush_to_agent();
            self.drain_events();
        }
        total
    }
}

fn throughput(c: &mut Criterion) {
    let src = vec![0x5au8; 256 * 1024];
    let mut group = c.benchmark_group("tunnel");
    group.throughput(Throughput::Bytes(CHANNELS as u64 * PER_CHANNEL));
    group.sample_size(20);
    for (name, codec) in [
        ("8_channels_machines", None),
        ("8_channels_machines_and_codec", Some(Codec::default())),
    ] {
        let mut pair = Pair::new(codec);
        group.bench_function(name, |b| {
            b.iter(|| black_box(pair.transfer(&src)));
        });
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
