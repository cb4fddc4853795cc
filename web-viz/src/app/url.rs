//! The page URL: the run it starts (nodes, seed, scenario, mode) and keeping it in step.

use std::rc::Rc;

use crate::course::{chapter_index, CHAPTERS};
use crate::scenarios::SCENARIOS;
use crate::state::{Mode, Msg, Tab, Ui};

pub fn query() -> web_sys::UrlSearchParams {
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    web_sys::UrlSearchParams::new_with_str(&search)
        .unwrap_or_else(|_| web_sys::UrlSearchParams::new().expect("params"))
}

pub fn live_addrs_from_query() -> Vec<String> {
    query()
        .get("live")
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_else(|| (1..=3).map(|i| format!("127.0.0.1:{}", 7000 + i)).collect())
}

pub fn initial_state() -> Ui {
    let q = query();
    let nodes = q
        .get("nodes")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| [3, 5, 7].contains(n))
        .unwrap_or(5);
    let seed = q.get("seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let mode = if q.get("mode").as_deref() == Some("live") {
        Mode::Live
    } else {
        Mode::Sim
    };
    let mut ui = Ui::new(nodes, seed, mode, &live_addrs_from_query());
    if let Some(i) = q
        .get("scenario")
        .and_then(|id| SCENARIOS.iter().position(|s| s.id == id))
    {
        ui = (*Rc::new(ui).apply(Msg::Scenario(i))).clone();
    }
    // The course: `course` opens its tab, `chapter=ID` a chapter (paused at its start), and
    // `done=ID,ID` the chapters already answered.
    if q.get("course").is_some() {
        ui.tab = Tab::Course;
    }
    if let Some(c) = q.get("chapter").and_then(|id| chapter_index(&id)) {
        ui = (*Rc::new(ui).apply(Msg::Chapter(c))).clone();
    }
    if let Some(done) = q.get("done") {
        ui.course.done = done.split(',').filter_map(chapter_index).collect();
    }
    if q.get("paused").is_some() {
        ui.playing = false;
    }
    if let Some(s) = q.get("speed").and_then(|s| s.parse().ok()) {
        ui.speed = s;
    }
    ui
}

/// Where the learner is in the course, for the URL.
#[derive(Clone, Debug, PartialEq)]
pub struct CourseUrl {
    pub open: bool,
    pub chapter: Option<usize>,
    pub done: Vec<usize>,
}

pub fn set_url(nodes: usize, seed: u64, mode: Mode, scenario: Option<usize>, course: &CourseUrl) {
    let Some(w) = web_sys::window() else { return };
    let q = query();
    if course.open {
        q.set("course", "1");
    } else {
        q.delete("course");
    }
    match course.chapter.and_then(|c| CHAPTERS.get(c)) {
        Some(ch) => q.set("chapter", ch.id),
        None => q.delete("chapter"),
    }
    if course.done.is_empty() {
        q.delete("done");
    } else {
        let ids: Vec<&str> = course
            .done
            .iter()
            .filter_map(|c| CHAPTERS.get(*c))
            .map(|c| c.id)
            .collect();
        q.set("done", &ids.join(","));
    }
    q.set("nodes", &nodes.to_string());
    q.set("seed", &seed.to_string());
    match scenario.and_then(|i| SCENARIOS.get(i)) {
        Some(sc) => q.set("scenario", sc.id),
        None => q.delete("scenario"),
    }
    if mode == Mode::Live {
        q.set("mode", "live");
    } else {
        q.delete("mode");
    }
    let path = w.location().pathname().unwrap_or_default();
    let url = format!("{path}?{}", String::from(q.to_string()));
    if let Ok(h) = w.history() {
        let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}
