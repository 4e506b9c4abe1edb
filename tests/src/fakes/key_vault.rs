//! key_vault (in progress)
