//! Executing S3 operations: the context an operation runs in, and the dispatch from a parsed
//! [`S3Op`] to its handler. Authentication and routing have already happened; nothing here
//! looks at signatures. Handlers live by subject: `bucket`, `object`, `multipart`, `copy`,
//! `batch`, `tagging`, `versions`, `cors`; request parsing they share is in `request`,
//! response building in `response`.

use std::sync::Arc;

use http::{HeaderMap, Method, Response};
use sluice_storage::{Backend, TenantId};

use super::router::{BucketOp, ObjectOp};
use super::{S3Error, S3Op, bucket, object};
use crate::body::{RequestBody, ResponseBody};

/// What an operation on a bucket or object runs against: one backend, the store the tenant's
/// route names for the operation's bucket.
#[derive(Debug)]
pub struct OpContext<'a> {
    pub tenant: &'a TenantId,
    pub region: &'a str,
    pub backend: Arc<dyn Backend>,
    /// The gateway and tenant whose routes pick a copy source's backend.
    pub gateway: &'a crate::gateway::Gateway,
    pub tenant_config: &'a crate::config::TenantConfig,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    /// The route forwards operations Sluice does not model (`passthrough: true`).
    pub passthrough: bool,
    /// For log lines about this request.
    pub request_id: &'a str,
    /// The request came over TLS (SSE-C keys are refused otherwise, as S3 refuses them).
    pub tls: bool,
}

impl OpContext<'_> {
    pub(super) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The SSE-C key the request gives for its object.
    pub(super) fn customer_key(&self) -> Result<Option<sluice_storage::CustomerKey>, S3Error> {
        super::customer_key::from_headers(
            self.headers,
            super::customer_key::OBJECT,
            self.tls,
            self.backend().encryption(),
        )
    }
}

/// Runs a bucket or object operation (ListBuckets, which has no bucket, is
/// [`bucket::list_buckets`]).
pub async fn execute(
    op: S3Op,
    ctx: OpContext<'_>,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    match op {
        S3Op::ListBuckets => Err(S3Error::internal(
            "ListBuckets has no bucket context and is answered by bucket::list_buckets",
        )),
        S3Op::Bucket(bucket, op) => bucket_op(&ctx, &bucket, op, body).await,
        S3Op::Unmodelled { bucket, key, what } => {
            super::passthrough::forward(&ctx, &bucket, key.as_ref(), &what, body).await
        }
        S3Op::Object(bucket, key, op) => {
            let (bucket, key) = (&bucket, &key);
            let ctx = &ctx;
            match op {
                ObjectOp::Put => object::put(ctx, bucket, key, body).await,
                ObjectOp::Copy => super::copy::copy_object(ctx, bucket, key).await,
                ObjectOp::Get { range } => object::get(ctx, bucket, key, range, false).await,
                ObjectOp::Head { range } => object::get(ctx, bucket, key, range, true).await,
                ObjectOp::Delete => object::delete(ctx, bucket, key).await,
                ObjectOp::CreateMultipartUpload => super::multipart::create(ctx, bucket, key).await,
                ObjectOp::UploadPart {
                    upload_id,
                    part_number,
                } => {
                    super::multipart::upload_part(ctx, bucket, key, &upload_id, part_number, body)
                        .await
                }
                ObjectOp::UploadPartCopy {
                    upload_id,
                    part_number,
                    source_range,
                } => {
                    super::multipart::upload_part_copy(
                        ctx,
                        bucket,
                        key,
                        &upload_id,
                        part_number,
                        source_range,
                    )
                    .await
                }
                ObjectOp::CompleteMultipartUpload { upload_id } => {
                    super::multipart::complete(ctx, bucket, key, &upload_id, body).await
                }
                ObjectOp::AbortMultipartUpload { upload_id } => {
                    super::multipart::abort(ctx, bucket, key, &upload_id).await
                }
                ObjectOp::ListParts { upload_id } => {
                    super::multipart::list_parts(ctx, bucket, key, &upload_id).await
                }
                ObjectOp::GetTagging => super::tagging::get(ctx, bucket, key).await,
                ObjectOp::PutTagging => super::tagging::put(ctx, bucket, key, body).await,
                ObjectOp::DeleteTagging => super::tagging::delete(ctx, bucket, key).await,
            }
        }
    }
}

async fn bucket_op(
    ctx: &OpContext<'_>,
    bucket: &sluice_storage::BucketName,
    op: BucketOp,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    match op {
        BucketOp::Create => bucket::create(ctx, bucket, body).await,
        BucketOp::Head => bucket::head(ctx, bucket).await,
        BucketOp::Delete => bucket::delete(ctx, bucket).await,
        BucketOp::GetLocation => bucket::location(ctx, bucket).await,
        BucketOp::ListObjectsV1 => bucket::list_objects(ctx, bucket, false).await,
        BucketOp::ListObjectsV2 => bucket::list_objects(ctx, bucket, true).await,
        BucketOp::ListObjectVersions => super::versions::list_object_versions(ctx, bucket).await,
        BucketOp::GetVersioning => super::versions::get_versioning(ctx, bucket).await,
        BucketOp::ListMultipartUploads => super::multipart::list_uploads(ctx, bucket).await,
        BucketOp::DeleteObjects => super::batch::delete_objects(ctx, bucket, body).await,
        BucketOp::GetCors => super::cors::get(ctx, bucket).await,
        BucketOp::PutCors => super::cors::put(ctx, bucket, body).await,
        BucketOp::DeleteCors => super::cors::delete(ctx, bucket).await,
        BucketOp::GetEncryption => super::bucket_encryption::get(ctx, bucket).await,
        BucketOp::PutEncryption => super::bucket_encryption::put(ctx, bucket, body).await,
        BucketOp::DeleteEncryption => super::bucket_encryption::delete(ctx, bucket).await,
    }
}
