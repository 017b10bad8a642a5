//! The Sluice S3 edge gateway.
//!
//! Module map (see `docs/ARCHITECTURE.md` for one request's path through it):
//! - [`config`]: the YAML config, validated into typed values;
//! - [`keys`]: tenants' HMAC keys: the managed key store and the live key table;
//! - [`server`]: listeners, TLS, connection limits, graceful shutdown;
//! - [`pipeline`]: the request phases, run in order for every request;
//! - [`auth`]: SigV4 verification into a `Principal`;
//! - [`body`]: request bodies verified while streaming; response bodies;
//! - [`s3`]: routing to operations, executing them, XML, and the one error mapping;
//! - [`gateway`]: the shared state built from the config.

pub mod at_rest;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod decrypt;
pub mod gateway;
pub mod keys;
pub mod pipeline;
pub mod plugin_tool;
pub mod plugins;
pub mod s3;
pub mod server;
