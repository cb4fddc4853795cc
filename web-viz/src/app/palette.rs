//! Colours and labels shared by the drawings (Okabe–Ito palette, colour-blind safe).

use keyval_core::sim::trace::Payload;
use keyval_core::{Message, Role};

pub const OI_ORANGE: &str = "#E69F00";
pub const OI_SKY: &str = "#56B4E9";
pub const OI_GREEN: &str = "#009E73";
pub const OI_YELLOW: &str = "#F0E442";
pub const OI_BLUE: &str = "#0072B2";
pub const OI_VERMILLION: &str = "#D55E00";
pub const OI_PURPLE: &str = "#CC79A7";
const TERM_COLORS: [&str; 7] = [
    OI_SKY,
    OI_ORANGE,
    OI_GREEN,
    OI_YELLOW,
    OI_PURPLE,
    OI_BLUE,
    OI_VERMILLION,
];

pub fn term_color(term: u64) -> &'static str {
    TERM_COLORS[(term as usize) % TERM_COLORS.len()]
}

pub fn role_color(r: Option<Role>) -> &'static str {
    match r {
        Some(Role::Leader) => OI_GREEN,
        Some(Role::Candidate) => OI_ORANGE,
        Some(Role::PreCandidate) => OI_YELLOW,
        Some(Role::Follower) => OI_SKY,
        None => "#b8b8b8",
    }
}

/// The role a node believes it has. A paused node keeps its role (a paused leader still
/// believes it leads); the pause is drawn separately.
pub fn role_label(r: Option<Role>) -> &'static str {
    match r {
        Some(Role::Leader) => "★ LEADER",
        Some(Role::Candidate) => "CANDIDATE",
        Some(Role::PreCandidate) => "PRE-CAND.",
        Some(Role::Follower) => "follower",
        None => "✕ CRASHED",
    }
}

/// Colour, short label and whether the message is a response (drawn hollow).
pub fn msg_style(p: &Payload) -> (&'static str, &'static str, bool) {
    match p {
        Payload::Raft(m) => match m {
            Message::PreVote { .. } => (OI_YELLOW, "PV", false),
            Message::PreVoteResponse { .. } => (OI_YELLOW, "PV", true),
            Message::RequestVote { .. } => (OI_ORANGE, "V", false),
            Message::RequestVoteResponse { .. } => (OI_ORANGE, "V", true),
            Message::AppendEntries { .. } => (OI_BLUE, "A", false),
            Message::AppendEntriesResponse { .. } => (OI_BLUE, "A", true),
            Message::Heartbeat { .. } => (OI_SKY, "H", false),
            Message::HeartbeatResponse { .. } => (OI_SKY, "H", true),
            Message::InstallSnapshot { .. } => (OI_VERMILLION, "S", false),
            Message::InstallSnapshotResponse { .. } => (OI_VERMILLION, "S", true),
            Message::ReadIndex { .. } => (OI_SKY, "R", false),
            Message::ReadIndexResponse { .. } => (OI_SKY, "R", true),
            Message::TimeoutNow { .. } => (OI_ORANGE, "T", false),
        },
        Payload::Request { .. } | Payload::Write { .. } => (OI_PURPLE, "C", false),
        Payload::Read { .. } => (OI_PURPLE, "R", false),
        Payload::Reply { .. } => (OI_PURPLE, "C", true),
    }
}

/// A light tint of a colour (mixed with white), so dark text on it stays readable.
pub fn tint(hex: &str, amount: f64) -> String {
    let c =
        |i: usize| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("80"), 16).unwrap_or(128) as f64;
    let mix = |v: f64| (255.0 - (255.0 - v) * amount).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(c(1)), mix(c(3)), mix(c(5)))
}
