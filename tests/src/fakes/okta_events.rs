//! okta_events (in progress)
