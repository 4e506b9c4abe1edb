//! Talking to Okta's System Log API (docs/contracts.md §1).
//!
//! [`client`] fetches one page (origin checks, credential refresh), reading the answer with
//! [`response`] and [`rate_limit`] and failing with an [`error::OktaError`]; [`events`]
//! splits a page into its events, reading each event's head with [`head`] on the way;
//! [`auth`] holds the credential (SSWS, or OAuth `private_key_jwt` with DPoP from [`dpop`]
//! and keys from [`keys`]); [`links`] parses `Link` headers; [`page`] turns the events of a
//! page into the bytes that get stored.

pub mod auth;
pub mod client;
pub mod dpop;
pub mod error;
pub mod events;
mod head;
pub mod keys;
pub mod links;
pub mod page;
pub mod rate_limit;
pub mod response;

pub use auth::{Credential, LOGS_READ_SCOPE};
pub use client::{
    build_http_client, build_http_client_with_timeout, first_url, OktaClient, OktaError, OktaPage,
    RateLimit,
};
pub use events::{Event, Events};
pub use page::{prepare_page, PreparedPage};
