//! org (in progress)
