//! ctnetlink: attributes, message decoding, the socket and the sources.

pub mod attrs;
pub mod decode;
pub mod request;
pub mod socket;
pub mod source;
pub mod wire;
