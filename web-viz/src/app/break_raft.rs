//! The "break Raft" menu: re-run the situation with one of the core's deliberate protocol bugs
//! switched on, and watch the checkers catch it.

use keyval_core::mutation::Mutation;
use yew::prelude::*;

use super::forms::click;
use super::history::verdicts;
use crate::engine::Engine;
use crate::state::{Msg, Ui, MUTATIONS_BUILT};

fn describe(m: Mutation) -> (&'static str, &'static str) {
    match m {
        Mutation::CommitPreviousTermByCounting => (
            "Commit old-term entries by counting replicas",
            "The Figure 8 bug (§5.4.2). Try it on the Figure 8 scenario: the third leader commits X once a majority holds it, B overwrites it, and the state machine safety checker reports two different entries applied at one index.",
        ),
        Mutation::VoteWithoutLogCheck => (
            "Vote without the log check",
            "Grant votes whatever the candidate's log (§5.4.1): a node missing committed entries can win and erase them.",
        ),
        Mutation::VoteReplyBeforePersist => (
            "Answer a vote before it is on disk",
            "A crash right after voting forgets the vote, and the node can vote twice in one term: two leaders.",
        ),
        Mutation::InstallStaleSnapshot => (
            "Install a stale snapshot",
            "Accept a snapshot older than what the follower has committed: its state goes backwards.",
        ),
        Mutation::ReadBeforeCommitInTerm => (
            "Read before the term's first commit",
            "A new leader answers ReadIndex reads before its no-op commits (§6.4): its commit index may lag writes the old leader acknowledged, so a read can miss them.",
        ),
        Mutation::ReadWithoutConfirmation => (
            "Read without confirming leadership",
            "Answer reads at the commit index without the heartbeat round: a leader cut off from the others keeps answering from a state the new leader has moved past.",
        ),
        Mutation::LeaseWithoutDriftMargin => (
            "Lease with no clock-drift margin",
            "Trust the lease for a whole election timeout: if a follower's clock runs fast, it elects a new leader while the old one still answers lease reads.",
        ),
        Mutation::RecreateExpiredSessions => (
            "Recreate forgotten sessions",
            "Treat a write of a forgotten session as new: a retry of a write that was applied before its session was forgotten applies twice.",
        ),
        Mutation::LeaderCountsSelfBeforeDurable => (
            "Leader counts itself before its fsync",
            "With appends sent ahead of the leader's own fsync, counting itself early lets an entry commit on fewer disks than a majority.",
        ),
        Mutation::FollowerAcksBeforeDurable => (
            "Follower acknowledges before its fsync",
            "A follower that acknowledges entries before they are on disk can lose committed entries in a crash.",
        ),
        Mutation::TwoConfChangesInFlight => (
            "Two configuration changes in flight",
            "Accept a change while an earlier one is not applied: two steps at once can skip the overlap of majorities that keeps one leader per term.",
        ),
        Mutation::ConfigOnAppend => (
            "Configuration in force on append",
            "Switch configuration when the entry is appended and keep it if the entry is truncated: a node counts votes with a configuration the cluster never committed.",
        ),
        Mutation::CampaignWithUnappliedConfig => (
            "Campaign with an unapplied configuration",
            "Start an election while committed configuration entries wait to be applied: the candidate counts votes with an outdated majority.",
        ),
        Mutation::LearnerVoteCounts => (
            "Count a learner's vote",
            "Learners vote when asked, but counting them lets a candidate win without a majority of the voters.",
        ),
    }
}

pub fn break_panel(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let d = state.dispatcher();
    let items = Mutation::ALL.iter().map(|m| {
        let (title, what) = describe(*m);
        let on = state.mutation == Some(*m);
        html! {
            <li>
                <button data-testid={format!("mutation-{m:?}")} aria-pressed={on.to_string()} class={classes!(on.then_some("on"))}
                    disabled={!MUTATIONS_BUILT} onclick={click(&d, Msg::Break(Some(*m)))}>{title}</button>
                <span class="hint">{" "}{what}</span>
            </li>
        }
    });
    html! {
        <div class="break-raft">
            <p class="hint">{"Each button re-runs the current scenario (Figure 8 if none) on the real core with one deliberate bug switched on. The same bugs prove, in the core's own tests, that its checkers have teeth."}</p>
            if !MUTATIONS_BUILT {
                <p class="warn">{"This build was made without the core's mutations feature."}</p>
            }
            <ul class="mutations">{ for items }</ul>
            <button data-testid="mutation-none" onclick={click(&d, Msg::Break(None))} disabled={state.mutation.is_none()}>{"Repair Raft (no bug)"}</button>
            { verdicts(e) }
        </div>
    }
}
