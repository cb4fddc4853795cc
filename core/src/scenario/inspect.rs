//! What the inspection commands print (`status`, `log`, `kv`, `held`) and what `expect`
//! compares: every value as the short text a script writes.

use crate::sim::linearizability::OpResult;
use crate::sim::{SimConfig, Simulator};
use crate::trace::{bytes_text, fmt_time, op_text};
use crate::types::{Entry, EntryPayload, NodeId};

use super::parse::Observable;

pub fn cluster_summary(c: &SimConfig) -> String {
    let r = &c.raft;
    let on = |b: bool| if b { "on" } else { "off" };
    let snap = if r.snapshot_threshold > 0 {
        format!(
            ", snapshot every {} entries in {}-byte chunks",
            r.snapshot_threshold, r.snapshot_chunk_bytes
        )
    } else {
        String::new()
    };
    format!(
        "{} nodes, seed {}, pre-vote {}, check-quorum {}, tick {}, heartbeat every {} ticks, \
         election timeout {}..{} ticks, latency {}..{}{snap}\n",
        c.nodes,
        c.seed,
        on(r.pre_vote),
        on(r.check_quorum),
        duration_text(c.tick_us),
        r.heartbeat_ticks,
        r.election_ticks,
        2 * r.election_ticks - 1,
        duration_text(c.network.latency_us.0),
        duration_text(c.network.latency_us.1),
    )
}

/// A duration in the unit a script would write it in.
fn duration_text(us: u64) -> String {
    if us.is_multiple_of(1_000_000) && us > 0 {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1_000) {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

fn id_or_none(n: Option<NodeId>) -> String {
    n.map_or("none".into(), |n| format!("n{n}"))
}

pub fn status(sim: &Simulator) -> String {
    let mut out = String::new();
    for n in sim.nodes().values() {
        let line = match &n.server {
            Some(s) => {
                let r = s.raft();
                format!(
                    "n{}{} {} term={} vote={} leader={} last={}@{} commit={} applied={} snapshot={}",
                    n.id,
                    if n.paused { " (paused)" } else { "" },
                    r.role(),
                    r.term(),
                    id_or_none(r.vote()),
                    id_or_none(r.leader()),
                    r.log().last_index(),
                    r.log().last_term(),
                    r.commit_index(),
                    r.applied_index(),
                    r.snapshot_index(),
                )
            }
            None => format!(
                "n{} down (disk: term={} snapshot={} entries={})",
                n.id,
                n.storage.hard_state.term,
                n.storage.snapshot_index(),
                n.storage.entries.len()
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let cut: Vec<String> = sim
        .network()
        .cut_links()
        .map(|(a, b)| format!("n{a}->n{b}"))
        .collect();
    if !cut.is_empty() {
        out.push_str(&format!("cut links: {}\n", cut.join(" ")));
    }
    let holds: Vec<String> = sim.hold_links().iter().map(|l| l.to_string()).collect();
    if !holds.is_empty() {
        out.push_str(&format!(
            "holding: {} ({} waiting)\n",
            holds.join(" "),
            sim.held().count()
        ));
    }
    out
}

fn entry_text(e: &Entry) -> String {
    match &e.payload {
        EntryPayload::Noop => format!("{}@{} no-op", e.index, e.term),
        EntryPayload::ConfChange(cc) => format!("{}@{} conf-change {cc}", e.index, e.term),
        EntryPayload::Command(r) => format!(
            "{}@{} {} (c{} seq={})",
            e.index,
            e.term,
            op_text(&r.op),
            r.client_id,
            r.seq
        ),
    }
}

/// A node's log: live nodes from memory, crashed nodes from their disk.
pub fn log(sim: &Simulator, n: NodeId) -> String {
    let Some((_, snap, entries)) = sim.log_views().into_iter().find(|(id, _, _)| *id == n) else {
        return String::new();
    };
    let mut out = String::new();
    match sim.nodes()[&n].server.as_ref() {
        Some(s) => out.push_str(&format!(
            "n{n} commit={} applied={}\n",
            s.raft().commit_index(),
            s.raft().applied_index()
        )),
        None => out.push_str(&format!("n{n} is down; its disk holds:\n")),
    }
    if snap > 0 {
        out.push_str(&format!("snapshot through {snap}\n"));
    }
    if entries.is_empty() {
        out.push_str("(no entries)\n");
    }
    for e in &entries {
        out.push_str(&entry_text(e));
        out.push('\n');
    }
    out
}

pub fn kv(sim: &Simulator, n: NodeId) -> Result<String, String> {
    let s = sim.nodes()[&n]
        .server
        .as_ref()
        .ok_or_else(|| format!("n{n} is down"))?;
    let mut out = String::new();
    for (k, v) in s.kv().iter() {
        out.push_str(&format!("{}={}\n", bytes_text(k), bytes_text(v)));
    }
    if out.is_empty() {
        out.push_str("(empty)\n");
    }
    Ok(out)
}

pub fn held(sim: &Simulator) -> String {
    let mut out = String::new();
    for m in sim.held() {
        out.push_str(&format!(
            "#{} {}->{} {} {} (since t={})\n",
            m.id,
            m.from,
            m.to,
            m.payload.kind(),
            m.payload.summary(),
            fmt_time(m.since)
        ));
    }
    if out.is_empty() {
        out.push_str("(nothing held)\n");
    }
    out
}

fn result_text(r: &OpResult) -> String {
    match r {
        OpResult::Put => "ok".into(),
        OpResult::Get(Some(v)) => format!("found {}", bytes_text(v)),
        OpResult::Get(None) => "not-found".into(),
        OpResult::Delete { deleted } => format!("deleted={deleted}"),
    }
}

/// The value `what` names, as the text an `expect` line compares with.
pub fn observe(sim: &Simulator, what: &Observable) -> String {
    let node = |n: &NodeId| sim.nodes().get(n);
    let raft = |n: &NodeId| node(n).and_then(|x| x.server.as_ref()).map(|s| s.raft());
    let down = || "down".to_string();
    match what {
        Observable::Leader => id_or_none(sim.leader()),
        Observable::Held => sim.held().count().to_string(),
        Observable::Client(c) => {
            // Serializable reads are recorded apart from the linearizable history; the
            // client's last operation is the latest invoked in either.
            sim.history()
                .iter()
                .chain(sim.serializable_reads())
                .filter(|o| o.client == *c)
                .max_by_key(|o| o.invoke)
                .map_or("none".into(), |o| {
                    o.complete
                        .as_ref()
                        .map_or("pending".into(), |(_, r)| result_text(r))
                })
        }
        Observable::State(n) => match node(n) {
            Some(x) if x.paused => "paused".into(),
            Some(x) if x.is_up() => "up".into(),
            _ => down(),
        },
        Observable::Role(n) => raft(n).map_or_else(down, |r| r.role().to_string()),
        Observable::Membership(n) => raft(n).map_or_else(down, |r| r.membership().to_string()),
        Observable::Term(n) => raft(n).map_or_else(down, |r| r.term().to_string()),
        Observable::LeaderOf(n) => raft(n).map_or_else(down, |r| id_or_none(r.leader())),
        Observable::Vote(n) => raft(n).map_or_else(down, |r| id_or_none(r.vote())),
        Observable::Commit(n) => raft(n).map_or_else(down, |r| r.commit_index().to_string()),
        Observable::Applied(n) => raft(n).map_or_else(down, |r| r.applied_index().to_string()),
        Observable::Last(n) => raft(n).map_or_else(down, |r| {
            format!("{}@{}", r.log().last_index(), r.log().last_term())
        }),
        Observable::Snapshot(n) => raft(n).map_or_else(down, |r| match r.snapshot() {
            Some(s) => format!("{}@{}", s.meta.last_index, s.meta.last_term),
            None => "none".into(),
        }),
        Observable::Entry(n, i) => {
            raft(n).map_or_else(down, |r| r.log().get(*i).map_or("none".into(), entry_text))
        }
        Observable::Kv(n, key) => node(n)
            .and_then(|x| x.server.as_ref())
            .map_or_else(down, |s| {
                s.kv()
                    .get(key.as_bytes())
                    .map_or("absent".into(), |v| bytes_text(v))
            }),
    }
}
