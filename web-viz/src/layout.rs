//! Where things sit in the cluster drawing (SVG user units). Nodes sit on a ring; while the
//! network is split, each side gets its own column with the partition line between them, so a
//! partition is something you can see, and drag a node across.

use keyval_core::sim::Addr;
use keyval_core::NodeId;

use crate::engine::Engine;

pub const VIEW_W: f64 = 560.0;
pub const VIEW_H: f64 = 520.0;
pub const CX: f64 = VIEW_W / 2.0;
pub const CY: f64 = VIEW_H / 2.0;
pub const RING: f64 = 188.0;
pub const NODE_R: f64 = 46.0;
/// Dropping a node beyond this distance from the centre cuts it off (the partition line of an
/// unsplit cluster: a circle just outside the ring).
pub const CUT_RADIUS: f64 = RING + NODE_R + 12.0;

/// Node `id`'s place on a ring of nodes 1 to `n` (the live view's fixed cluster).
pub fn pos(n: usize, id: NodeId) -> (f64, f64) {
    ring_pos(n, id.saturating_sub(1) as usize)
}

/// The place of the `i`-th of `n` nodes on the ring.
pub fn ring_pos(n: usize, i: usize) -> (f64, f64) {
    let a = -std::f64::consts::FRAC_PI_2 + i as f64 * 2.0 * std::f64::consts::PI / n.max(1) as f64;
    (CX + RING * a.cos(), CY + RING * a.sin())
}

/// Every node's place for one picture of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Every node the run has started, in id order (nodes added by membership changes join
    /// the ring; removed ones keep their place, they still run).
    ids: Vec<NodeId>,
    pts: Vec<(f64, f64)>,
    /// The network is split: the first side is drawn left of the partition line, the others
    /// right of it.
    pub split: bool,
}

impl Layout {
    pub fn of(e: &Engine) -> Layout {
        let ids = e.sim.node_ids();
        let n = ids.len();
        match e.sides() {
            Some(sides) if sides.iter().any(|&s| s != 0) => Layout {
                ids,
                pts: columns(&sides),
                split: true,
            },
            _ => Layout {
                ids,
                pts: (0..n).map(|i| ring_pos(n, i)).collect(),
                split: false,
            },
        }
    }

    pub fn pos(&self, id: NodeId) -> (f64, f64) {
        self.ids
            .iter()
            .position(|&i| i == id)
            .and_then(|i| self.pts.get(i).copied())
            .unwrap_or((CX, CY))
    }

    pub fn addr_pos(&self, a: Addr) -> (f64, f64) {
        match a {
            Addr::Node(id) => self.pos(id),
            Addr::Client(_) => (CX, CY),
        }
    }

    /// Whether dropping `node` at `(x, y)` takes it across the partition line: to the other
    /// column of a split cluster, or out of the ring of a whole one.
    pub fn crosses(&self, node: NodeId, x: f64, y: f64) -> bool {
        let (nx, _) = self.pos(node);
        if self.split {
            (x < CX) != (nx < CX)
        } else {
            ((x - CX).powi(2) + (y - CY).powi(2)).sqrt() > CUT_RADIUS
        }
    }
}

/// Side 0 in the left column, the other sides in the right one; a column of more than three
/// nodes zigzags so neighbours never overlap.
fn columns(sides: &[u8]) -> Vec<(f64, f64)> {
    let left: Vec<usize> = (0..sides.len()).filter(|&i| sides[i] == 0).collect();
    let right: Vec<usize> = (0..sides.len()).filter(|&i| sides[i] != 0).collect();
    let mut pts = vec![(CX, CY); sides.len()];
    for (col, x) in [(left, CX - 140.0), (right, CX + 140.0)] {
        let k = col.len();
        let spacing = if k > 3 {
            (VIEW_H - 130.0) / k as f64
        } else {
            150.0
        };
        for (j, &i) in col.iter().enumerate() {
            let dx = if k > 3 {
                if j % 2 == 0 {
                    -55.0
                } else {
                    55.0
                }
            } else {
                0.0
            };
            let y = CY + (j as f64 - (k as f64 - 1.0) / 2.0) * spacing;
            pts[i] = (x + dx, y);
        }
    }
    pts
}
