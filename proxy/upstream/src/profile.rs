//! Provider profiles: what each S3 implementation accepts, so that any client works against any
//! provider unchanged. Today's AWS SDKs send CRC32 checksums and aws-chunked bodies with trailers
//! by default; many providers refuse those (boto3 #4392/#4409, storj gateway-st #89, dotnet-monitor
//! #9768, fleet #47850, milvus #49979). Sluice decodes and verifies the client's framing itself
//! and re-frames each body the way the profile accepts. The table is in `docs/UPSTREAMS.md`.

use crate::Addressing;

/// An S3 implementation Sluice knows the rules of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Aws,
    Gcs,
    Minio,
    Ceph,
    Wasabi,
    B2,
    R2,
    /// Anything else: the most conservative rules.
    Generic,
}

/// What a provider accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// Addressing used unless the backend's config says otherwise.
    pub addressing: Addressing,
    /// The region every request is signed for regardless of the endpoint (GCS, R2: `auto`).
    pub fixed_region: Option<&'static str>,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD` on a body.
    pub unsigned_payload: bool,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (a signed aws-chunked body).
    pub signed_chunks: bool,
    /// `x-amz-checksum-*` headers (and `x-amz-sdk-checksum-algorithm`) on PutObject/UploadPart.
    pub checksum_headers: bool,
    /// CreateMultipartUpload must carry `Content-Length: 0`.
    pub length_on_create_upload: bool,
    /// A single-part object's ETag is the MD5 of its bytes.
    pub md5_etags: bool,
    /// Object tagging (`?tagging`, `x-amz-tagging`).
    pub tagging: bool,
}

impl Profile {
    pub const ALL: [Profile; 8] = [
        Self::Aws,
        Self::Gcs,
        Self::Minio,
        Self::Ceph,
        Self::Wasabi,
        Self::B2,
        Self::R2,
        Self::Generic,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcs => "gcs",
            Self::Minio => "minio",
            Self::Ceph => "ceph",
            Self::Wasabi => "wasabi",
            Self::B2 => "b2",
            Self::R2 => "r2",
            Self::Generic => "generic",
        }
    }

    pub fn quirks(self) -> Quirks {
        let conservative = Quirks {
            addressing: Addressing::Path,
            fixed_region: None,
            unsigned_payload: true,
            signed_chunks: false,
            checksum_headers: false,
            length_on_create_upload: false,
            md5_etags: true,
            tagging: true,
        };
        match self {
            Self::Aws => Quirks {
                addressing: Addressing::Virtual,
                signed_chunks: true,
                checksum_headers: true,
                ..conservative
            },
            Self::Minio => Quirks {
                signed_chunks: true,
                checksum_headers: true,
                ..conservative
            },
            Self::Gcs => Quirks {
                addressing: Addressing::Virtual,
                fixed_region: Some("auto"),
                length_on_create_upload: true,
                md5_etags: false,
                tagging: false,
                ..conservative
            },
            Self::R2 => Quirks {
                fixed_region: Some("auto"),
                tagging: false,
                ..conservative
            },
            Self::B2 => Quirks {
                addressing: Addressing::Virtual,
                ..conservative
            },
            Self::Ceph | Self::Wasabi | Self::Generic => conservative,
        }
    }
}
