//! (placeholder: being written)

pub mod user_cid;
