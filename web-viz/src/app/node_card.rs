//! The node card: actions on one node, shown next to it when it is clicked.

use keyval_core::sim::FaultAction;
use yew::prelude::*;

use super::forms::click;
use super::geometry::{pos, NODE_R, VIEW_H, VIEW_W};
use crate::engine::{Engine, UserAction};
use crate::state::{Msg, Ui};

pub fn node_card(state: &UseReducerHandle<Ui>, e: &Engine) -> Option<Html> {
    let d = state.dispatcher();
    let cb = |m: Msg| click(&d, m);
    let n = e.cfg.nodes;
    let id = state.selected?;
    {
        let sn = e.sim.nodes().get(&id)?;
        let (x, y) = pos(n, id);
        let left = (x / VIEW_W * 100.0).clamp(5.0, 70.0);
        let top = ((y + NODE_R + 10.0) / VIEW_H * 100.0).clamp(0.0, 75.0);
        let act = |f: FaultAction| cb(Msg::Act(UserAction::Fault(f)));
        let up = sn.is_up();
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
            </div>
        })
    }
}
