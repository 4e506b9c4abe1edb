//! page_state (in progress)
