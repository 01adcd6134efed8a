//! The constellation command.
fn main() {}
