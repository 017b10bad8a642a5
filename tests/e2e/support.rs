//! Shared helpers: an aws-sdk-s3 client for a running Sluice, error-code extraction, hashing.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use sha2::{Digest, Sha256};
use sluice_sigv4::{AmzDate, CanonicalSettings, SecretKey, SigningParams};
use sluice_tests::{ACCESS_ID, REGION, Sluice};

pub fn client(s: &Sluice) -> Client {
    client_with(s, ACCESS_ID, &s.secret)
}

/// An SDK client for a TLS listener, trusting only the server's self-signed certificate.
pub fn tls_client(s: &Sluice) -> Client {
    use aws_smithy_http_client::tls;
    let pem = std::fs::read(s.cert_path()).unwrap();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
                .build()
                .unwrap(),
        )
        .build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .http_client(http)
        .endpoint_url(format!("https://localhost:{}", s.addr.port()))
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            ACCESS_ID,
            &s.secret,
            None,
            None,
            "sluice-e2e",
        ))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

pub fn client_with(s: &Sluice, access_id: &str, secret: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .endpoint_url(&s.endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            access_id,
            secret,
            None,
            None,
            "sluice-e2e",
        ))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// The S3 error code of a failed SDK call (`NotFound` etc. for bodiless HEAD errors).
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    err.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<no code>")
        .to_owned()
}

pub fn http_status<E, R: HttpStatus>(err: &SdkError<E, R>) -> u16 {
    err.raw_response().map(|r| r.status_code()).unwrap_or(0)
}

pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Signing parameters for S3 in the test region.
pub fn signing_params<'a>(
    access_key_id: &'a str,
    secret: &'a SecretKey,
    date: &'a AmzDate,
) -> SigningParams<'a> {
    SigningParams {
        access_key_id,
        secret,
        session_token: None,
        region: REGION,
        service: "s3",
        date,
        settings: CanonicalSettings::S3,
    }
}

pub fn now() -> AmzDate {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    AmzDate::from_unix(unix as i64)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A unique bucket name for one test.
pub fn bucket(prefix: &str) -> String {
    let n: u32 = rand::random();
    format!("{prefix}-{n:08x}")
}

pub async fn make_bucket(c: &Client, prefix: &str) -> String {
    let b = bucket(prefix);
    c.create_bucket()
        .bucket(&b)
        .send()
        .await
        .expect("create bucket");
    b
}

pub async fn get_bytes(c: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get object");
    out.body
        .collect()
        .await
        .expect("read body")
        .into_bytes()
        .to_vec()
}
