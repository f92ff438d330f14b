//! tapstack binary (work in progress).
fn main() {}
