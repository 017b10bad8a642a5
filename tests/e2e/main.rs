//! End-to-end tests: the real `sluice` binary on 127.0.0.1, driven by clients nobody here
//! wrote (the `aws-sdk-s3` crate with its default checksum behaviour, curl), plus raw requests
//! for the cases no well-behaved client produces (tampered chunks, oversized headers).
//!
//! Build the binary first: `cargo build -p sluice` (tests/run.sh does).

mod auth;
mod durability;
mod front_door;
mod hardening;
mod multipart;
mod objects;
mod operations;
mod support;
mod upstream;
mod upstream_failures;
