//! Unit tests of the UI state reducer, run in headless Chromium by wasm-bindgen-test
//! (`make web-test`). The same reducer runs natively in `cargo test`; here it runs on the
//! browser's clock, in the browser's wasm engine.
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use keyval_core::sim::FaultAction;
use keyval_core::KvOp;
use wasm_bindgen_test::*;
use web_viz::engine::{TraceFile, UserAction};
use web_viz::state::{Mode, Msg, Ui};

wasm_bindgen_test_configure!(run_in_browser);

fn ui(nodes: usize, seed: u64) -> Rc<Ui> {
    Rc::new(Ui::new(nodes, seed, Mode::Sim, &[])).apply(Msg::Pause)
}

fn steps(mut s: Rc<Ui>, n: usize) -> Rc<Ui> {
    for _ in 0..n {
        s = s.apply(Msg::Step);
    }
    s
}

#[wasm_bindgen_test]
fn step_advances_exactly_one_visible_event() {
    let mut s = ui(3, 1);
    for i in 1..=20 {
        s = s.apply(Msg::Step);
        assert_eq!(s.engine.borrow().visible_steps, i);
    }
}

#[wasm_bindgen_test]
fn three_quick_actions_all_register() {
    let s = ui(3, 1);
    let v = s.version;
    let s = s.apply(Msg::Step).apply(Msg::Step).apply(Msg::Step);
    assert_eq!(s.version, v + 3);
    assert_eq!(s.engine.borrow().visible_steps, 3);
}

#[wasm_bindgen_test]
fn play_frames_advance_virtual_time() {
    let mut s = Rc::new(Ui::new(5, 2, Mode::Sim, &[])).apply(Msg::SetSpeed(50.0));
    assert!(s.playing);
    for i in 0..60 {
        s = s.apply(Msg::Frame(i as f64 * 16.0));
    }
    // 59 frames of 16 ms at real-time speed: about 0.94 s of virtual time.
    assert!(s.display_time >= 900_000, "display time {}", s.display_time);
    assert!(s.engine.borrow().step_count() > 0);
}

#[wasm_bindgen_test]
fn seek_back_and_forward_is_exact() {
    let s = steps(ui(5, 3), 80);
    let end = s.engine.borrow().trace().to_vec();
    let step = s.engine.borrow().step_count();
    let s = s.apply(Msg::Seek(step / 3));
    assert_eq!(s.engine.borrow().step_count(), step / 3);
    let s = s.apply(Msg::Seek(step));
    assert_eq!(s.engine.borrow().trace(), &end[..]);
}

#[wasm_bindgen_test]
fn acting_in_the_past_forks_the_future() {
    let s = steps(ui(3, 4), 40);
    let s = s.apply(Msg::Act(UserAction::Fault(FaultAction::Crash(1))));
    let s = steps(s, 10);
    let horizon = s.engine.borrow().horizon;
    let s = s.apply(Msg::Seek(horizon / 2));
    let s = s.apply(Msg::Act(UserAction::Fault(FaultAction::Crash(2))));
    let e = s.engine.borrow();
    assert_eq!(e.horizon, horizon / 2);
    assert!(e.actions.iter().all(|a| a.step <= horizon / 2));
}

#[wasm_bindgen_test]
fn toggling_a_link_cuts_then_restores_both_ways() {
    let s = ui(3, 5).apply(Msg::ToggleLink(1, 2));
    assert!(s.engine.borrow().sim.network().is_cut(1, 2));
    assert!(s.engine.borrow().sim.network().is_cut(2, 1));
    let s = s.apply(Msg::ToggleLink(1, 2));
    assert!(!s.engine.borrow().sim.network().is_cut(1, 2));
}

#[wasm_bindgen_test]
fn export_then_import_restores_the_run() {
    let s = steps(ui(5, 6), 300);
    let s = s.apply(Msg::Submit(KvOp::Put {
        key: b"a".to_vec(),
        value: b"1".to_vec(),
    }));
    let s = steps(s, 100);
    let json = TraceFile::of(&s.engine.borrow()).to_json();
    let other = ui(3, 99).apply(Msg::Import(json));
    assert_eq!(other.nodes(), 5);
    assert_eq!(other.engine.borrow().trace(), s.engine.borrow().trace());
    assert!(other
        .notice
        .as_deref()
        .unwrap_or("")
        .starts_with("Imported"));
}

#[wasm_bindgen_test]
fn a_broken_trace_is_refused_with_a_notice() {
    let s = ui(3, 1).apply(Msg::Import("{not json".into()));
    assert!(s
        .notice
        .as_deref()
        .unwrap_or("")
        .starts_with("Import failed"));
    assert_eq!(s.nodes(), 3);
}

#[wasm_bindgen_test]
fn live_frames_update_nodes_and_silence_means_dead() {
    use keyval_core::{LiveFrame, NodeStatus, Role};
    let addrs = vec!["127.0.0.1:1".to_string()];
    let s = Rc::new(Ui::new(3, 1, Mode::Live, &addrs));
    let s = s.apply(Msg::Live(web_viz::state::LiveMsg::Open(0)));
    let status = NodeStatus {
        id: 1,
        role: Role::Leader,
        term: 3,
        vote: Some(1),
        leader: Some(1),
        commit_index: 4,
        leader_commit: Some(4),
        applied_index: 4,
        last_index: 4,
        last_term: 3,
        snapshot_index: 0,
        members: vec![1, 2, 3],
        keys: 1,
        membership: Box::new(keyval_core::Membership::bootstrap(
            [1, 2, 3],
            Default::default(),
        )),
        membership_index: 0,
    };
    let bytes = postcard::to_allocvec(&LiveFrame::Status(status)).unwrap();
    let s = s.apply(Msg::Live(web_viz::state::LiveMsg::Frame(0, bytes)));
    let now = web_viz::state::now_ms();
    assert_eq!(s.live.borrow().leader(now), Some(1));
    assert!(!s.live.borrow().nodes[0].is_dead(now));
    assert!(s.live.borrow().nodes[0].is_dead(now + 1500.0));
    let s = s.apply(Msg::Live(web_viz::state::LiveMsg::Closed(0)));
    assert!(s.live.borrow().nodes[0].is_dead(now));
}

/// Steps until `pred` holds (at most `max` visible steps).
fn step_until(mut s: Rc<Ui>, max: usize, pred: impl Fn(&Ui) -> bool) -> Rc<Ui> {
    for _ in 0..max {
        if pred(&s) {
            return s;
        }
        s = s.apply(Msg::Step);
    }
    panic!("not reached in {max} steps");
}

#[wasm_bindgen_test]
fn time_out_now_makes_a_follower_campaign_and_replays() {
    let s = step_until(ui(3, 2), 3_000, |u| {
        u.engine.borrow().sim.leader().is_some()
    });
    let f = {
        let e = s.engine.borrow();
        let l = e.sim.leader().unwrap();
        (1..=3).find(|&n| n != l).unwrap()
    };
    let s = s.apply(Msg::Act(UserAction::Fault(FaultAction::ElectionTimeout(f))));
    let role = s.engine.borrow().sim.nodes()[&f].role();
    assert!(matches!(
        role,
        Some(keyval_core::Role::PreCandidate | keyval_core::Role::Candidate)
    ));
    let s = steps(s, 50);
    let file = TraceFile::of(&s.engine.borrow());
    assert_eq!(
        file.replay().expect("replays").trace(),
        s.engine.borrow().trace()
    );
}

#[wasm_bindgen_test]
fn dropping_a_message_takes_it_off_the_wire() {
    let s = step_until(ui(3, 2), 3_000, |u| !u.engine.borrow().inflight.is_empty());
    let id = *s.engine.borrow().inflight.keys().next().unwrap();
    let s = s.apply(Msg::Act(UserAction::Fault(FaultAction::DropMessage(id))));
    assert!(!s.engine.borrow().inflight.contains_key(&id));
    let s = steps(s, 100);
    let delivered = s.engine.borrow().trace().iter().any(
        |ev| matches!(ev.kind, keyval_core::sim::TraceKind::Delivered { id: x, .. } if x == id),
    );
    assert!(!delivered);
}

#[wasm_bindgen_test]
fn dragging_a_node_out_of_the_ring_cuts_it_off_and_the_keyboard_brings_it_back() {
    use web_viz::layout::{Layout, CX};
    let s = ui(5, 1);
    let (x, _) = Layout::of(&s.engine.borrow()).pos(1);
    let s = s
        .apply(Msg::DragStart(1, x, 80.0))
        .apply(Msg::DragMove(x, 10.0))
        .apply(Msg::DragEnd(x, 0.0));
    assert_eq!(s.engine.borrow().sides(), Some(vec![0, 1, 1, 1, 1]));
    assert!(
        Layout::of(&s.engine.borrow()).pos(1).0 < CX,
        "the cut-off side is drawn left"
    );
    let s = s.apply(Msg::MoveAcross(1));
    assert_eq!(s.engine.borrow().sides(), None);
}

#[wasm_bindgen_test]
fn a_lease_get_is_answered_by_the_leader_without_a_round() {
    let s = ui(3, 3)
        .apply(Msg::SetReads {
            lease: true,
            margin_pct: 10,
        })
        .apply(Msg::Pause);
    let s = step_until(s, 5_000, |u| {
        let e = u.engine.borrow();
        e.sim.leader().is_some_and(|l| {
            e.sim.nodes()[&l]
                .server
                .as_ref()
                .unwrap()
                .raft()
                .lease_valid()
        })
    });
    let s = s
        .apply(Msg::Field(web_viz::state::Field::ClientOp, "get".into()))
        .apply(Msg::Field(
            web_viz::state::Field::Consistency,
            "lease".into(),
        ))
        .apply(Msg::SubmitForm);
    let s = step_until(s, 2_000, |u| !u.engine.borrow().client_busy());
    let e = s.engine.borrow();
    assert!(e.trace().iter().any(|ev| matches!(
        ev.kind,
        keyval_core::sim::TraceKind::Node {
            event: keyval_core::NodeEvent::LeaseRead { .. },
            ..
        }
    )));
}

/// Runs until the simulator's virtual time reaches `t` µs.
fn until(s: Rc<Ui>, t: u64) -> Rc<Ui> {
    s.engine.borrow_mut().run_until_time(t, u64::MAX);
    s.apply(Msg::Pause)
}

#[wasm_bindgen_test]
fn membership_controls_add_a_learner_then_replace_a_voter_through_joint() {
    use web_viz::member_action::MemberAction;
    use web_viz::membership_view::{MembershipView, Standing};
    let mut s = until(ui(3, 1), 1_000_000);
    // Three requests in a row: the second and third are refused while the first is in flight.
    s = s
        .apply(Msg::Member(MemberAction::AddLearner))
        .apply(Msg::Member(MemberAction::AddLearner))
        .apply(Msg::Member(MemberAction::Remove(2)));
    let notice = s.notice.clone().unwrap_or_default();
    assert!(notice.contains("is not applied yet"), "{notice}");
    assert!(!notice.contains('\n'));
    assert_eq!(
        s.engine.borrow().sim.nodes().len(),
        4,
        "one node was started"
    );
    s = until(s, 1_500_000);
    let v = MembershipView::of(&s.engine.borrow());
    assert_eq!(v.row(4).map(|r| r.standing), Some(Standing::Learner));
    let leader = v.leader.expect("a leader");
    let out = (1..=3).find(|&n| n != leader).expect("a follower");
    s = s.apply(Msg::Member(MemberAction::Replace { out, into: 4 }));
    let mut joint = false;
    for _ in 0..400 {
        s = s.apply(Msg::Step);
        joint |= MembershipView::of(&s.engine.borrow()).joint.is_some();
    }
    assert!(joint, "the joint configuration was in force at some step");
    s = until(s, 2_500_000);
    let v = MembershipView::of(&s.engine.borrow());
    assert_eq!(v.joint, None);
    assert_eq!(v.row(4).map(|r| r.standing), Some(Standing::Voter));
    assert_eq!(v.row(out).map(|r| r.standing), Some(Standing::Removed));
}
