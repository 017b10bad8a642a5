//! An upstream backend's settings, as the config file gives them (validated by the server's
//! config module): where it is, how to address and sign for it, whose credentials.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{CredentialSources, Profile};

/// Path-style (`host/bucket/key`) or virtual-hosted-style (`bucket.host/key`) requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Virtual,
    Path,
}

#[derive(Debug)]
pub struct UpstreamConfig {
    /// The backend's name in the config: in log lines, never in answers to clients.
    pub name: String,
    pub profile: Profile,
    pub endpoint: Endpoint,
    /// The region requests are signed for.
    pub region: String,
    pub addressing: Addressing,
    pub credentials: CredentialSources,
    /// A PEM file of CA certificates trusted in addition to the system's.
    pub ca: Option<PathBuf>,
    pub timeouts: Timeouts,
    pub payload_signing: PayloadSigning,
}

/// How a client's body is signed on its way upstream when the client did not sign a hash of it
/// (an aws-chunked or unsigned upload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadSigning {
    /// `UNSIGNED-PAYLOAD` over TLS or loopback; a new signed chunk chain over plain HTTP
    /// elsewhere, where the profile accepts one.
    #[default]
    Auto,
    /// Always a new signed chunk chain (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`).
    Chunks,
}

/// How long an upstream may take. Long transfers stay alive as long as bytes keep moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect and TLS handshake.
    pub connect: Duration,
    /// From the end of the request (its body sent) to the response's headers.
    pub first_byte: Duration,
    /// Longest pause between two pieces of a response body, and how long an unused pooled
    /// connection is kept.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// `http(s)://host[:port]` with no path, query or credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// Lowercase; an IPv6 address without brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?} must start with https:// or http://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err("credentials do not belong in the endpoint URL".into());
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!("{url:?} must not have a path or query"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Self {
            https,
            host,
            port: authority.port_u16(),
        })
    }

    /// A loopback address or `localhost`: plain HTTP there never leaves the machine.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `host[:port]` as the `Host` header carries it, for `bucket` (virtual-hosted) or none.
    pub fn authority(&self, bucket: Option<&str>) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let host = match bucket {
            Some(b) => format!("{b}.{host}"),
            None => host,
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://s3.eu-west-1.amazonaws.com").unwrap();
        assert!(e.https && !e.is_loopback());
        assert_eq!(e.authority(Some("b")), "b.s3.eu-west-1.amazonaws.com");
        let e = Endpoint::parse("http://127.0.0.1:9000/").unwrap();
        assert!(!e.https && e.is_loopback());
        assert_eq!(e.authority(None), "127.0.0.1:9000");
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert!(e.is_loopback());
        assert_eq!(e.authority(None), "[::1]:9000");
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("https://x/path").is_err());
        assert!(Endpoint::parse("https://user:pw@x").is_err());
        assert!(Endpoint::parse("s3.amazonaws.com").is_err());
    }
}
