//! failpoint (in progress)
