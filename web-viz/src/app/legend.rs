//! The key to the drawing's colours and message letters.

use yew::prelude::*;

use super::palette::{OI_BLUE, OI_ORANGE, OI_PURPLE, OI_SKY, OI_VERMILLION, OI_YELLOW};

pub fn legend() -> Html {
    let item = |c: &str, l: &str, hollow: bool, name: &str| {
        html! {
            <span class="li">
                <svg width="22" height="22" viewBox="-11 -11 22 22">
                    <circle r="9" fill={if hollow { "#fff".to_string() } else { c.to_string() }} stroke={c.to_string()} stroke-width={if hollow { "3" } else { "1.5" }} />
                    <text class="msg-label" y="3.5">{l.to_string()}</text>
                </svg>
                {name.to_string()}
            </span>
        }
    };
    html! {
        <div class="legend">
            <div>
                { item(OI_YELLOW, "PV", false, "pre-vote") }
                { item(OI_ORANGE, "V", false, "vote") }
                { item(OI_BLUE, "A", false, "append") }
                { item(OI_SKY, "H", false, "heartbeat") }
                { item(OI_SKY, "R", false, "read round") }
                { item(OI_VERMILLION, "S", false, "snapshot") }
                { item(OI_PURPLE, "C", false, "client") }
                { item("#555", "", true, "hollow = reply") }
                <span class="li muted">{"ring = timer · bar = lease"}</span>
            </div>
        </div>
    }
}
