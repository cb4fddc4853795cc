//! The course panel: the chapter list, the chapter's explanation and question, the learner's
//! guess, and the answer the run gives.

use yew::prelude::*;

use super::forms::click;
use crate::course::CHAPTERS;
use crate::state::{Msg, Ui};

pub fn course_panel(state: &UseReducerHandle<Ui>) -> Html {
    let d = state.dispatcher();
    let c = &state.course;
    let chapters = CHAPTERS.iter().enumerate().map(|(i, ch)| {
        let current =
            state.scenario.is_some() && c.chapter == i && ch.scenario_index() == state.scenario;
        html! {
            <button data-testid={format!("course-chapter-{}", ch.id)}
                class={classes!(current.then_some("on"), c.done.contains(&i).then_some("done"))}
                aria-current={current.then_some("step")}
                onclick={click(&d, Msg::Chapter(i))}>{ch.title}</button>
        }
    });
    let ch = CHAPTERS.get(c.chapter);
    let open = ch.filter(|ch| ch.scenario_index() == state.scenario && state.scenario.is_some());
    html! {
        <div class="course" data-testid="course">
            <div class="chapters">{ for chapters }</div>
            if let Some(ch) = open {
                <p class="explain">{ch.explain}</p>
                <p class="question" data-testid="course-question">{ch.question}</p>
                <div class="choices">
                    { for ch.choices.iter().enumerate().map(|(i, text)| html! {
                        <button data-testid={format!("course-choice-{i}")} aria-pressed={(c.choice == Some(i)).to_string()}
                            disabled={c.verdict.is_some()} onclick={click(&d, Msg::Choose(i))}>{*text}</button>
                    }) }
                </div>
                <div class="row">
                    <button data-testid="course-run" class="primary" disabled={c.running || c.verdict.is_some()}
                        onclick={click(&d, Msg::RunChapter)}>
                        { if c.running { "Running…" } else { "▶ Run to find out" } }
                    </button>
                    if let Some(next) = CHAPTERS.get(c.chapter + 1) {
                        <button data-testid="course-next" onclick={click(&d, Msg::Chapter(c.chapter + 1))}>{format!("Next: {}", next.title)}</button>
                    }
                </div>
                if let Some(v) = c.verdict {
                    <div class={classes!("answer", if c.choice == Some(v) { "right" } else { "wrong" })}
                         data-testid="course-verdict" data-answer={v.to_string()}
                         data-correct={(c.choice == Some(v)).to_string()}>
                        <b>{ match c.choice {
                            Some(g) if g == v => "Right. ".to_string(),
                            Some(_) => "Not this time. ".to_string(),
                            None => String::new(),
                        } }</b>
                        {format!("The run answered: {}. ", ch.choices.get(v).copied().unwrap_or("?"))}
                        {ch.why}
                    </div>
                }
            } else {
                <p class="explain">{"Pick a chapter. Each sets up a situation on the real Raft code, asks what will happen, and lets the run answer. Progress is kept in the page address."}</p>
            }
        </div>
    }
}
