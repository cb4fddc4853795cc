//! Where things sit in the cluster drawing (SVG user units).

use keyval_core::sim::Addr;
use keyval_core::NodeId;

pub const VIEW_W: f64 = 560.0;
pub const VIEW_H: f64 = 520.0;
pub const CX: f64 = VIEW_W / 2.0;
pub const CY: f64 = VIEW_H / 2.0;
pub const RING: f64 = 188.0;
pub const NODE_R: f64 = 46.0;

pub fn pos(n: usize, id: NodeId) -> (f64, f64) {
    let i = (id - 1) as f64;
    let a = -std::f64::consts::FRAC_PI_2 + i * 2.0 * std::f64::consts::PI / n as f64;
    (CX + RING * a.cos(), CY + RING * a.sin())
}

pub fn addr_pos(n: usize, a: Addr) -> (f64, f64) {
    match a {
        Addr::Node(id) => pos(n, id),
        Addr::Client(_) => (CX, CY),
    }
}
