//! `kvctl`: the KeyVal command-line client (see SPEC.md for the contract).
//!
//! Exit status: 0 the command took effect (a `get` of an absent key included); 2 usage error;
//! 3 definite failure (certainly not applied: refused, unreachable, or a key/value over the
//! limits, checked here before sending); 4 indeterminate (timed out or lost the connection after
//! sending: it may or may not have been applied).

mod bench;
mod client;
mod floor;
mod leader;
mod mux;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use keyval_core::{KvOp, KvResult, Membership, ReadConsistency};
use serde_json::json;

use client::{Client, Failure};
use native_node::wire::{MemberOp, MembershipView};

const EXIT_DEFINITE: u8 = 3;
const EXIT_INDETERMINATE: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "kvctl",
    version,
    about = "Command-line client for a KeyVal cluster",
    after_help = "Exit status: 0 done (a get of an absent key included); 2 usage error; \
        3 definite failure (not applied: refused, unreachable before sending, or a key over \
        1 KiB / value over 1 MiB, checked before sending); 4 indeterminate (timed out or lost \
        the connection after sending: it may or may not have been applied)."
)]
struct Cli {
    /// Cluster endpoints, HOST:PORT,...
    #[arg(
        long,
        env = "KVCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    output: Output,
    /// How long a command may take, retries and leader discovery included.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// CA certificate (PEM) that signed the nodes' certificates: connect with TLS.
    #[arg(long, global = true)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM) for nodes that require one (`keyval --client-cert-auth`).
    #[arg(long, global = true, requires = "client_key")]
    cert: Option<PathBuf>,
    /// Key of --cert (PEM).
    #[arg(long = "key", id = "client_key", global = true, requires = "cert")]
    client_key: Option<PathBuf>,
    /// Values are hex: `put`'s VALUE is parsed as hex and `get` prints hex.
    #[arg(long, global = true)]
    hex: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    Linearizable,
    Lease,
    Serializable,
}

impl From<Consistency> for ReadConsistency {
    fn from(c: Consistency) -> Self {
        match c {
            Consistency::Linearizable => ReadConsistency::Linearizable,
            Consistency::Lease => ReadConsistency::Lease,
            Consistency::Serializable => ReadConsistency::Serializable,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write KEY = VALUE. The value can also come from a file (--value-file PATH) or from
    /// standard input (VALUE `-`), up to the 1 MiB limit.
    Put {
        key: String,
        /// The value; `-` reads it from standard input.
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long)]
        value_file: Option<std::path::PathBuf>,
    },
    /// Read KEY. `linearizable` (default): the latest value, confirmed by the leader with a
    /// heartbeat round (ReadIndex), no log entry; `lease`: the leader answers under its lease
    /// without a round trip (needs --lease-reads on the nodes; assumes bounded clock drift);
    /// `serializable`: whichever node answers, from its own state, possibly stale.
    Get {
        key: String,
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
    },
    /// Remove KEY.
    Delete { key: String },
    /// One row per endpoint: role, term, leader, indexes, members.
    Status,
    /// Closed-loop load generator.
    Bench(bench::BenchArgs),
    /// How fast this machine and disk could answer a 1-client put at best: the put's path
    /// (leader, two followers, a record fdatasynced on each) with bare blocking I/O and no
    /// Raft, in a scratch directory under --dir. Needs no cluster.
    Floor(floor::FloorArgs),
    /// Leadership: `leader transfer [--to ID]`.
    #[command(subcommand)]
    Leader(leader::LeaderCommand),
    /// List, add, promote or remove cluster members (at the leader).
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// Voters and learners with their addresses, and whether a joint configuration is in force.
    List,
    /// Add node ID reachable at ADDR (HOST:PORT). It joins as a learner; the leader promotes
    /// it to voter once it has caught up, unless --learner. Then start it with
    /// `keyval --id ID --listen ADDR --data-dir DIR --join ENDPOINTS`.
    Add {
        id: u64,
        addr: String,
        /// Keep it a learner (promote it later with `member promote`).
        #[arg(long)]
        learner: bool,
    },
    /// Promote a caught-up learner to voter.
    Promote { id: u64 },
    /// Remove node ID (a leader hands leadership over first). Its id is never reused.
    Remove { id: u64 },
}

/// The same allocator as `keyval` (see `mimalloc` in Cargo.toml): `kvctl bench` shares the
/// machine with the nodes it measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoints: Vec<String> = cli
        .endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let out = cli.output;
    if endpoints.is_empty() {
        return usage(out, "no endpoints given");
    }
    if cli.timeout_ms == 0 {
        return usage(out, "--timeout-ms must be at least 1");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(out, &format!("cannot start the async runtime: {e}"), true),
    };
    if cli.cert.is_some() && cli.cacert.is_none() {
        return usage(out, "--cert needs --cacert (TLS)");
    }
    if let Some(ca) = &cli.cacert {
        let pair = cli.cert.as_deref().zip(cli.client_key.as_deref());
        match native_node::tls::client_config(ca, pair) {
            Ok(c) => {
                let _ = client::TLS.set(Some(c));
            }
            Err(e) => return fail(out, &e.to_string(), true),
        }
    }
    let timeout = Duration::from_millis(cli.timeout_ms);
    let hex = cli.hex;
    runtime.block_on(async move {
        match cli.command {
            Command::Put {
                key,
                value,
                value_file,
            } => {
                let value = match (hex, value) {
                    (true, Some(v)) if v != "-" => match decode_hex(&v) {
                        Some(v) => v,
                        None => {
                            return usage(out, "--hex: VALUE is not an even number of hex digits");
                        }
                    },
                    (_, value) => match read_value(value, value_file) {
                        Ok(v) => v,
                        Err(e) => return usage(out, &e),
                    },
                };
                let op = KvOp::Put {
                    key: key.into_bytes(),
                    value,
                };
                run_op(
                    out,
                    endpoints,
                    timeout,
                    op,
                    ReadConsistency::Linearizable,
                    hex,
                )
                .await
            }
            Command::Get { key, consistency } => {
                let op = KvOp::Get {
                    key: key.into_bytes(),
                };
                run_op(out, endpoints, timeout, op, consistency.into(), hex).await
            }
            Command::Delete { key } => {
                let op = KvOp::Delete {
                    key: key.into_bytes(),
                };
                run_op(
                    out,
                    endpoints,
                    timeout,
                    op,
                    ReadConsistency::Linearizable,
                    hex,
                )
                .await
            }
            Command::Status => status(out, endpoints, timeout).await,
            Command::Member(cmd) => match member_op(cmd) {
                Ok(op) => member(out, endpoints, timeout, op).await,
                Err(m) => usage(out, &m),
            },
            Command::Leader(leader::LeaderCommand::Transfer { to }) => {
                match leader::transfer(endpoints, to, timeout).await {
                    Ok(id) => {
                        match out {
                            Output::Json => {
                                print_line(&json!({"ok": true, "leader": id}).to_string())
                            }
                            Output::Text => print_line(&format!("leader is now node {id}")),
                        }
                        ExitCode::SUCCESS
                    }
                    Err(f) => fail(out, &f.message, f.definite),
                }
            }
            Command::Bench(args) => {
                match bench::run(args, endpoints, timeout, out == Output::Json).await {
                    Ok(summary) => {
                        print_line(&summary);
                        ExitCode::SUCCESS
                    }
                    Err(bench::BenchError::Usage(m)) => usage(out, &m),
                    Err(bench::BenchError::Failed(f)) => fail(out, &f.message, f.definite),
                }
            }
            Command::Floor(args) => {
                let json_out = out == Output::Json;
                match tokio::task::spawn_blocking(move || floor::run(args, json_out)).await {
                    Ok(Ok(report)) => {
                        print_line(&report);
                        ExitCode::SUCCESS
                    }
                    Ok(Err(e)) => floor_failed(out, &format!("{e:#}")),
                    Err(e) => floor_failed(out, &format!("the measurement stopped: {e}")),
                }
            }
        }
    })
}

/// The value of `put`: the argument, standard input for `-`, or the file. Reading stops one
/// byte past the limit, so an oversized value is refused without reading it all.
fn read_value(value: Option<String>, file: Option<std::path::PathBuf>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = keyval_core::kv::MAX_VALUE_BYTES as u64 + 1;
    let mut buf = Vec::new();
    match (value.as_deref(), file) {
        (_, Some(path)) => std::fs::File::open(&path)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .map_err(|e| format!("cannot read --value-file {}: {e}", path.display()))?,
        (Some("-"), None) => std::io::stdin()
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the value from standard input: {e}"))?,
        (Some(v), None) => return Ok(v.as_bytes().to_vec()),
        (None, None) => return Err("put needs VALUE, - or --value-file PATH".into()),
    };
    Ok(buf)
}

/// Oversized keys and values are refused before sending, with the core's own limits and
/// message: a definite failure (exit 3), the same answer the server would give.
async fn run_op(
    out: Output,
    endpoints: Vec<String>,
    timeout: Duration,
    op: KvOp,
    consistency: ReadConsistency,
    hex: bool,
) -> ExitCode {
    if let Err(e) = op.validate() {
        return fail(out, &e.to_string(), true);
    }
    let mut client = Client::new(endpoints, timeout);
    let result = match op {
        KvOp::Get { key } => client.read(key, consistency).await,
        op => client.execute(op).await,
    };
    client.close().await;
    match result {
        Ok(result) => {
            match (out, result) {
                (Output::Json, KvResult::Put) => print_line(&json!({"ok": true}).to_string()),
                (Output::Json, KvResult::Get(Some(v))) => {
                    print_line(&value_json(&v, hex).to_string())
                }
                (Output::Json, KvResult::Get(None)) => {
                    print_line(&json!({"ok": true, "found": false}).to_string())
                }
                (Output::Json, KvResult::Delete { deleted }) => {
                    print_line(&json!({"ok": true, "deleted": deleted}).to_string())
                }
                (Output::Text, KvResult::Put) => print_line("OK"),
                (Output::Text, KvResult::Get(Some(v))) if hex => print_line(&encode_hex(&v)),
                (Output::Text, KvResult::Get(Some(v))) => print_bytes_line(&v),
                (Output::Text, KvResult::Get(None)) => eprintln!("(not found)"),
                (Output::Text, KvResult::Delete { deleted: true }) => print_line("deleted"),
                (Output::Text, KvResult::Delete { deleted: false }) => print_line("not found"),
                (_, KvResult::Session { .. }) => {
                    return fail(out, "the server answered with a session id", true);
                }
            }
            ExitCode::SUCCESS
        }
        Err(Failure { message, definite }) => fail(out, &message, definite),
    }
}

async fn status(out: Output, endpoints: Vec<String>, timeout: Duration) -> ExitCode {
    let tasks: Vec<_> = endpoints
        .into_iter()
        .map(|e| tokio::spawn(client::status_of(e, timeout)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            all.push(s);
        }
    }
    let members = client::known_members(&all);
    let id_of = |addr: &str| {
        members
            .iter()
            .find(|(_, a)| a.as_str() == addr)
            .map(|(id, _)| *id)
    };
    let any_reachable = all.iter().any(|e| e.result.is_ok());
    match out {
        Output::Json => {
            let nodes: Vec<_> = all
                .iter()
                .map(|e| match &e.result {
                    Ok(r) => {
                        let s = &r.status;
                        json!({
                            "id": s.id,
                            "address": e.address,
                            "reachable": true,
                            "role": s.role.name(),
                            "term": s.term,
                            "leader": s.leader,
                            "commit_index": s.commit_index,
                            "applied_index": s.applied_index,
                            "last_index": s.last_index,
                            "snapshot_index": s.snapshot_index,
                            "members": s.members,
                            "voters": s.membership.voters,
                            "learners": learners_of(&s.membership),
                            "joint": s.membership.is_joint(),
                            "outgoing": s.membership.outgoing,
                        })
                    }
                    Err(err) => json!({
                        "id": id_of(&e.address),
                        "address": e.address,
                        "reachable": false,
                        "error": err,
                    }),
                })
                .collect();
            let mut v = json!({"ok": any_reachable, "nodes": nodes});
            if !any_reachable {
                v["error"] = json!("no endpoint is reachable");
                v["definite"] = json!(true);
            }
            print_line(&v.to_string());
        }
        Output::Text => {
            let mut text = format!(
                "{:<4} {:<22} {:<12} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}  {}\n",
                "ID",
                "ADDRESS",
                "ROLE",
                "TERM",
                "LEADER",
                "COMMIT",
                "APPLIED",
                "LAST",
                "SNAP",
                "MEMBERS"
            );
            for e in &all {
                match &e.result {
                    Ok(r) => {
                        let s = &r.status;
                        let leader = s.leader.map_or("-".to_string(), |l| l.to_string());
                        let m = members_cell(&s.membership);
                        text.push_str(&format!(
                            "{:<4} {:<22} {:<12} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}  {}\n",
                            s.id,
                            e.address,
                            s.role.name(),
                            s.term,
                            leader,
                            s.commit_index,
                            s.applied_index,
                            s.last_index,
                            s.snapshot_index,
                            m
                        ));
                    }
                    Err(err) => {
                        let id = id_of(&e.address).map_or("?".to_string(), |i| i.to_string());
                        text.push_str(&format!("{:<4} {:<22} unreachable: {err}\n", id, e.address));
                    }
                }
            }
            print!("{text}");
            let _ = std::io::stdout().flush();
            if !any_reachable {
                eprintln!("kvctl: error: no endpoint is reachable");
            }
        }
    }
    if any_reachable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DEFINITE)
    }
}

/// The MEMBERS column of `status`: the voters (the incoming ones while joint), then learners
/// and the outgoing voters of a joint configuration when there are any.
fn members_cell(m: &Membership) -> String {
    let list = |ids: &mut dyn Iterator<Item = u64>| {
        ids.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    };
    let mut cell = list(&mut m.voters.iter().copied());
    let learners = learners_of(m);
    if !learners.is_empty() {
        cell.push_str(&format!(" learners:{}", list(&mut learners.into_iter())));
    }
    if m.is_joint() {
        cell.push_str(&format!(
            " joint(outgoing:{})",
            list(&mut m.outgoing.iter().copied())
        ));
    }
    cell
}

/// Learners, including those a joint configuration turns into learners when it is left.
fn learners_of(m: &Membership) -> BTreeSet<u64> {
    m.learners.union(&m.learners_next).copied().collect()
}

/// Checks the arguments of a membership command before anything is sent.
fn member_op(cmd: MemberCommand) -> Result<MemberOp, String> {
    let id_ok = |id: u64| {
        if id == 0 {
            Err("node ids start at 1".to_string())
        } else {
            Ok(id)
        }
    };
    Ok(match cmd {
        MemberCommand::List => MemberOp::List,
        MemberCommand::Add { id, addr, learner } => {
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(format!("ADDR {addr:?} is not HOST:PORT"));
            }
            MemberOp::Add {
                id: id_ok(id)?,
                address: addr,
                learner,
            }
        }
        MemberCommand::Promote { id } => MemberOp::Promote { id: id_ok(id)? },
        MemberCommand::Remove { id } => MemberOp::Remove { id: id_ok(id)? },
    })
}

async fn member(out: Output, endpoints: Vec<String>, timeout: Duration, op: MemberOp) -> ExitCode {
    let mut client = Client::new(endpoints, timeout);
    let result = client.member(op.clone()).await;
    client.close().await;
    let view = match result {
        Ok(v) => v,
        Err(Failure { message, definite }) => return fail(out, &message, definite),
    };
    match (out, &op) {
        (Output::Json, MemberOp::List) => print_line(&members_json(&view).to_string()),
        (Output::Json, _) => print_line(&json!({"ok": true}).to_string()),
        (Output::Text, MemberOp::List) => print!("{}", members_text(&view)),
        (Output::Text, MemberOp::Add { id, learner, .. }) => print_line(&if *learner {
            format!("added node {id} as a learner")
        } else {
            format!(
                "added node {id} as a learner; whichever node leads promotes it to voter once it has caught up"
            )
        }),
        (Output::Text, MemberOp::Promote { id }) => {
            print_line(&format!("promoted node {id} to voter"))
        }
        (Output::Text, MemberOp::Remove { id }) => print_line(&format!("removed node {id}")),
    }
    ExitCode::SUCCESS
}

/// SPEC's `member list` line: `{"ok":true,"members":[{"id":1,"address":"...","role":"voter"}],"joint":false}`.
fn members_json(view: &MembershipView) -> serde_json::Value {
    let members: Vec<_> = view
        .members
        .iter()
        .map(|m| {
            let mut row = json!({"id": m.id, "address": m.address, "role": m.role.name()});
            // Only where it is true: rows of voters and of `--learner` learners keep SPEC's form.
            if m.auto_promote {
                row["auto_promote"] = json!(true);
            }
            row
        })
        .collect();
    let mut v = json!({"ok": true, "members": members, "joint": view.joint()});
    if view.joint() {
        v["outgoing"] = json!(view.outgoing);
    }
    v
}

fn members_text(view: &MembershipView) -> String {
    let mut text = format!("{:<6} {:<24} {}\n", "ID", "ADDRESS", "ROLE");
    for m in &view.members {
        let promote = if m.auto_promote {
            " (promoted automatically once caught up)"
        } else {
            ""
        };
        text.push_str(&format!(
            "{:<6} {:<24} {}{promote}\n",
            m.id,
            m.address,
            m.role.name()
        ));
    }
    if view.joint() {
        let old: Vec<String> = view.outgoing.iter().map(|i| i.to_string()).collect();
        text.push_str(&format!(
            "joint configuration in force: decisions need a majority of the voters above and of the outgoing voters {}\n",
            old.join(",")
        ));
    }
    text
}

/// A found value in JSON: UTF-8 values as they are (SPEC's exact form); anything else, or
/// everything with `--hex`, encoded and named by an `encoding` field so it is never corrupted.
fn value_json(v: &[u8], hex: bool) -> serde_json::Value {
    use base64::Engine;
    match (hex, std::str::from_utf8(v)) {
        (false, Ok(text)) => json!({"ok": true, "found": true, "value": text}),
        (true, _) => json!({"ok": true, "found": true, "value": encode_hex(v), "encoding": "hex"}),
        (false, Err(_)) => json!({
            "ok": true,
            "found": true,
            "value": base64::engine::general_purpose::STANDARD.encode(v),
            "encoding": "base64",
        }),
    }
}

fn encode_hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect()
}

/// Writes a value's exact bytes and a newline (text mode): binary values reach a pipe intact.
fn print_bytes_line(v: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(v);
    let _ = stdout.write_all(b"\n");
}

fn print_line(s: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{s}");
}

/// `floor` changes nothing anywhere, so its failures say so without "(not applied)".
fn floor_failed(out: Output, message: &str) -> ExitCode {
    match out {
        Output::Json => print_line(&json!({"ok": false, "error": message}).to_string()),
        Output::Text => eprintln!("kvctl: error: floor: {message}"),
    }
    ExitCode::from(EXIT_DEFINITE)
}

/// Reports a failed command: JSON on stdout or one line on stderr, and the exit status that
/// tells a definite failure (3) from an indeterminate one (4).
fn fail(out: Output, message: &str, definite: bool) -> ExitCode {
    match out {
        Output::Json => {
            print_line(&json!({"ok": false, "error": message, "definite": definite}).to_string())
        }
        Output::Text => {
            let what = if definite {
                "not applied"
            } else {
                "outcome unknown: it may or may not have been applied"
            };
            eprintln!("kvctl: error: {message} ({what})");
        }
    }
    ExitCode::from(if definite {
        EXIT_DEFINITE
    } else {
        EXIT_INDETERMINATE
    })
}

fn usage(out: Output, message: &str) -> ExitCode {
    match out {
        Output::Json => {
            print_line(&json!({"ok": false, "error": message, "definite": true}).to_string())
        }
        Output::Text => eprintln!("kvctl: usage error: {message}"),
    }
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_survive_json_and_hex() {
        use base64::Engine;
        let utf8 = value_json(b"hello", false);
        assert_eq!(
            utf8.to_string(),
            r#"{"ok":true,"found":true,"value":"hello"}"#
        );
        let bin = [0xffu8, 0x00, 0xfe, b'a'];
        let j = value_json(&bin, false);
        assert_eq!(j["encoding"], "base64");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(j["value"].as_str().expect("string"))
            .expect("base64");
        assert_eq!(decoded, bin);
        assert_eq!(value_json(&bin, true)["value"], "ff00fe61");
        assert_eq!(decode_hex("ff00fe61"), Some(bin.to_vec()));
        assert_eq!(decode_hex("f"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn status_members_cell_names_learners_and_the_outgoing_half() {
        let mut m = Membership::bootstrap([1, 2, 3], Default::default());
        assert_eq!(members_cell(&m), "1,2,3");
        m.learners = [5].into();
        m.learners_next = [4].into();
        m.outgoing = [1, 2, 4].into();
        assert_eq!(members_cell(&m), "1,2,3 learners:4,5 joint(outgoing:1,2,4)");
    }

    #[test]
    fn member_list_has_specs_shape_and_arguments_are_checked() {
        use native_node::wire::{MemberRole, MemberRow};
        let mut view = MembershipView {
            index: 9,
            members: vec![
                MemberRow {
                    id: 1,
                    address: "127.0.0.1:7001".into(),
                    role: MemberRole::Voter,
                    auto_promote: false,
                },
                MemberRow {
                    id: 4,
                    address: "127.0.0.1:7004".into(),
                    role: MemberRole::Learner,
                    auto_promote: false,
                },
                MemberRow {
                    id: 5,
                    address: "127.0.0.1:7005".into(),
                    role: MemberRole::Learner,
                    auto_promote: true,
                },
            ],
            outgoing: vec![],
            removed: vec![2],
        };
        assert_eq!(
            members_json(&view).to_string(),
            r#"{"ok":true,"members":[{"id":1,"address":"127.0.0.1:7001","role":"voter"},{"id":4,"address":"127.0.0.1:7004","role":"learner"},{"id":5,"address":"127.0.0.1:7005","role":"learner","auto_promote":true}],"joint":false}"#
        );
        assert!(members_text(&view).contains("4      127.0.0.1:7004           learner\n"));
        assert!(members_text(&view).contains(
            "5      127.0.0.1:7005           learner (promoted automatically once caught up)\n"
        ));
        view.outgoing = vec![1, 2];
        assert_eq!(members_json(&view)["joint"], true);
        assert!(members_text(&view).contains("outgoing voters 1,2"));
        assert!(
            member_op(MemberCommand::Add {
                id: 4,
                addr: "nohost".into(),
                learner: false
            })
            .is_err()
        );
        assert!(member_op(MemberCommand::Remove { id: 0 }).is_err());
        assert_eq!(
            member_op(MemberCommand::Add {
                id: 4,
                addr: "h:1".into(),
                learner: true
            }),
            Ok(MemberOp::Add {
                id: 4,
                address: "h:1".into(),
                learner: true
            })
        );
    }
}
