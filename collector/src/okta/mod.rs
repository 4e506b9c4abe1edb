//! Talking to Okta's System Log API (contracts.md §1).
//!
//! [`client`] fetches one page (origin checks, error mapping, credential refresh); [`auth`]
//! holds the credential (SSWS, or OAuth `private_key_jwt` with DPoP from [`dpop`] and keys
//! from [`keys`]); [`links`] parses `Link` headers; [`page`] turns the events of a page into
//! the bytes that get stored.

pub mod auth;
pub mod client;
pub mod dpop;
pub mod keys;
pub mod links;
pub mod page;

pub use auth::{Credential, LOGS_READ_SCOPE};
pub use client::{
    build_http_client, build_http_client_with_timeout, OktaClient, OktaError, OktaPage, RateLimit,
};
pub use page::{prepare_page, PreparedPage};
