//! Upstream S3 stores behind Sluice: each backend of `type: s3` in the config becomes an
//! [`UpstreamBackend`], the storage interface spoken over HTTP to AWS S3, Google Cloud Storage,
//! MinIO, Ceph, Wasabi, Backblaze B2, Cloudflare R2 or any S3 implementation. Requests are built
//! from Sluice's parsed operations and re-signed with the backend's own credentials; bodies
//! stream both ways, re-framed the way the provider's [`Profile`] accepts.

mod backend;
mod body;
mod client;
mod credentials;
mod profile;
mod request;
mod settings;
mod xml;

pub use backend::UpstreamBackend;
pub use credentials::{CredentialCache, CredentialSources, Credentials, SecretSource};
pub use profile::{Profile, Quirks};
pub use settings::{Addressing, Endpoint, PayloadSigning, Timeouts, UpstreamConfig};
