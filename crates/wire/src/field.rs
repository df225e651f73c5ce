//! Byte ranges of header fields, as smoltcp writes them: `pub const SRC_PORT: Field = 0..2;`.
//! A `Rest` is the open range from a header's end to the end of the buffer.

pub(crate) type Field = core::ops::Range<usize>;
pub(crate) type Rest = core::ops::RangeFrom<usize>;
