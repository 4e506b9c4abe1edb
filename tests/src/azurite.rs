//! azurite (in progress)
