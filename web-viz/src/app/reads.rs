//! Reads in the drawing: the leader's lease as a bar that drains between acknowledgements (its
//! drift margin shaded at the end), and the read queue: reads waiting for the term's first
//! commit, for the next confirmation round, and the rounds in flight with their
//! acknowledgements.

use keyval_core::RaftNode;
use yew::prelude::*;

use super::geometry::NODE_R;
use crate::engine::Engine;

const BAR_W: f64 = 2.0 * NODE_R;
const BAR_H: f64 = 10.0;

/// Under a leader with lease reads on: the whole bar is one election timeout; the lease can
/// cover at most the unshaded part (the shaded end is the drift margin), and the filled part is
/// what is left of it now.
pub fn lease_bar(r: &RaftNode) -> Html {
    if !r.is_leader() || !r.config().lease_reads {
        return Html::default();
    }
    let v = r.read_view();
    let full = v.election_ticks.max(1) as f64;
    let left = v.lease_remaining as f64 / full * BAR_W;
    let margin = (v.election_ticks - v.lease_ticks.min(v.election_ticks)) as f64 / full * BAR_W;
    let x0 = -BAR_W / 2.0;
    let y = NODE_R + 30.0;
    let tip = format!(
        "Lease: {} of {} ticks left by n{}'s own clock; the last {} ticks of the election timeout are the drift margin",
        v.lease_remaining,
        v.lease_ticks,
        r.id(),
        v.election_ticks - v.lease_ticks.min(v.election_ticks)
    );
    html! {
        <g class="lease" data-testid={format!("lease-{}", r.id())} data-remaining={v.lease_remaining.to_string()}
           data-ticks={v.lease_ticks.to_string()} data-margin={(v.election_ticks - v.lease_ticks.min(v.election_ticks)).to_string()}>
            <title>{tip}</title>
            <rect class="lease-track" x={x0.to_string()} y={y.to_string()} width={BAR_W.to_string()} height={BAR_H.to_string()} rx="2" />
            if margin > 0.0 {
                <rect class="lease-margin" x={(x0 + BAR_W - margin).to_string()} y={y.to_string()} width={margin.to_string()} height={BAR_H.to_string()} />
            }
            <rect class="lease-left" x={x0.to_string()} y={y.to_string()} width={format!("{left:.1}")} height={BAR_H.to_string()} rx="2" />
        </g>
    }
}

/// One line per node that holds reads, in words (what a screen reader reads too).
pub fn read_queue(e: &Engine) -> Html {
    let mut lines: Vec<(u64, String)> = Vec::new();
    for sn in e.sim.nodes().values() {
        let Some(s) = &sn.server else { continue };
        let r = s.raft();
        let v = r.read_view();
        let mut parts: Vec<String> = Vec::new();
        if v.before_commit > 0 {
            parts.push(format!(
                "{} waiting for the term's first commit",
                reads(v.before_commit)
            ));
        }
        for round in v.rounds.iter().filter(|x| x.reads > 0) {
            let acks: Vec<String> = round.acks.iter().map(|a| format!("n{a}")).collect();
            parts.push(format!(
                "round R{} at read index {}: {} confirming, acks {} ({} of {} needed)",
                round.seq,
                round.commit,
                reads(round.reads),
                acks.join(" "),
                round.acks.len(),
                r.voters().len() / 2 + 1
            ));
        }
        if v.queued > 0 {
            parts.push(format!("{} queued for the next round", reads(v.queued)));
        }
        if v.asked > 0 {
            parts.push(format!(
                "{} asked of the leader (follower read)",
                reads(v.asked)
            ));
        }
        if r.is_leader() && r.config().lease_reads {
            parts.push(format!(
                "lease {}/{} ticks",
                v.lease_remaining, v.lease_ticks
            ));
        }
        if !parts.is_empty() {
            lines.push((sn.id, parts.join(" · ")));
        }
    }
    if lines.is_empty() {
        return Html::default();
    }
    html! {
        <div class="read-queue" data-testid="read-queue">
            { for lines.into_iter().map(|(id, l)| html! {
                <div data-testid={format!("read-queue-{id}")}><b>{format!("n{id} reads: ")}</b>{l}</div>
            }) }
        </div>
    }
}

fn reads(n: usize) -> String {
    if n == 1 {
        "1 read".into()
    } else {
        format!("{n} reads")
    }
}
