//! Jepsen-style testing of real `keyval` processes: a seeded nemesis (kills, pauses, partitions
//! through per-link proxies, slow links), concurrent recording clients, and checks of the
//! history (linearizability with the core's checker, plus a final-state set check).

pub mod check;
pub mod client;
pub mod cluster;
pub mod nemesis;
pub mod proxy;
pub mod rng;
pub mod run;
pub mod soak;
pub mod workload;
