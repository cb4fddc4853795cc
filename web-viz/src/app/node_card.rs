//! The node card: actions on one node, shown next to it when it is clicked.

use keyval_core::sim::FaultAction;
use yew::prelude::*;

use super::forms::click;
use super::geometry::{Layout, NODE_R, VIEW_H, VIEW_W};
use crate::engine::{Engine, UserAction};
use crate::member_action::MemberAction;
use crate::membership_view::{MembershipView, Standing};
use crate::state::{Msg, Ui};

pub fn node_card(state: &UseReducerHandle<Ui>, e: &Engine) -> Option<Html> {
    let d = state.dispatcher();
    let cb = |m: Msg| click(&d, m);
    let id = state.selected?;
    {
        let sn = e.sim.nodes().get(&id)?;
        let layout = Layout::of(e);
        let (x, y) = layout.pos(id);
        let left = (x / VIEW_W * 100.0).clamp(5.0, 70.0);
        let top = ((y + NODE_R + 10.0) / VIEW_H * 100.0).clamp(0.0, 75.0);
        let act = |f: FaultAction| cb(Msg::Act(UserAction::Fault(f)));
        let up = sn.is_up();
        let leads = sn.role() == Some(keyval_core::Role::Leader);
        let drift = sn.drift_per_mille;
        let view = MembershipView::of(e);
        let standing = view.row(id).map(|r| r.standing);
        let best = view.best_learner();
        let ask = |m: MemberAction| cb(Msg::Member(m));
        let across = if layout.split {
            "⇄ Move across the partition line"
        } else {
            "⇥ Cut off (across the partition line)"
        };
        Some(html! {
            <div class="node-menu" data-testid="node-menu" style={format!("left:{left:.1}%;top:{top:.1}%")}>
                <div class="menu-title">{format!("n{id}")}<button class="x" aria-label="Close" onclick={cb(Msg::Select(None))}>{"✕"}</button></div>
                if up {
                    <button data-testid="menu-crash" onclick={act(FaultAction::Crash(id))}>{"✕ Crash"}</button>
                } else {
                    <button data-testid="menu-restart" onclick={act(FaultAction::Restart(id))}>{"↻ Restart"}</button>
                }
                if up && !sn.paused {
                    <button data-testid="menu-pause" onclick={act(FaultAction::Pause(id))}>{"❚❚ Pause node"}</button>
                }
                if sn.paused {
                    <button data-testid="menu-resume" onclick={act(FaultAction::Resume(id))}>{"▶ Resume node"}</button>
                }
                if up && !sn.paused && !leads {
                    <button data-testid="menu-timeout" onclick={act(FaultAction::ElectionTimeout(id))}
                        title="Its election timer runs out now: it campaigns (pre-vote first)">{"⏰ Time out now"}</button>
                }
                if leads {
                    <span class="menu-note" data-testid="menu-timeout-note">{"A leader has no election timer."}</span>
                }
                <button data-testid="menu-across" onclick={cb(Msg::MoveAcross(id))}
                    title="The keyboard's way to drag this node across the partition line">{across}</button>
                if standing == Some(Standing::Learner) {
                    <button data-testid="menu-promote" onclick={ask(MemberAction::Promote(id))}>{"⬆ Promote to voter"}</button>
                }
                if standing == Some(Standing::Voter) {
                    if let Some(into) = best {
                        <button data-testid="menu-replace" onclick={ask(MemberAction::Replace { out: id, into })}
                            title="One joint change: both majorities needed until it is left">{format!("⇆ Replace by n{into} (joint)")}</button>
                    }
                }
                if matches!(standing, Some(Standing::Voter | Standing::Learner)) {
                    <button data-testid="menu-remove" onclick={ask(MemberAction::Remove(id))}>{"⊖ Remove from the cluster"}</button>
                }
                <div class="menu-row" role="group" aria-label={format!("n{id}'s clock")}>
                    <span>{"⏱ clock"}</span>
                    <button data-testid="menu-clock-slow" aria-pressed={(drift < 0).to_string()} onclick={act(FaultAction::SetClockDrift(id, -200))}
                        title="Its clock runs 20% slow: its timers and lease last longer in real time">{"−20%"}</button>
                    <button data-testid="menu-clock-normal" aria-pressed={(drift == 0).to_string()} onclick={act(FaultAction::SetClockDrift(id, 0))}>{"exact"}</button>
                    <button data-testid="menu-clock-fast" aria-pressed={(drift > 0).to_string()} onclick={act(FaultAction::SetClockDrift(id, 200))}
                        title="Its clock runs 20% fast: its timers run out sooner">{"+20%"}</button>
                </div>
            </div>
        })
    }
}
