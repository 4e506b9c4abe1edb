//! backoff (in progress)
