//! ListObjects (v1 and v2): query parameters in, XML out. Continuation tokens are the store's,
//! opaque here as to clients: issued by the store with a page, handed back to it unchanged.

use sluice_storage::{ListPage, ListRequest, ObjectMeta};

use super::S3Error;
use super::router::query_get;
use super::xml::XmlWriter;

pub const MAX_KEYS: usize = 1000;

#[derive(Debug)]
pub struct ListParams {
    pub request: ListRequest,
    pub url_encode: bool,
    /// v2: the client's continuation token, echoed back.
    pub continuation_token: Option<String>,
    /// v2: `start-after`, or v1: `marker`, echoed back.
    pub start_after: Option<String>,
    pub fetch_owner: bool,
}

pub fn parse_params(query: Option<&str>, v2: bool) -> Result<ListParams, S3Error> {
    let max_keys = max_param(query, "max-keys", 0, MAX_KEYS)?;
    let url_encode = url_encoding(query)?;
    let start_after =
        query_get(query, if v2 { "start-after" } else { "marker" }).filter(|s| !s.is_empty());
    let continuation_token = if v2 {
        query_get(query, "continuation-token")
    } else {
        None
    };
    Ok(ListParams {
        request: ListRequest {
            prefix: query_get(query, "prefix").unwrap_or_default(),
            delimiter: query_get(query, "delimiter").filter(|d| !d.is_empty()),
            start_after: start_after.clone(),
            continuation: continuation_token.clone(),
            max_keys,
        },
        url_encode,
        continuation_token,
        start_after,
        fetch_owner: query_get(query, "fetch-owner").as_deref() == Some("true"),
    })
}

pub fn render(
    bucket: &str,
    params: &ListParams,
    page: &ListPage,
    v2: bool,
    owner: &str,
) -> Vec<u8> {
    let enc = |s: &str| encode_if(params.url_encode, s);
    let req = &params.request;
    let mut x = XmlWriter::new();
    x.root("ListBucketResult");
    x.element("Name", bucket);
    x.element("Prefix", &enc(&req.prefix));
    if v2 {
        if let Some(t) = &params.continuation_token {
            x.element("ContinuationToken", t);
        }
        if let Some(s) = &params.start_after {
            x.element("StartAfter", &enc(s));
        }
        x.element(
            "KeyCount",
            &(page.objects.len() + page.common_prefixes.len()).to_string(),
        );
    } else {
        x.element("Marker", &enc(params.start_after.as_deref().unwrap_or("")));
    }
    x.element("MaxKeys", &req.max_keys.to_string());
    if let Some(d) = &req.delimiter {
        x.element("Delimiter", &enc(d));
    }
    if params.url_encode {
        x.element("EncodingType", "url");
    }
    x.element(
        "IsTruncated",
        if page.next_token.is_some() {
            "true"
        } else {
            "false"
        },
    );
    if let Some(token) = &page.next_token {
        if v2 {
            x.element("NextContinuationToken", token);
        } else if req.delimiter.is_some()
            && let Some(last) = page.last_entry()
        {
            x.element("NextMarker", &enc(last));
        }
    }
    for (key, meta) in &page.objects {
        x.open("Contents");
        x.element("Key", &enc(key.as_str()));
        x.element("LastModified", &iso8601(meta));
        x.element("ETag", &format!("\"{}\"", meta.etag));
        x.element("Size", &meta.size.to_string());
        if !v2 || params.fetch_owner {
            x.open("Owner");
            x.element("ID", owner);
            x.element("DisplayName", owner);
            x.close("Owner");
        }
        x.element("StorageClass", "STANDARD");
        x.close("Contents");
    }
    for prefix in &page.common_prefixes {
        x.open("CommonPrefixes");
        x.element("Prefix", &enc(prefix));
        x.close("CommonPrefixes");
    }
    x.close("ListBucketResult");
    x.finish()
}

/// A page-size parameter (`max-keys`, `max-parts`, `max-uploads`): an integer of at least
/// `min`, capped at `cap`, `cap` when absent.
pub fn max_param(
    query: Option<&str>,
    name: &str,
    min: usize,
    cap: usize,
) -> Result<usize, S3Error> {
    match query_get(query, name) {
        None => Ok(cap),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= min)
            .map(|n| n.min(cap))
            .ok_or_else(|| {
                S3Error::invalid_argument(format!(
                    "Provided {name} not an integer or within integer range"
                ))
            }),
    }
}

/// Whether the listing asked for `encoding-type=url` (any other value is an error).
pub fn url_encoding(query: Option<&str>) -> Result<bool, S3Error> {
    match query_get(query, "encoding-type").as_deref() {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(_) => Err(S3Error::invalid_argument(
            "Invalid Encoding Method specified in Request",
        )),
    }
}

/// A key or prefix as a listing returns it: URL-encoded when the client asked.
pub fn encode_if(url: bool, s: &str) -> String {
    if url {
        sluice_sigv4::uri_encode(s.as_bytes(), false)
    } else {
        s.to_owned()
    }
}

pub fn iso8601(meta: &ObjectMeta) -> String {
    iso8601_ms(meta.last_modified_ms)
}

/// `2009-10-12T17:50:30.000Z`, the timestamp form S3 uses in XML.
pub fn iso8601_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
