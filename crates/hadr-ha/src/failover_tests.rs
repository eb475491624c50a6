use super::*;

const MS: u64 = 1000;

fn timing() -> LeaseTiming {
    LeaseTiming::new(2000 * MS, 500 * MS).unwrap()
}

fn rec(version: &str, holder: &str, epoch: u64) -> Record {
    Record {
        version: version.into(),
        holder: Some(holder.into()),
        epoch,
        out_of_sync: vec![],
        standbys: None,
        timing: None,
    }
}

#[test]
fn a_standby_promotes_only_after_the_lease_ran_out_unchanged() {
    let mut s = StandbyFailover::new("b".into(), timing(), true, 3);
    s.step(StandbyEvent::LinkUp);
    // Connected, it watches the record (so the watch dates the holder's
    // last renewal) but never takes over.
    assert_eq!(
        s.step(StandbyEvent::Tick { now: 0 }),
        vec![StandbyAction::Read]
    );
    assert_eq!(s.hold, Some(Hold::Connected));
    s.step(StandbyEvent::LinkLost { in_peer: true });
    assert_eq!(s.step(StandbyEvent::Tick { now: 10 }), vec![]);
    assert_eq!(
        s.step(StandbyEvent::Tick { now: 200 * MS }),
        vec![StandbyAction::Read]
    );
    s.step(StandbyEvent::Read {
        now: 20,
        record: Some(rec("v1", "a", 3)),
    });
    assert!(matches!(s.hold, Some(Hold::LeaseRunning { .. })));
    // A renewal restarts the wait.
    s.step(StandbyEvent::Read {
        now: 1000 * MS,
        record: Some(rec("v2", "a", 3)),
    });
    let a = s.step(StandbyEvent::Read {
        now: 3000 * MS,
        record: Some(rec("v2", "a", 3)),
    });
    assert_eq!(a, vec![]);
    let a = s.step(StandbyEvent::Read {
        now: 3500 * MS,
        record: Some(rec("v2", "a", 3)),
    });
    assert_eq!(
        a,
        vec![StandbyAction::TakeOver {
            expected: Some("v2".into()),
            epoch: 4
        }]
    );
    assert_eq!(
        s.step(StandbyEvent::Won { now: 3600 * MS }),
        vec![StandbyAction::Promote { epoch: 4 }]
    );
}

#[test]
fn a_standby_waits_out_a_holder_configured_with_a_longer_lease() {
    let mut s = StandbyFailover::new("b".into(), timing(), true, 3);
    s.step(StandbyEvent::LinkUp);
    s.step(StandbyEvent::LinkLost { in_peer: true });
    let mut r = rec("v1", "a", 3);
    r.timing = Some(LeaseTiming::new(10_000 * MS, 1000 * MS).unwrap());
    let read = |s: &mut StandbyFailover, now| {
        s.step(StandbyEvent::Read {
            now,
            record: Some(r.clone()),
        })
    };
    read(&mut s, 0);
    // Its own 2.5 s would allow it; the holder's 11 s does not.
    assert_eq!(read(&mut s, 5000 * MS), vec![]);
    assert!(
        matches!(s.hold, Some(Hold::LeaseRunning { left_ms: 6000, .. })),
        "{:?}",
        s.hold
    );
    assert!(matches!(
        read(&mut s, 11_000 * MS).as_slice(),
        [StandbyAction::TakeOver { .. }]
    ));
}

#[test]
fn a_standby_never_promotes_when_it_could_lose_commits() {
    for (sync, in_peer, marked, want) in [
        (false, true, false, Hold::AsyncMode),
        (true, false, false, Hold::NotInPeer),
        (true, true, true, Hold::OutOfSync { from_lsn: 77 }),
    ] {
        let mut s = StandbyFailover::new("b".into(), timing(), sync, 3);
        s.step(StandbyEvent::LinkUp);
        s.step(StandbyEvent::LinkLost { in_peer });
        let mut r = rec("v", "a", 3);
        if marked {
            r.out_of_sync.push(("b".into(), 77));
        }
        for now in [0, 5000 * MS, 60_000 * MS] {
            let a = s.step(StandbyEvent::Read {
                now,
                record: Some(r.clone()),
            });
            assert!(a
                .iter()
                .all(|a| !matches!(a, StandbyAction::TakeOver { .. })));
        }
        assert_eq!(s.hold, Some(want));
    }
    // Connected, paused, or without the arbiter: never.
    let mut s = StandbyFailover::new("b".into(), timing(), true, 3);
    s.step(StandbyEvent::LinkUp);
    s.step(StandbyEvent::Read {
        now: 0,
        record: Some(rec("v", "a", 3)),
    });
    s.step(StandbyEvent::Tick { now: 9_000 * MS });
    assert_eq!(s.hold, Some(Hold::Connected));
    s.step(StandbyEvent::LinkLost { in_peer: true });
    s.step(StandbyEvent::ArbiterDown { now: 9_100 * MS });
    assert_eq!(s.step(StandbyEvent::Tick { now: 9_200 * MS }), vec![]);
    assert_eq!(s.hold, Some(Hold::ArbiterDown));
}

#[test]
fn a_primary_acks_alone_only_with_the_lease_and_the_mark() {
    let mut p = PrimaryFailover::new("a".into(), 3, timing(), vec![Member::sync("b")]);
    assert_eq!(
        p.step(PrimaryEvent::Tick { now: 0 }),
        vec![PrimaryAction::Read]
    );
    let a = p.step(PrimaryEvent::Read {
        now: 0,
        record: None,
    });
    assert_eq!(
        a,
        vec![PrimaryAction::Write {
            expected: None,
            out_of_sync: vec![("b".into(), 0)]
        }]
    );
    p.step(PrimaryEvent::Wrote {
        sent: 0,
        version: "v1".into(),
        out_of_sync: vec![("b".into(), 0)],
    });
    assert!(p.may_ack_alone(1));
    p.step(PrimaryEvent::StandbyPeer {
        standby: "b".into(),
        in_peer: true,
        lsn: 0,
    });
    // Entering PEER clears the mark at once.
    assert_eq!(
        p.step(PrimaryEvent::Tick { now: 10 }),
        vec![PrimaryAction::Write {
            expected: Some("v1".into()),
            out_of_sync: vec![]
        }]
    );
    p.step(PrimaryEvent::Wrote {
        sent: 10,
        version: "v2".into(),
        out_of_sync: vec![],
    });
    assert!(!p.may_ack_alone(20));
    assert!(p.may_write(20));
    // The standby drops: no ack alone until the mark is written.
    p.step(PrimaryEvent::StandbyPeer {
        standby: "b".into(),
        in_peer: false,
        lsn: 500,
    });
    assert!(!p.may_ack_alone(30));
    let a = p.step(PrimaryEvent::Tick { now: 30 });
    assert_eq!(
        a,
        vec![PrimaryAction::Write {
            expected: Some("v2".into()),
            out_of_sync: vec![("b".into(), 500)]
        }]
    );
    p.step(PrimaryEvent::Wrote {
        sent: 30,
        version: "v3".into(),
        out_of_sync: vec![("b".into(), 500)],
    });
    assert!(p.may_ack_alone(40));
    // Without renewals the lease runs out strictly before a contender may take it.
    assert!(p.may_ack_alone(30 + 1500 * MS - 1));
    assert!(!p.may_ack_alone(30 + 1500 * MS));
    assert!(!p.may_write(30 + 1500 * MS));
}

#[test]
fn a_mark_being_cleared_stops_counting_when_the_write_is_sent() {
    let mut p = PrimaryFailover::new("a".into(), 3, timing(), vec![Member::sync("b")]);
    p.step(PrimaryEvent::Read {
        now: 0,
        record: None,
    });
    p.step(PrimaryEvent::Wrote {
        sent: 0,
        version: "v1".into(),
        out_of_sync: vec![("b".into(), 0)],
    });
    assert!(p.may_ack_alone(1));
    assert_eq!(p.alone_until(1), 1500 * MS);
    p.step(PrimaryEvent::StandbyPeer {
        standby: "b".into(),
        in_peer: true,
        lsn: 0,
    });
    let a = p.step(PrimaryEvent::Tick { now: 10 });
    assert!(matches!(&a[..], [PrimaryAction::Write { out_of_sync, .. }] if out_of_sync.is_empty()));
    // Unanswered (slow, or lost): the arbiter may already hold the
    // unmarked record, so nothing may be acknowledged alone any more.
    assert!(!p.may_ack_alone(11));
    assert_eq!(p.alone_until(11), 0);
    p.step(PrimaryEvent::ArbiterDown { now: 2000 * MS });
    assert!(!p.may_ack_alone(2000 * MS + 1));
}

#[test]
fn a_primary_that_lost_the_record_to_a_newer_epoch_fences() {
    let mut p = PrimaryFailover::new("a".into(), 3, timing(), vec![Member::sync("b")]);
    p.step(PrimaryEvent::Read {
        now: 0,
        record: Some(rec("v1", "a", 3)),
    });
    p.step(PrimaryEvent::Wrote {
        sent: 0,
        version: "v2".into(),
        out_of_sync: vec![("b".into(), 0)],
    });
    assert_eq!(p.step(PrimaryEvent::Conflict), vec![PrimaryAction::Read]);
    assert!(!p.may_write(1));
    assert_eq!(
        p.step(PrimaryEvent::Read {
            now: 2,
            record: Some(rec("v3", "b", 4))
        }),
        vec![PrimaryAction::Fence { by_epoch: 4 }]
    );
    assert!(p.superseded);
    assert_eq!(p.step(PrimaryEvent::Tick { now: 10_000 * MS }), vec![]);
}

#[test]
fn after_a_graceful_hand_over_the_record_is_taken_at_once() {
    let mut p = PrimaryFailover::new("b".into(), 4, timing(), vec![Member::sync("a")]);
    p.handed_over_by = Some("a".into());
    assert_eq!(
        p.step(PrimaryEvent::Read {
            now: 0,
            record: Some(rec("v1", "a", 3))
        }),
        vec![PrimaryAction::Write {
            expected: Some("v1".into()),
            out_of_sync: vec![("a".into(), 0)]
        }]
    );
    // Not a record of the same or a newer epoch, though.
    let mut p = PrimaryFailover::new("b".into(), 4, timing(), vec![Member::sync("a")]);
    p.handed_over_by = Some("a".into());
    assert_eq!(
        p.step(PrimaryEvent::Read {
            now: 0,
            record: Some(rec("v1", "a", 4))
        }),
        vec![]
    );
}

#[test]
fn a_primary_waits_out_a_stale_holder_before_taking_the_record() {
    let mut p = PrimaryFailover::new("b".into(), 4, timing(), vec![Member::sync("a")]);
    assert_eq!(
        p.step(PrimaryEvent::Read {
            now: 0,
            record: Some(rec("v1", "a", 3))
        }),
        vec![]
    );
    assert!(!p.may_write(1));
    assert_eq!(
        p.step(PrimaryEvent::Tick { now: 700 * MS }),
        vec![PrimaryAction::Read]
    );
    p.step(PrimaryEvent::Read {
        now: 700 * MS,
        record: Some(rec("v1", "a", 3)),
    });
    assert_eq!(
        p.step(PrimaryEvent::Tick { now: 2500 * MS }),
        vec![PrimaryAction::Write {
            expected: Some("v1".into()),
            out_of_sync: vec![("a".into(), 0)]
        }]
    );
}

fn listed(standbys: &[(&str, bool, u64)]) -> Option<Vec<Recorded>> {
    Some(
        standbys
            .iter()
            .map(|(n, sync, lsn)| Recorded {
                name: n.to_string(),
                sync: *sync,
                flushed_lsn: *lsn,
            })
            .collect(),
    )
}

#[test]
fn a_primary_marks_only_the_standbys_it_waits_for() {
    let mut p = PrimaryFailover::new(
        "a".into(),
        3,
        timing(),
        vec![Member::sync("b"), Member::auxiliary("c")],
    );
    p.step(PrimaryEvent::Read {
        now: 0,
        record: None,
    });
    // Neither is in PEER yet: only the principal is marked, from 0.
    assert_eq!(p.recorded_out_of_sync, vec![]);
    p.step(PrimaryEvent::Wrote {
        sent: 0,
        version: "v1".into(),
        out_of_sync: vec![("b".into(), 0)],
    });
    assert!(p.may_ack_alone(1));
    // The principal in PEER: the pair is healthy whatever the auxiliary does.
    p.step(PrimaryEvent::StandbyPeer {
        standby: "b".into(),
        in_peer: true,
        lsn: 0,
    });
    let a = p.step(PrimaryEvent::Tick { now: 10 });
    assert_eq!(
        a,
        vec![PrimaryAction::Write {
            expected: Some("v1".into()),
            out_of_sync: vec![]
        }]
    );
    p.step(PrimaryEvent::Wrote {
        sent: 10,
        version: "v2".into(),
        out_of_sync: vec![],
    });
    p.step(PrimaryEvent::ArbiterDown { now: 20 });
    assert!(p.may_write(5_000 * MS), "the healthy-pair rule");
    // The principal leaves PEER: marked before anything is acknowledged alone.
    p.step(PrimaryEvent::StandbyPeer {
        standby: "b".into(),
        in_peer: false,
        lsn: 700,
    });
    assert_eq!(
        p.alone_hold(30),
        Some(AloneHold::NotMarked {
            standby: "b".into()
        })
    );
    assert_eq!(p.alone_hold(5_000 * MS), Some(AloneHold::NoLease));
    // An unknown name changes nothing.
    p.step(PrimaryEvent::StandbyPeer {
        standby: "zz".into(),
        in_peer: true,
        lsn: 0,
    });
    assert!(!p.may_write(5_000 * MS));
}

#[test]
fn an_auxiliary_never_promotes_and_says_why() {
    let mut s = StandbyFailover::new("c".into(), timing(), true, 3);
    s.step(StandbyEvent::LinkUp);
    s.step(StandbyEvent::LinkLost { in_peer: true });
    let mut r = rec("v1", "a", 3);
    r.standbys = listed(&[("b", true, 100), ("c", false, 100)]);
    for now in [0, 5_000 * MS, 60_000 * MS] {
        let a = s.step(StandbyEvent::Read {
            now,
            record: Some(r.clone()),
        });
        assert!(a
            .iter()
            .all(|a| !matches!(a, StandbyAction::TakeOver { .. })));
    }
    assert_eq!(
        s.hold,
        Some(Hold::Auxiliary {
            primary: "a".into()
        })
    );
    assert!(s.hold.as_ref().unwrap().to_string().contains("auxiliary"));
}

#[test]
fn a_less_advanced_eligible_standby_defers_one_ttl_then_tries() {
    let mut s = StandbyFailover::new("b".into(), timing(), true, 3);
    s.step(StandbyEvent::LinkUp);
    s.step(StandbyEvent::LinkLost { in_peer: true });
    let mut r = rec("v1", "a", 3);
    r.standbys = listed(&[("b", true, 100), ("d", true, 200)]);
    s.step(StandbyEvent::Read {
        now: 0,
        record: Some(r.clone()),
    });
    // Past ttl + margin it would go; d is further ahead, so it waits a ttl more.
    let a = s.step(StandbyEvent::Read {
        now: 2600 * MS,
        record: Some(r.clone()),
    });
    assert_eq!(a, vec![]);
    assert!(matches!(&s.hold, Some(Hold::Deferring { to, .. }) if to == "d"));
    let a = s.step(StandbyEvent::Read {
        now: 4500 * MS,
        record: Some(r.clone()),
    });
    assert_eq!(
        a,
        vec![StandbyAction::TakeOver {
            expected: Some("v1".into()),
            epoch: 4
        }]
    );
}

#[test]
fn after_a_hand_over_only_the_predecessors_record_is_taken_at_once() {
    let mut p = PrimaryFailover::new("b".into(), 4, timing(), vec![Member::sync("a")]);
    p.handed_over_by = Some("a".into());
    assert_eq!(
        p.alone_hold(0),
        Some(AloneHold::NotClaimed {
            predecessor: "a".into()
        })
    );
    // A third node's older record may still have a running lease: waited out.
    assert_eq!(
        p.step(PrimaryEvent::Read {
            now: 0,
            record: Some(rec("v1", "x", 2))
        }),
        vec![]
    );
    assert!(!p.may_ack_alone(1) && !p.may_write(1));
    // The claim cannot be made (the arbiter is down): never alone, and status says why.
    p.step(PrimaryEvent::ArbiterDown { now: 10 });
    assert!(p
        .alone_hold(20)
        .unwrap()
        .to_string()
        .contains("graceful takeover"));
}
