//! The scenario player: plays a scenario script (docs/scenarios.md) on the real core one
//! command at a time, explains each event in plain words, takes more commands typed by the
//! learner, and saves the whole session as a `.scn` file that `make scenario` runs unchanged.
//! [`Player`] and the bundled scripts are platform-neutral (tested natively and in the
//! browser); [`view`] is the page, opened with `?scn=NAME`.

use keyval_core::scenario::{self, ScenarioError, Session};

use crate::narrate::{narrate, Narration};

/// The scenarios of `snapshots/scenarios/`, compiled in (a native test checks none is missing).
pub const BUNDLED: &[(&str, &str)] = &[
    (
        "check_quorum_step_down",
        include_str!("../../snapshots/scenarios/check_quorum_step_down.scn"),
    ),
    (
        "client_redirected_by_follower",
        include_str!("../../snapshots/scenarios/client_redirected_by_follower.scn"),
    ),
    (
        "committed_entry_survives_leader_crash",
        include_str!("../../snapshots/scenarios/committed_entry_survives_leader_crash.scn"),
    ),
    (
        "disruptive_rejoin_without_prevote",
        include_str!("../../snapshots/scenarios/disruptive_rejoin_without_prevote.scn"),
    ),
    (
        "duplicate_client_retry",
        include_str!("../../snapshots/scenarios/duplicate_client_retry.scn"),
    ),
    (
        "fast_log_backtracking",
        include_str!("../../snapshots/scenarios/fast_log_backtracking.scn"),
    ),
    (
        "figure_8",
        include_str!("../../snapshots/scenarios/figure_8.scn"),
    ),
    (
        "follower_catches_up_by_install_snapshot",
        include_str!("../../snapshots/scenarios/follower_catches_up_by_install_snapshot.scn"),
    ),
    (
        "follower_far_behind_snapshot",
        include_str!("../../snapshots/scenarios/follower_far_behind_snapshot.scn"),
    ),
    (
        "initial_election_3_nodes",
        include_str!("../../snapshots/scenarios/initial_election_3_nodes.scn"),
    ),
    (
        "leader_crash_and_reelection",
        include_str!("../../snapshots/scenarios/leader_crash_and_reelection.scn"),
    ),
    (
        "leadership_transfer",
        include_str!("../../snapshots/scenarios/leadership_transfer.scn"),
    ),
    (
        "lease_read",
        include_str!("../../snapshots/scenarios/lease_read.scn"),
    ),
    (
        "membership_add_learner_and_promote",
        include_str!("../../snapshots/scenarios/membership_add_learner_and_promote.scn"),
    ),
    (
        "membership_promote_after_leader_change",
        include_str!("../../snapshots/scenarios/membership_promote_after_leader_change.scn"),
    ),
    (
        "membership_remove_leader",
        include_str!("../../snapshots/scenarios/membership_remove_leader.scn"),
    ),
    (
        "membership_removed_node_cannot_disrupt",
        include_str!("../../snapshots/scenarios/membership_removed_node_cannot_disrupt.scn"),
    ),
    (
        "membership_replace_voter_joint",
        include_str!("../../snapshots/scenarios/membership_replace_voter_joint.scn"),
    ),
    (
        "minority_majority_partition_and_heal",
        include_str!("../../snapshots/scenarios/minority_majority_partition_and_heal.scn"),
    ),
    (
        "prevote_prevents_disruptive_rejoin",
        include_str!("../../snapshots/scenarios/prevote_prevents_disruptive_rejoin.scn"),
    ),
    (
        "read_index_batched",
        include_str!("../../snapshots/scenarios/read_index_batched.scn"),
    ),
    (
        "restart_from_snapshot_plus_log_tail",
        include_str!("../../snapshots/scenarios/restart_from_snapshot_plus_log_tail.scn"),
    ),
    (
        "split_vote",
        include_str!("../../snapshots/scenarios/split_vote.scn"),
    ),
    (
        "stale_leader_after_pause",
        include_str!("../../snapshots/scenarios/stale_leader_after_pause.scn"),
    ),
    (
        "stale_leader_read_refused",
        include_str!("../../snapshots/scenarios/stale_leader_read_refused.scn"),
    ),
    (
        "three_replicated_writes",
        include_str!("../../snapshots/scenarios/three_replicated_writes.scn"),
    ),
];

/// The bundled script named `name`.
pub fn bundled(name: &str) -> Option<&'static str> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// One command as played: its output (the golden-file text) and the narrated events.
#[derive(Clone, Debug, PartialEq)]
pub struct PlayedStep {
    pub line: usize,
    pub command: String,
    pub output: String,
    pub narration: Vec<Narration>,
}

pub struct Player {
    name: String,
    session: Session,
    pub steps: Vec<PlayedStep>,
    /// The error that stopped the script, if one did.
    pub error: Option<String>,
}

impl Player {
    /// Parses `text`; nothing runs until [`Player::step`].
    pub fn load(name: &str, text: &str) -> Result<Player, ScenarioError> {
        Ok(Player {
            name: name.to_string(),
            session: Session::new(scenario::parse(name, text)?),
            steps: Vec::new(),
            error: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The script's lines as written, and the index of the next one to run.
    pub fn script(&self) -> (Vec<&str>, usize) {
        let lines = self.session.script().lines.iter().map(|l| l.text.as_str());
        (lines.collect(), self.session.position())
    }

    pub fn is_done(&self) -> bool {
        self.session.is_done()
    }

    /// Runs the next command. Returns false when there was none left to run.
    pub fn step(&mut self) -> bool {
        match self.session.step() {
            None => false,
            Some(r) => {
                self.record(r);
                true
            }
        }
    }

    /// Runs every remaining command, then the end-of-script safety checks.
    pub fn run_to_end(&mut self) {
        while self.step() {}
        if self.error.is_none() {
            if let Err(e) = self.session.finish() {
                self.error = Some(e.to_string());
            }
        }
    }

    /// Runs a command typed by the learner after the script's own.
    pub fn command(&mut self, text: &str) {
        let r = self.session.run_extra(text.trim());
        self.record(r);
    }

    fn record(&mut self, r: Result<scenario::Step, ScenarioError>) {
        match r {
            Ok(step) => self.steps.push(PlayedStep {
                line: step.line,
                narration: step
                    .events
                    .iter()
                    .filter_map(|e| narrate(e, false, false))
                    .collect(),
                command: step.command,
                output: step.output,
            }),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Everything printed so far, exactly as `make scenario` prints it.
    pub fn output(&self) -> &str {
        self.session.output()
    }

    /// The nodes' state now (the `status` command's text).
    pub fn status(&self) -> String {
        self.session.status().unwrap_or_default()
    }

    /// What ran, as a scenario file: the script's lines so far plus the typed commands.
    pub fn export(&self) -> String {
        self.session.to_scenario_text()
    }
}

/// The body of an insta snapshot file: what follows its `---` header.
pub fn golden_body(snap: &str) -> &str {
    snap.splitn(3, "---\n").nth(2).unwrap_or(snap)
}

#[cfg(target_arch = "wasm32")]
pub use view::ScenarioPage;

#[cfg(target_arch = "wasm32")]
mod view {
    use std::cell::RefCell;
    use std::rc::Rc;

    use wasm_bindgen::JsCast;
    use web_sys::{HtmlInputElement, HtmlSelectElement};
    use yew::prelude::*;

    use super::{bundled, Player, BUNDLED};

    fn requested_name() -> String {
        let search = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .unwrap_or_default();
        web_sys::UrlSearchParams::new_with_str(&search)
            .ok()
            .and_then(|p| p.get("scn"))
            .filter(|n| bundled(n).is_some())
            .unwrap_or_else(|| "initial_election_3_nodes".to_string())
    }

    fn load(name: &str, text: &str) -> Result<Player, String> {
        Player::load(name, text).map_err(|e| e.to_string())
    }

    fn save(name: &str, text: &str) {
        let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
        let opts = web_sys::BlobPropertyBag::new();
        opts.set_type("text/plain");
        let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else {
            return;
        };
        let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
            return;
        };
        if let Ok(a) = gloo::utils::document().create_element("a") {
            let a: web_sys::HtmlAnchorElement = a.unchecked_into();
            a.set_href(&url);
            a.set_download(name);
            let _ = gloo::utils::body().append_child(&a);
            a.click();
            a.remove();
        }
        let _ = web_sys::Url::revoke_object_url(&url);
    }

    type Shared = Rc<RefCell<Result<Player, String>>>;

    /// The page: picker, script with the next line marked, step controls, command box,
    /// transcript with narration, and the nodes' state.
    #[function_component(ScenarioPage)]
    pub fn scenario_page() -> Html {
        let player: Shared = use_mut_ref(|| {
            let name = requested_name();
            load(&name, bundled(&name).unwrap_or_default())
        })
        .clone();
        let redraw = use_force_update();
        let reader = use_mut_ref(|| None::<gloo::file::callbacks::FileReader>);
        let act = |f: fn(&mut Player)| {
            let (p, r) = (player.clone(), redraw.clone());
            Callback::from(move |_: MouseEvent| {
                if let Ok(pl) = p.borrow_mut().as_mut() {
                    f(pl);
                }
                r.force_update();
            })
        };
        let pick = {
            let (p, r) = (player.clone(), redraw.clone());
            Callback::from(move |e: Event| {
                let name = e.target_unchecked_into::<HtmlSelectElement>().value();
                *p.borrow_mut() = load(&name, bundled(&name).unwrap_or_default());
                r.force_update();
            })
        };
        let open_file = {
            let (p, r) = (player.clone(), redraw.clone());
            Callback::from(move |e: Event| {
                let input: HtmlInputElement = e.target_unchecked_into();
                let Some(file) = input.files().and_then(|f| f.get(0)) else {
                    return;
                };
                let name = file.name();
                let (p, r) = (p.clone(), r.clone());
                let task = gloo::file::callbacks::read_as_text(&file.into(), move |text| {
                    *p.borrow_mut() = match text {
                        Ok(t) => load(&name, &t),
                        Err(e) => Err(format!("{name}: {e}")),
                    };
                    r.force_update();
                });
                *reader.borrow_mut() = Some(task);
                input.set_value("");
            })
        };
        let typed = {
            let (p, r) = (player.clone(), redraw.clone());
            Callback::from(move |e: KeyboardEvent| {
                if e.key() != "Enter" {
                    return;
                }
                let input: HtmlInputElement = e.target_unchecked_into();
                if let Ok(pl) = p.borrow_mut().as_mut() {
                    pl.command(&input.value());
                }
                input.set_value("");
                r.force_update();
            })
        };
        let export = {
            let p = player.clone();
            Callback::from(move |_: MouseEvent| {
                if let Ok(pl) = p.borrow().as_ref() {
                    let name = pl.name().trim_end_matches(".scn").to_string();
                    save(&format!("{name}.scn"), &pl.export());
                }
            })
        };
        let restart = {
            let (p, r) = (player.clone(), redraw.clone());
            Callback::from(move |_: MouseEvent| {
                let reloaded = p
                    .borrow()
                    .as_ref()
                    .ok()
                    .map(|pl| load(pl.name(), &pl.script().0.join("\n")));
                if let Some(new) = reloaded {
                    *p.borrow_mut() = new;
                }
                r.force_update();
            })
        };

        let state = player.borrow();
        let current = state
            .as_ref()
            .map(|p| p.name().to_string())
            .unwrap_or_default();
        let picker = html! {
            <select data-testid="scn-picker" onchange={pick}>
                { for BUNDLED.iter().map(|(n, _)| html! {
                    <option value={*n} selected={*n == current}>{*n}</option>
                }) }
            </select>
        };
        let body = match state.as_ref() {
            Err(e) => html! { <pre class="scn-error" data-testid="scn-error">{e}</pre> },
            Ok(p) => {
                let (lines, next) = p.script();
                html! {
                    <div class="scn-body">
                        <div class="card scn-script">
                            <h2>{"Script"}</h2>
                            <ol data-testid="scn-script">
                                { for lines.iter().enumerate().map(|(i, l)| html! {
                                    <li class={classes!((i == next).then_some("next"), (i < next).then_some("done"))}>{*l}</li>
                                }) }
                            </ol>
                            <div class="row">
                                <button data-testid="scn-step" onclick={act(|p| { p.step(); })} disabled={p.is_done()}>{"Step"}</button>
                                <button data-testid="scn-run" onclick={act(Player::run_to_end)} disabled={p.is_done()}>{"Run to end"}</button>
                                <button data-testid="scn-restart" onclick={restart}>{"Restart"}</button>
                                <button data-testid="scn-save" onclick={export}>{"Save as .scn"}</button>
                            </div>
                            <input data-testid="scn-command" placeholder="type a command, e.g. crash n1, then Enter" onkeydown={typed} />
                            if let Some(e) = &p.error {
                                <pre class="scn-error" data-testid="scn-error">{e}</pre>
                            }
                            <h2>{"Nodes"}</h2>
                            <pre data-testid="scn-status">{p.status()}</pre>
                        </div>
                        <div class="card scn-transcript" data-testid="scn-transcript">
                            <h2>{"What happened"}</h2>
                            { for p.steps.iter().rev().map(|s| html! {
                                <div class="scn-step">
                                    <div class="scn-command">{format!("line {}: {}", s.line, s.command)}</div>
                                    <ul class="scn-narration">
                                        { for s.narration.iter().map(|n| html! {
                                            <li class={n.class}>{&n.text}
                                                if !n.rule.is_empty() { <span class="rule">{format!(" ({})", n.rule)}</span> }
                                            </li>
                                        }) }
                                    </ul>
                                    <details><summary>{"trace"}</summary><pre>{&s.output}</pre></details>
                                </div>
                            }) }
                        </div>
                    </div>
                }
            }
        };
        html! {
            <div class="scenario-player">
                <header class="top">
                    <div class="brand">
                        <h1>{"KeyVal scenario player"}</h1>
                        <span class="tagline">{"protocol test scripts, run on the real core, one command at a time"}</span>
                    </div>
                    <nav class="modes">
                        {picker}
                        <label class="file">{"Open .scn "}<input type="file" accept=".scn,text/plain" data-testid="scn-file" onchange={open_file} /></label>
                        <a href="?">{"Back to the playground"}</a>
                    </nav>
                </header>
                {body}
            </div>
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_file_is_bundled() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/scenarios");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("scenario folder")
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter_map(|n| n.strip_suffix(".scn").map(String::from))
            .collect();
        files.sort();
        let bundled: Vec<String> = BUNDLED.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(files, bundled);
    }

    #[test]
    fn playing_step_by_step_gives_the_golden_output_and_narrates() {
        let golden = include_str!("../../snapshots/scenarios/split_vote.snap");
        let mut p = Player::load("split_vote", bundled("split_vote").unwrap()).unwrap();
        while p.step() {}
        assert_eq!(p.error, None);
        assert_eq!(p.output(), golden_body(golden));
        assert!(p
            .steps
            .iter()
            .flat_map(|s| &s.narration)
            .any(|n| n.rule == crate::narrate::RULE_ELECTION));
    }

    #[test]
    fn typed_commands_run_and_export_as_a_runnable_script() {
        let mut p = Player::load("mine", "cluster nodes=3 seed=1\ntick-until leader").unwrap();
        p.run_to_end();
        p.command("put n2 x 1");
        p.command("stabilize");
        p.command("frobnicate");
        assert_eq!(
            p.error.as_deref(),
            Some(
                "mine:5: unknown command `frobnicate` (known: cluster, tick, run, tick-until, \
                 stabilize, hold, unhold, deliver, drop, partition, isolate, cut, restore, heal, \
                 crash, restart, pause, resume, put, get, delete, retry, drift, transfer, status, \
                 log, kv, held, expect, member)"
            )
        );
        let saved = p.export();
        assert_eq!(
            saved,
            "cluster nodes=3 seed=1\ntick-until leader\nput n2 x 1\nstabilize\n"
        );
        let replay = keyval_core::scenario::run("saved.scn", &saved).unwrap();
        assert_eq!(replay, p.output());
    }
}
