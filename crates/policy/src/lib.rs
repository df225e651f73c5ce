//! NetworkPolicy compilation (being written).
