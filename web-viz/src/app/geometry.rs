//! Where things sit in the cluster drawing: see [`crate::layout`] (platform-neutral, so the
//! reducer can tell whether a dragged node crossed the partition line).

pub use crate::layout::*;
