//! okta (in progress)
