//! Placeholder: the transform + chunk + gzip benchmark lands with the rows module.
fn main() {}
