//! Mutation proof: each deliberate protocol bug in `keyval_core::mutation` must be caught by the
//! simulator's checkers within the seed budget of the default randomized run. A checker that
//! lets one of these through is not doing its job.

use keyval_core::mutation::Mutation;
use keyval_core::sim::{run, FaultProfile, RunConfig};

/// Seeds of the crash-heavy 3-node profile the default suite may spend per mutation.
const SEED_BUDGET: u64 = 3_000;

/// Runs seeds until one fails; returns the seed and the first violated property.
fn first_catch(mutation: Mutation, setup: impl Fn(&mut RunConfig)) -> Option<(u64, String)> {
    (0..SEED_BUDGET).find_map(|seed| {
        let mut cfg = RunConfig::new(3, seed);
        cfg.profile = FaultProfile::CrashHeavy;
        setup(&mut cfg);
        cfg.mutation = Some(mutation);
        let report = run(&cfg);
        report
            .violations
            .first()
            .map(|v| (seed, format!("{}: {}", v.property, v.detail)))
    })
}

fn assert_caught(mutation: Mutation) {
    assert_caught_with(mutation, |_| {});
}

fn assert_caught_with(mutation: Mutation, setup: impl Fn(&mut RunConfig)) {
    match first_catch(mutation, setup) {
        Some((seed, violation)) => {
            println!("{mutation:?} caught at seed {seed}: {violation}");
        }
        None => panic!("{mutation:?} survived {SEED_BUDGET} seeds: the checkers missed it"),
    }
}

fn clocks(cfg: &mut RunConfig) {
    cfg.profile = FaultProfile::Clocks;
}

#[test]
fn serving_a_read_before_committing_in_the_term_is_caught() {
    assert_caught_with(Mutation::ReadBeforeCommitInTerm, clocks);
}

#[test]
fn answering_a_read_without_the_heartbeat_confirmation_is_caught() {
    assert_caught_with(Mutation::ReadWithoutConfirmation, clocks);
}

#[test]
fn a_lease_without_the_drift_margin_is_caught_under_drift() {
    assert_caught_with(Mutation::LeaseWithoutDriftMargin, clocks);
}

/// With room for only three sessions among five retrying clients, sessions are forgotten while
/// their writes are still being retried.
#[test]
fn a_forgotten_session_reapplying_a_retried_write_is_caught() {
    assert_caught_with(Mutation::RecreateExpiredSessions, |cfg| {
        cfg.session_limit_bytes = Some(3 * keyval_core::kv::SESSION_BYTES);
    });
}

#[test]
fn committing_previous_term_entries_by_counting_is_caught() {
    assert_caught(Mutation::CommitPreviousTermByCounting);
}

#[test]
fn voting_without_the_log_check_is_caught() {
    assert_caught(Mutation::VoteWithoutLogCheck);
}

#[test]
fn answering_a_vote_before_persisting_it_is_caught() {
    assert_caught(Mutation::VoteReplyBeforePersist);
}

#[test]
fn installing_a_stale_snapshot_over_a_newer_log_is_caught() {
    assert_caught(Mutation::InstallStaleSnapshot);
}

/// The same seeds without a mutation pass: what the checkers flag above is the bug, not noise.
#[test]
fn the_same_seeds_pass_without_mutations() {
    for seed in 0..200 {
        let mut cfg = RunConfig::new(3, seed);
        cfg.profile = FaultProfile::CrashHeavy;
        let report = run(&cfg);
        assert!(report.is_ok(), "{}", report.failure_text());
        cfg.session_limit_bytes = Some(3 * keyval_core::kv::SESSION_BYTES);
        let report = run(&cfg);
        assert!(
            report.is_ok(),
            "tiny session table: {}",
            report.failure_text()
        );
        clocks(&mut cfg);
        let report = run(&cfg);
        assert!(report.is_ok(), "{}", report.failure_text());
    }
}

#[test]
fn a_leader_counting_itself_before_its_write_is_durable_is_caught() {
    assert_caught(Mutation::LeaderCountsSelfBeforeDurable);
}

#[test]
fn a_follower_acknowledging_before_durable_is_caught() {
    assert_caught(Mutation::FollowerAcksBeforeDurable);
}

fn membership(cfg: &mut RunConfig) {
    cfg.profile = FaultProfile::Membership;
}

/// Caught by liveness (a cluster wedged on configurations nobody committed) within the budget.
#[test]
fn a_configuration_applied_on_append_is_caught() {
    assert_caught_with(Mutation::ConfigOnAppend, membership);
}

#[test]
fn counting_a_learner_vote_is_caught() {
    assert_caught_with(Mutation::LearnerVoteCounts, membership);
}

#[test]
fn two_configuration_changes_in_flight_are_caught() {
    assert_caught_with(Mutation::TwoConfChangesInFlight, membership);
}

#[test]
fn campaigning_with_unapplied_configuration_changes_is_caught() {
    assert_caught_with(Mutation::CampaignWithUnappliedConfig, membership);
}
