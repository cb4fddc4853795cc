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
