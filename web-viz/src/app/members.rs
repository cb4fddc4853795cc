//! The Members tab: the live configuration and the controls that change it. Every button asks
//! the leader, which applies the core's rules; its answer (or refusal) is shown as one line.

use yew::prelude::*;

use super::forms::click;
use crate::engine::Engine;
use crate::member_action::MemberAction;
use crate::membership_view::{CatchUp, MembershipView, Standing};
use crate::state::{Msg, Ui};

fn ids(v: &[u64]) -> String {
    v.iter()
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn members_panel(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let d = state.dispatcher();
    let ask = |m: MemberAction| click(&d, Msg::Member(m));
    let v = MembershipView::of(e);
    let best = v.best_learner();
    let summary = match (&v.joint, v.source) {
        (_, None) => html! { <p>{"No node is running."}</p> },
        (Some(j), Some(src)) => html! {
            <p class="member-summary" data-testid="member-summary">
                <b>{"Joint configuration"}</b>{format!(" (n{src}'s, index {}): a commit or an election needs ", v.index)}
                <span class="half old">{format!("{} of the old voters {{{}}}", j.old.majority, ids(&j.old.voters))}</span>
                {" AND "}
                <span class="half new">{format!("{} of the new voters {{{}}}", j.new.majority, ids(&j.new.voters))}</span>
                {". The leader leaves it by itself once it has applied it (auto-leave)."}
            </p>
        },
        (None, Some(src)) => {
            let voters: Vec<u64> = v.membership.voters.iter().copied().collect();
            html! {
                <p class="member-summary" data-testid="member-summary">
                    {format!("Configuration in force (n{src}'s applied log, index {}): voters {{{}}}, a majority is {}.", v.index, ids(&voters), voters.len() / 2 + 1)}
                    if !v.membership.learners.is_empty() {
                        {format!(" Learners {{{}}} do not count.", ids(&v.membership.learners.iter().copied().collect::<Vec<_>>()))}
                    }
                </p>
            }
        }
    };
    let rows = v.rows.iter().map(|r| {
        let id = r.id;
        let leads = v.leader == Some(id);
        let actions = match r.standing {
            Standing::Learner => html! {
                <>
                    <button data-testid={format!("member-promote-{id}")} onclick={ask(MemberAction::Promote(id))}
                        title="Make it a voter: refused until its log is within the promotion lag of the leader's">{"Promote"}</button>
                    <button data-testid={format!("member-remove-{id}")} onclick={ask(MemberAction::Remove(id))}>{"Remove"}</button>
                </>
            },
            Standing::Voter => html! {
                <>
                    <button data-testid={format!("member-demote-{id}")} onclick={ask(MemberAction::Demote(id))}
                        title="Make it a learner: it keeps the log but stops voting">{"Demote"}</button>
                    <button data-testid={format!("member-remove-{id}")} onclick={ask(MemberAction::Remove(id))}
                        title={if leads { "The leader hands leadership to the most caught-up voter first" } else { "Take it out of the configuration" }}>{"Remove"}</button>
                    if let Some(into) = best {
                        <button data-testid={format!("member-replace-{id}")} onclick={ask(MemberAction::Replace { out: id, into })}
                            title="One joint change: both majorities are needed until it is left">{format!("Replace by n{into}")}</button>
                    }
                </>
            },
            _ => Html::default(),
        };
        html! {
            <tr data-testid={format!("member-row-{id}")} data-standing={r.standing.name()} class={classes!(r.standing.name(), (!r.up).then_some("down"))}>
                <td>{format!("n{id}")}{ if leads { " ★" } else { "" } }</td>
                <td>{r.standing.name()}{ if r.up { "" } else { " (down)" } }</td>
                <td>{ r.catch_up.map(catch_up_cell).unwrap_or_else(|| html! { <span class="muted">{ if leads { "leader" } else { "–" } }</span> }) }</td>
                <td class="member-actions">{actions}</td>
            </tr>
        }
    });
    let answer = e.member_answer.clone().map(|a| match a {
        Ok(line) => html! { <p class="member-answer ok" data-testid="member-answer">{line}</p> },
        Err(line) => html! { <p class="member-answer refused" data-testid="member-answer" data-refused="true">{line}</p> },
    });
    html! {
        <div class="members" data-testid="members-panel">
            {summary}
            if let Some((idx, cc)) = &v.pending {
                <p class="member-pending" data-testid="member-pending">{format!("In flight: [{cc}] at index {idx}, not applied yet. The leader refuses any other change until it is (one change at a time).")}</p>
            }
            <div class="row">
                <button class="primary" data-testid="member-add" onclick={ask(MemberAction::AddLearner)}
                    title="Start a new, empty node and add it as a learner">{"+ Add a node (as learner)"}</button>
            </div>
            <table class="member-table">
                <thead><tr><th>{"node"}</th><th>{"standing"}</th><th>{"log vs leader"}</th><th></th></tr></thead>
                <tbody>{ for rows }</tbody>
            </table>
            { for answer }
            <p class="hint">{"Rules: one change at a time; none until the leader has committed an entry of its term; a configuration takes effect when applied; learners never count; a learner is promoted only once its log is within the promotion lag; a removed leader transfers leadership first; a removed node cannot disrupt (pre-vote, check-quorum)."}</p>
        </div>
    }
}

fn catch_up_cell(c: CatchUp) -> Html {
    let ok = c.promotable();
    html! {
        <span class={classes!("catch-up", ok.then_some("ok"))} title={format!("matches {} of the leader's {} entries; promotable when it lags by at most {}", c.matched, c.last, c.max_lag)}>
            <span class="bar"><span class="fill" style={format!("width:{:.0}%", c.fraction() * 100.0)}></span></span>
            {format!(" {}/{}", c.matched, c.last)}
        </span>
    }
}
