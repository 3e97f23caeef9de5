//! Store tests on real files.

use super::*;
use rmm_core::protocol::Message;

fn result(id: Uuid, outcome: CommandOutcome) -> CommandResult {
    CommandResult {
        command_id: id,
        outcome,
        exit_code: Some(0),
        signal: None,
        error: None,
        stdout_bytes: 0,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
        started_at_ms: Some(1),
        finished_at_ms: 2,
    }
}

fn drain(outbox: &mut Outbox, store: &Store) -> Vec<Message> {
    let mut v = Vec::new();
    while let Some(m) = outbox.next(store).unwrap() {
        v.push(m);
        assert!(v.len() < 10_000, "outbox does not terminate");
    }
    v
}

#[test]
fn lifecycle_started_output_result_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, rec) = Store::open(tmp.path(), 100, 0).unwrap();
    assert!(rec.is_empty());
    let id = Uuid::new_v4();
    assert_eq!(store.lookup(id), Lookup::Unknown);
    let mut spool = store.begin(id, 5).unwrap();
    let journal = std::fs::read_to_string(tmp.path().join("journal")).unwrap();
    assert!(
        journal.contains(&format!("{{\"started\":{{\"id\":\"{id}\"")),
        "{journal}"
    );
    spool.append(OutputStream::Stdout, "hello ").unwrap();
    spool.append(OutputStream::Stderr, "warn").unwrap();
    spool.append(OutputStream::Stdout, "wörld").unwrap();
    match store.lookup(id) {
        Lookup::Pending(p) => assert_eq!((p.stdout_len, p.stderr_len, p.result), (12, 4, None)),
        other => panic!("{other:?}"),
    }
    spool.finish(result(id, CommandOutcome::Completed)).unwrap();
    let Lookup::Pending(p) = store.lookup(id) else {
        panic!()
    };
    let r = p.result.unwrap();
    assert_eq!((r.stdout_bytes, r.stderr_bytes), (12, 4));

    let mut ob = Outbox::default();
    let msgs = drain(&mut ob, &store);
    let kinds: Vec<_> = msgs.iter().map(|m| m.kind()).collect();
    assert_eq!(
        kinds,
        [
            "command_started",
            "command_output",
            "command_output",
            "command_result"
        ]
    );
    let Message::CommandOutput(o) = &msgs[1] else {
        panic!()
    };
    assert_eq!((o.offset, o.data.as_str()), (0, "hello wörld"));
    // Nothing more until a resend is asked for.
    assert!(ob.next(&store).unwrap().is_none());
    ob.resend(id);
    assert_eq!(drain(&mut ob, &store).len(), 4);

    assert!(store.spool_path(id, OutputStream::Stdout).exists());
    assert!(store.ack(id).unwrap());
    assert!(!store.spool_path(id, OutputStream::Stdout).exists());
    assert!(!store.spool_path(id, OutputStream::Stderr).exists());
    match store.lookup(id) {
        Lookup::Acked(r) => assert_eq!(r.outcome, CommandOutcome::Completed),
        other => panic!("{other:?}"),
    }
    assert!(store.pending().is_empty());
    assert!(ob.next(&store).unwrap().is_none());
    // Still known after a restart.
    drop(store);
    let (store, _) = Store::open(tmp.path(), 100, 0).unwrap();
    assert!(matches!(store.lookup(id), Lookup::Acked(_)));
}

#[test]
fn ack_without_result_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), 100, 0).unwrap();
    let id = Uuid::new_v4();
    let _spool = store.begin(id, 1).unwrap();
    assert!(!store.ack(id).unwrap());
    assert!(!store.ack(Uuid::new_v4()).unwrap());
    assert!(matches!(store.lookup(id), Lookup::Pending(_)));
}

#[test]
fn restart_mid_command_finishes_it_as_failed_not_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    {
        let (store, _) = Store::open(tmp.path(), 100, 0).unwrap();
        let mut spool = store.begin(id, 7).unwrap();
        spool.append(OutputStream::Stdout, "partial €").unwrap();
        // Simulate a crash that tore the last character.
        std::mem::forget(spool);
    }
    let out = tmp.path().join(format!("{id}.stdout"));
    let mut f = OpenOptions::new().append(true).open(&out).unwrap();
    f.write_all(&[0xE2, 0x82]).unwrap();
    drop(f);

    let (store, rec) = Store::open(tmp.path(), 100, 99).unwrap();
    assert_eq!(rec, vec![id]);
    let Lookup::Pending(p) = store.lookup(id) else {
        panic!()
    };
    let r = p.result.unwrap();
    assert_eq!(r.outcome, CommandOutcome::Failed);
    assert_eq!(r.error.as_deref(), Some(RESTARTED_ERROR));
    assert_eq!(r.started_at_ms, Some(7));
    assert_eq!(r.stdout_bytes, "partial €".len() as u64);
    let msgs = drain(&mut Outbox::default(), &store);
    let Message::CommandOutput(o) = &msgs[1] else {
        panic!("{msgs:?}")
    };
    assert_eq!(o.data, "partial €");

    // A second restart does not recover it again, and keeps the result.
    drop(store);
    let (store, rec) = Store::open(tmp.path(), 100, 100).unwrap();
    assert!(rec.is_empty());
    let Lookup::Pending(p) = store.lookup(id) else {
        panic!()
    };
    assert_eq!(p.result.unwrap().finished_at_ms, 99);
}

#[test]
fn big_output_is_chunked_with_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), 100, 0).unwrap();
    let id = Uuid::new_v4();
    let mut spool = store.begin(id, 1).unwrap();
    let piece = "é".repeat(50_000); // 100 kB
    for _ in 0..5 {
        spool.append(OutputStream::Stdout, &piece).unwrap();
    }
    spool.finish(result(id, CommandOutcome::Completed)).unwrap();
    let msgs = drain(&mut Outbox::default(), &store);
    let mut expected_offset = 0;
    let mut total = String::new();
    for m in &msgs[1..msgs.len() - 1] {
        let Message::CommandOutput(o) = m else {
            panic!()
        };
        assert_eq!(o.offset, expected_offset);
        assert!(o.data.len() <= CHUNK_BYTES);
        expected_offset += o.data.len() as u64;
        total.push_str(&o.data);
    }
    assert!(msgs.len() > 4);
    assert_eq!(total, piece.repeat(5));
}

#[test]
fn finished_ids_are_bounded_and_journal_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), 3, 0).unwrap();
    let ids: Vec<Uuid> = (0..60).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        store
            .record_unstarted(result(*id, CommandOutcome::Cancelled))
            .unwrap();
        store.ack(*id).unwrap();
    }
    // One still running survives compaction.
    let running = Uuid::new_v4();
    let _spool = store.begin(running, 9).unwrap();
    let lines = std::fs::read_to_string(tmp.path().join("journal"))
        .unwrap()
        .lines()
        .count();
    assert!(lines <= 2 * 3 + 64 + 2, "{lines} journal lines");
    for id in &ids[..57] {
        assert_eq!(store.lookup(*id), Lookup::Unknown);
    }
    for id in &ids[57..] {
        assert!(matches!(store.lookup(*id), Lookup::Acked(_)));
    }
    drop(store);
    let (store, recovered) = Store::open(tmp.path(), 3, 0).unwrap();
    assert_eq!(recovered, vec![running]);
    assert!(matches!(store.lookup(ids[59]), Lookup::Acked(_)));
    assert_eq!(store.lookup(ids[0]), Lookup::Unknown);
}

#[test]
fn torn_journal_line_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    {
        let (store, _) = Store::open(tmp.path(), 10, 0).unwrap();
        store
            .record_unstarted(result(id, CommandOutcome::Completed))
            .unwrap();
    }
    let mut f = OpenOptions::new()
        .append(true)
        .open(tmp.path().join("journal"))
        .unwrap();
    f.write_all(b"{\"started\":{\"id\":\"").unwrap();
    drop(f);
    let (store, recovered) = Store::open(tmp.path(), 10, 0).unwrap();
    assert!(recovered.is_empty());
    assert!(matches!(
        store.lookup(id),
        Lookup::Pending(Pending {
            result: Some(_),
            ..
        })
    ));
}

#[test]
fn unstarted_result_has_no_started_message() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), 100, 0).unwrap();
    let id = Uuid::new_v4();
    let mut r = result(id, CommandOutcome::Cancelled);
    r.started_at_ms = None;
    store.record_unstarted(r).unwrap();
    let msgs = drain(&mut Outbox::default(), &store);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].kind(), "command_result");
}
