//! Headless outputs: JSON lines and the batch text table.

pub mod ends;
pub mod format;
pub mod json;
pub mod line;
pub mod meta;
pub mod safe;
pub mod text;
