//! log_analytics (in progress)
