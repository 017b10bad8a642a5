//! Bucket basics: ListBuckets (the tenant's namespace across its routes), CreateBucket,
//! HeadBucket, DeleteBucket, GetBucketLocation, ListObjects v1 and v2.

use http::{Response, StatusCode, header};
use sluice_storage::BucketName;

use super::S3Error;
use super::conditional::{Checked, refuse_unsupported};
use super::list::{self, iso8601_ms};
use super::ops::OpContext;
use super::request::MAX_XML_BODY;
use super::response::{empty, no_content, owner, xml_response};
use super::xml::{XmlWriter, parse_create_bucket};
use crate::body::{RequestBody, ResponseBody, full_body};
use crate::config::TenantConfig;
use crate::gateway::Gateway;

/// ListBuckets: every bucket of the tenant's, from the backend its route names.
/// ListBuckets. `plugin_route` gives the backend the tenant's plugins send a bucket to, if they
/// choose one.
pub async fn list_buckets(
    gateway: &Gateway,
    tenant: &TenantConfig,
    plugin_route: &(dyn Fn(&BucketName) -> Option<String> + Sync),
) -> Result<Response<ResponseBody>, S3Error> {
    let mut buckets = Vec::new();
    for (backend, route) in gateway.tenant_backends(tenant) {
        // A bucket is listed only by the backend its route names now (a plugin's, else the
        // configured one), so every listed bucket answers HeadBucket, and a name present in
        // two backends appears once.
        let listed = backend.list_buckets(&tenant.id).await?;
        buckets.extend(listed.into_iter().filter(|b| {
            let Ok(name) = BucketName::parse(&b.name) else {
                return false;
            };
            match plugin_route(&name) {
                Some(chosen) => chosen == route.backend && !route.renames(),
                None => gateway
                    .backend_for(tenant, &name)
                    .is_some_and(|r| std::sync::Arc::ptr_eq(r, backend)),
            }
        }));
    }
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    buckets.dedup_by(|a, b| a.name == b.name);
    let mut x = XmlWriter::new();
    x.root("ListAllMyBucketsResult");
    owner(&mut x, tenant.id.as_str());
    x.open("Buckets");
    for b in &buckets {
        x.open("Bucket");
        x.element("Name", &b.name);
        x.element("CreationDate", &iso8601_ms(b.created_ms));
        x.close("Bucket");
    }
    x.close("Buckets");
    x.close("ListAllMyBucketsResult");
    Ok(xml_response(x.finish()))
}

pub(super) async fn create(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    body: RequestBody,
) -> Result<Response<ResponseBody>, S3Error> {
    refuse_unsupported(ctx.headers, Checked::CreateBucket)?;
    let xml = body.collect_bounded(MAX_XML_BODY).await?;
    let location = parse_create_bucket(&xml).map_err(|_| S3Error::malformed_xml())?;
    if let Some(location) = location.filter(|l| !l.is_empty())
        && location != ctx.region
    {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "IllegalLocationConstraintException",
            format!(
                "The {location} location constraint is incompatible for the region specific endpoint this request was sent to."
            ),
        ));
    }
    ctx.backend().create_bucket(ctx.tenant, bucket).await?;
    Ok(empty(StatusCode::OK)
        .header(header::LOCATION, format!("/{bucket}"))
        .body(full_body(Vec::new()))
        .unwrap())
}

pub(super) async fn head(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    ctx.backend().head_bucket(ctx.tenant, bucket).await?;
    Ok(empty(StatusCode::OK)
        .header("x-amz-bucket-region", ctx.region)
        .body(full_body(Vec::new()))
        .unwrap())
}

pub(super) async fn delete(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    ctx.backend().delete_bucket(ctx.tenant, bucket).await?;
    Ok(no_content())
}

pub(super) async fn location(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>, S3Error> {
    ctx.backend().head_bucket(ctx.tenant, bucket).await?;
    let mut x = XmlWriter::new();
    x.root("LocationConstraint");
    // us-east-1 is reported as an empty constraint, as S3 does.
    if ctx.region != "us-east-1" {
        x.element_text(ctx.region);
    }
    x.close("LocationConstraint");
    Ok(xml_response(x.finish()))
}

pub(super) async fn list_objects(
    ctx: &OpContext<'_>,
    bucket: &BucketName,
    v2: bool,
) -> Result<Response<ResponseBody>, S3Error> {
    let params = list::parse_params(ctx.query, v2)?;
    let page = if params.request.max_keys == 0 {
        ctx.backend().head_bucket(ctx.tenant, bucket).await?;
        Default::default()
    } else {
        ctx.backend()
            .list_objects(ctx.tenant, bucket, params.request.clone())
            .await?
    };
    Ok(xml_response(list::render(
        bucket.as_str(),
        &params,
        &page,
        v2,
        ctx.tenant.as_str(),
    )))
}
