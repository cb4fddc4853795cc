//! A scenario played in the browser gives exactly its golden output: the same core, compiled to
//! WebAssembly and stepped one command at a time by the scenario player, must print byte for
//! byte what `cargo test` approved in snapshots/scenarios/ (`make web-test`).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use web_viz::scenario_player::{bundled, golden_body, Player};

wasm_bindgen_test_configure!(run_in_browser);

fn play(name: &str) -> Player {
    let mut p = Player::load(name, bundled(name).expect("bundled")).expect("parses");
    while p.step() {}
    p
}

#[wasm_bindgen_test]
fn figure_8_in_the_browser_matches_its_golden_output() {
    let p = play("figure_8");
    assert_eq!(p.error, None);
    let golden = include_str!("../../snapshots/scenarios/figure_8.snap");
    assert_eq!(p.output(), golden_body(golden));
}

#[wasm_bindgen_test]
fn split_vote_in_the_browser_matches_its_golden_output() {
    let p = play("split_vote");
    let golden = include_str!("../../snapshots/scenarios/split_vote.snap");
    assert_eq!(p.output(), golden_body(golden));
}
