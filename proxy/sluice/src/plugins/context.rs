//! What a plugin is told about a request (`request-context` in `wit/plugin.wit`), built from
//! the authenticated request, and the decision cache's key: the fields a plugin said its
//! decision depends on, taken from the same request without building the whole context.

use std::net::SocketAddr;

use http::request::Parts;
use percent_encoding::percent_decode_str;
use sluice_plugin_host::context::{is_secret_header, is_secret_parameter};
use sluice_plugin_host::types::{
    AuthMethod, ByteRange, ContextFields, EncryptionPolicy, OpKind, PayloadProtection, Route,
    TlsVersion,
};
use sluice_plugin_host::{Operation, RequestContext};
use sluice_sigv4::PayloadMode;
use sluice_storage::ReadRange;

use crate::s3::router::{BucketOp, ObjectOp, S3Op};

/// The authenticated request, borrowed: everything a context or a cache key is made from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// For log lines only; never part of a context or a key.
    pub request_id: &'a str,
    pub tenant: &'a str,
    pub access_key_id: &'a str,
    pub op: &'a S3Op,
    pub parts: &'a Parts,
    pub peer: SocketAddr,
    pub tls: Option<TlsVersion>,
    pub presigned: bool,
    pub payload: &'a PayloadMode,
    pub has_body: bool,
    pub encryption: sluice_storage::Policy,
}

impl Facts<'_> {
    /// The context for a plugin call, with the route in effect so far.
    pub fn context(&self, route: Option<&Route>) -> RequestContext {
        let query = self.query_pairs().collect();
        RequestContext {
            tenant: self.tenant.to_owned(),
            access_key_id: self.access_key_id.to_owned(),
            operation: self.operation(),
            method: self.parts.method.clone(),
            query,
            // Values share the request's buffers: cloning the map copies none. The secret ones
            // stay in it, never shown (`sluice_plugin_host::context::SECRET_HEADERS`).
            headers: self.parts.headers.clone(),
            source_address: self.peer,
            tls: self.tls,
            auth_method: if self.presigned {
                AuthMethod::PresignedUrl
            } else {
                AuthMethod::Header
            },
            payload: self.payload_protection(),
            content_length: self.content_length(),
            configured_route: route.cloned(),
            encryption: match self.encryption {
                sluice_storage::Policy::Off => EncryptionPolicy::Off,
                sluice_storage::Policy::On => EncryptionPolicy::On,
                sluice_storage::Policy::Required => EncryptionPolicy::Required,
            },
        }
    }

    /// The query's pairs as a plugin sees them: decoded, without the secret ones (a presigned
    /// URL's signature, a security token).
    fn query_pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        self.parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(move |p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .filter(|(k, _)| !is_secret_parameter(k))
    }

    fn payload_protection(&self) -> PayloadProtection {
        if !self.has_body {
            return PayloadProtection::None;
        }
        match self.payload {
            PayloadMode::Signed(_) => PayloadProtection::Signed,
            PayloadMode::Unsigned => PayloadProtection::Unsigned,
            PayloadMode::StreamingSigned => PayloadProtection::StreamingSigned,
            PayloadMode::StreamingSignedTrailer => PayloadProtection::StreamingSignedTrailer,
            PayloadMode::StreamingUnsignedTrailer => PayloadProtection::StreamingUnsignedTrailer,
        }
    }

    /// The declared body length: the decoded length of an aws-chunked body.
    fn content_length(&self) -> Option<u64> {
        let header = |name: &str| {
            self.parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        };
        if self.payload.is_chunked() {
            header("x-amz-decoded-content-length")
        } else {
            header("content-length")
        }
    }

    fn operation(&self) -> Operation {
        let (bucket, key) = match self.op {
            S3Op::ListBuckets => (None, None),
            S3Op::Bucket(b, _) => (Some(b.as_str().to_owned()), None),
            S3Op::Object(b, k, _) => (Some(b.as_str().to_owned()), Some(k.as_str().to_owned())),
            S3Op::Unmodelled { bucket, key, .. } => (
                Some(bucket.as_str().to_owned()),
                key.as_ref().map(|k| k.as_str().to_owned()),
            ),
        };
        let (part_number, upload_id, range) = match self.op {
            S3Op::Object(_, _, op) => match op {
                ObjectOp::Get { range } | ObjectOp::Head { range } => match range {
                    Some(ReadRange::Part(n)) => (Some(*n), None, None),
                    other => (None, None, other.as_ref().and_then(byte_range)),
                },
                ObjectOp::UploadPart {
                    upload_id,
                    part_number,
                } => (Some(*part_number), Some(upload_id.clone()), None),
                ObjectOp::UploadPartCopy {
                    upload_id,
                    part_number,
                    source_range,
                } => (
                    Some(*part_number),
                    Some(upload_id.clone()),
                    source_range.as_ref().and_then(byte_range),
                ),
                ObjectOp::CompleteMultipartUpload { upload_id }
                | ObjectOp::AbortMultipartUpload { upload_id }
                | ObjectOp::ListParts { upload_id } => (None, Some(upload_id.clone()), None),
                _ => (None, None, None),
            },
            _ => (None, None, None),
        };
        let copies = matches!(
            self.op,
            S3Op::Object(_, _, ObjectOp::Copy | ObjectOp::UploadPartCopy { .. })
        );
        let copy_source = copies
            .then(|| self.parts.headers.get("x-amz-copy-source")?.to_str().ok())
            .flatten()
            .and_then(|v| crate::s3::copy::parse_copy_source(v).ok())
            .map(|(b, k)| (b.as_str().to_owned(), k.as_str().to_owned()));
        Operation {
            kind: op_kind(self.op),
            name: self.op.name().to_owned(),
            bucket,
            key,
            part_number,
            upload_id,
            range,
            copy_source,
        }
    }

    /// Writes into `key` (replacing what it held) the decision cache's key for a call: the call
    /// (plugin generation and export), the tenant (decisions are never shared between
    /// tenants), the route in effect, and the fields the plugin named, each length-prefixed so
    /// that no two requests that differ in them collide.
    pub fn write_cache_key(
        &self,
        key: &mut Vec<u8>,
        call: u64,
        route: Option<&Route>,
        fields: ContextFields,
    ) {
        key.clear();
        key.extend_from_slice(&call.to_le_bytes());
        key.extend_from_slice(&fields.as_array()[0].to_le_bytes());
        let mut put = |bytes: &[u8]| {
            key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            key.extend_from_slice(bytes);
        };
        put(self.tenant.as_bytes());
        match route {
            None => put(b"\0"),
            Some(r) => {
                put(r.backend.as_bytes());
                put(r.target_bucket.as_deref().unwrap_or("\0").as_bytes());
                put(r.key_prefix.as_deref().unwrap_or("\0").as_bytes());
            }
        }
        if fields.contains(ContextFields::ACCESS_KEY_ID) {
            put(self.access_key_id.as_bytes());
        }
        if fields.contains(ContextFields::OPERATION_KIND) {
            put(self.op.name().as_bytes());
        }
        if fields.contains(ContextFields::BUCKET) {
            put(self.op.bucket().map_or(b"\0", |b| b.as_str().as_bytes()));
        }
        if fields.contains(ContextFields::KEY) {
            let key = match self.op {
                S3Op::Object(_, k, _) | S3Op::Unmodelled { key: Some(k), .. } => k.as_str(),
                _ => "\0",
            };
            put(key.as_bytes());
        }
        if fields.contains(ContextFields::METHOD) {
            put(self.parts.method.as_str().as_bytes());
        }
        if fields.contains(ContextFields::SOURCE_ADDRESS) {
            match self.peer.ip() {
                std::net::IpAddr::V4(ip) => put(&ip.octets()),
                std::net::IpAddr::V6(ip) => put(&ip.octets()),
            }
        }
        if fields.contains(ContextFields::TLS) {
            put(&[self.tls.map_or(0, |v| v as u8 + 1)]);
        }
        if fields.contains(ContextFields::AUTH) {
            put(&[self.presigned as u8, self.payload_protection() as u8]);
        }
        if fields.contains(ContextFields::HEADERS) {
            for (name, value) in &self.parts.headers {
                if !is_secret_header(name) {
                    put(name.as_str().as_bytes());
                    put(value.as_bytes());
                }
            }
        }
        if fields.contains(ContextFields::QUERY) {
            // The pairs the plugin sees: without a presigned URL's signature, which differs
            // from one URL to the next and is never what a decision depends on.
            for (name, value) in self.query_pairs() {
                put(name.as_bytes());
                put(value.as_bytes());
            }
        }
        if fields.contains(ContextFields::CONTENT_LENGTH) {
            put(&self.content_length().map_or(u64::MAX, |n| n).to_le_bytes());
        }
    }
}

fn byte_range(range: &ReadRange) -> Option<ByteRange> {
    match *range {
        ReadRange::From { first, last } => Some(ByteRange::Span((first, last))),
        ReadRange::Exact { first, last } => Some(ByteRange::Span((first, Some(last)))),
        ReadRange::Suffix(n) => Some(ByteRange::Suffix(n)),
        ReadRange::Part(_) => None,
    }
}

fn op_kind(op: &S3Op) -> OpKind {
    match op {
        S3Op::ListBuckets => OpKind::ListBuckets,
        S3Op::Unmodelled { .. } => OpKind::Other,
        S3Op::Bucket(_, op) => match op {
            BucketOp::Create => OpKind::CreateBucket,
            BucketOp::Head => OpKind::HeadBucket,
            BucketOp::Delete => OpKind::DeleteBucket,
            BucketOp::GetLocation => OpKind::GetBucketLocation,
            BucketOp::ListObjectsV1 => OpKind::ListObjects,
            BucketOp::ListObjectsV2 => OpKind::ListObjectsV2,
            BucketOp::ListObjectVersions => OpKind::ListObjectVersions,
            BucketOp::ListMultipartUploads => OpKind::ListMultipartUploads,
            BucketOp::DeleteObjects => OpKind::DeleteObjects,
            BucketOp::GetVersioning => OpKind::GetBucketVersioning,
            BucketOp::GetCors => OpKind::GetBucketCors,
            BucketOp::PutCors => OpKind::PutBucketCors,
            BucketOp::DeleteCors => OpKind::DeleteBucketCors,
            BucketOp::GetEncryption => OpKind::GetBucketEncryption,
            BucketOp::PutEncryption => OpKind::PutBucketEncryption,
            BucketOp::DeleteEncryption => OpKind::DeleteBucketEncryption,
        },
        S3Op::Object(_, _, op) => match op {
            ObjectOp::Put => OpKind::PutObject,
            ObjectOp::Copy => OpKind::CopyObject,
            ObjectOp::Get { .. } => OpKind::GetObject,
            ObjectOp::Head { .. } => OpKind::HeadObject,
            ObjectOp::Delete => OpKind::DeleteObject,
            ObjectOp::CreateMultipartUpload => OpKind::CreateMultipartUpload,
            ObjectOp::UploadPart { .. } => OpKind::UploadPart,
            ObjectOp::UploadPartCopy { .. } => OpKind::UploadPartCopy,
            ObjectOp::CompleteMultipartUpload { .. } => OpKind::CompleteMultipartUpload,
            ObjectOp::AbortMultipartUpload { .. } => OpKind::AbortMultipartUpload,
            ObjectOp::ListParts { .. } => OpKind::ListParts,
            ObjectOp::GetTagging => OpKind::GetObjectTagging,
            ObjectOp::PutTagging => OpKind::PutObjectTagging,
            ObjectOp::DeleteTagging => OpKind::DeleteObjectTagging,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::router::ObjectOp;
    use sluice_storage::{BucketName, ObjectKey};

    fn get(bucket: &str, key: &str) -> S3Op {
        S3Op::Object(
            BucketName::parse(bucket).unwrap(),
            ObjectKey::parse(key).unwrap(),
            ObjectOp::Get { range: None },
        )
    }

    /// A decision is reused only for requests equal in the fields it named, never across
    /// tenants or routes in effect; the query a plugin sees holds no signature (secret headers
    /// are the plugin host's to hide: `example_plugins.rs` holds it to that).
    #[test]
    fn cache_keys_follow_the_named_fields_and_contexts_hold_no_signature() {
        let (parts, ()) = http::Request::get("/photos/k1?X-Amz-Signature=abc&list-type=2")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=...")
            .header("x-amz-server-side-encryption-customer-key", "c2VjcmV0")
            .header("x-approved-by", "alice")
            .body(())
            .unwrap()
            .into_parts();
        let payload = PayloadMode::Unsigned;
        let (a, b) = (get("photos", "k1"), get("photos", "k2"));
        let facts = |tenant, op| Facts {
            request_id: "r",
            tenant,
            access_key_id: "AKID",
            op,
            parts: &parts,
            peer: "127.0.0.1:1000".parse().unwrap(),
            tls: None,
            presigned: false,
            payload: &payload,
            has_body: false,
            encryption: sluice_storage::Policy::Off,
        };
        let bucket = ContextFields::BUCKET;
        let cache_key = |t, op, call, route, fields| {
            let mut key = Vec::new();
            facts(t, op).write_cache_key(&mut key, call, route, fields);
            key
        };
        let key = |t, op, fields| cache_key(t, op, 7, None, fields);
        // Another key, same bucket: the same decision if only the bucket matters.
        assert_eq!(key("t1", &a, bucket), key("t1", &b, bucket));
        assert_ne!(
            key("t1", &a, bucket | ContextFields::KEY),
            key("t1", &b, bucket | ContextFields::KEY)
        );
        // Never across tenants, calls (plugin generation, export) or routes in effect.
        assert_ne!(key("t1", &a, bucket), key("t2", &a, bucket));
        assert_ne!(cache_key("t1", &a, 8, None, bucket), key("t1", &a, bucket));
        let route = Route {
            backend: "eu".into(),
            target_bucket: None,
            key_prefix: None,
        };
        assert_ne!(
            cache_key("t1", &a, 7, Some(&route), bucket),
            key("t1", &a, bucket)
        );

        // Secret headers are never part of a key: a decision that depends on the headers is
        // the same whoever signed the request.
        let headers = ContextFields::HEADERS;
        let (other, ()) = http::Request::get("/photos/k1")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=other")
            .header("x-approved-by", "alice")
            .body(())
            .unwrap()
            .into_parts();
        let mut signed_by_other = Vec::new();
        Facts {
            parts: &other,
            ..facts("t1", &a)
        }
        .write_cache_key(&mut signed_by_other, 7, None, headers);
        assert_eq!(signed_by_other, key("t1", &a, headers));

        // Nor is a presigned URL's signature: a decision that depends on the query is the same
        // for every URL of the same request; another parameter is another request.
        let query = ContextFields::QUERY;
        let with_query = |uri: &str| {
            let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
            let mut key = Vec::new();
            Facts {
                parts: &parts,
                ..facts("t1", &a)
            }
            .write_cache_key(&mut key, 7, None, query);
            key
        };
        assert_eq!(
            with_query("/photos/k1?X-Amz-Signature=def&list-type=2"),
            key("t1", &a, query)
        );
        assert_ne!(
            with_query("/photos/k1?X-Amz-Signature=abc&list-type=1"),
            key("t1", &a, query)
        );

        let ctx = facts("t1", &a).context(None);
        assert_eq!(ctx.query, [("list-type".to_owned(), "2".to_owned())]);
        assert_eq!(ctx.operation.kind, OpKind::GetObject);
        assert_eq!(ctx.operation.key.as_deref(), Some("k1"));
    }
}
