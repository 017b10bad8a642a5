//! The XML documents exchanged with an upstream: responses parsed with serde (unknown elements
//! ignored, as providers add their own), request bodies written with escaping.

use serde::Deserialize;

/// `<Error>`: S3's error document.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ErrorDoc {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListAllMyBucketsResult {
    pub buckets: BucketList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BucketList {
    pub bucket: Vec<BucketEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BucketEntry {
    pub name: String,
    pub creation_date: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListBucketResult {
    pub is_truncated: bool,
    pub contents: Vec<ListEntry>,
    pub common_prefixes: Vec<PrefixEntry>,
    pub next_continuation_token: Option<String>,
    pub encoding_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListEntry {
    pub key: String,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PrefixEntry {
    pub prefix: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitiateMultipartUploadResult {
    pub upload_id: String,
}

/// CompleteMultipartUpload, CopyObject and UploadPartCopy answer 200 and may still carry an
/// `<Error>`: the root element tells.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EtagResult {
    #[serde(rename = "ETag")]
    pub etag: String,
    pub last_modified: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListPartsResult {
    pub is_truncated: bool,
    pub part: Vec<PartEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PartEntry {
    pub part_number: u32,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
    #[serde(rename = "ChecksumCRC32")]
    pub checksum_crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C")]
    pub checksum_crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME")]
    pub checksum_crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1")]
    pub checksum_sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256")]
    pub checksum_sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListMultipartUploadsResult {
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
    pub encoding_type: Option<String>,
    pub upload: Vec<UploadEntry>,
    pub common_prefixes: Vec<PrefixEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub initiated: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Tagging {
    pub tag_set: TagSet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TagSet {
    pub tag: Vec<Tag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Parses a document expected to be `root`. Another root name is accepted (moto answers
/// ListParts with `<ListPartsResponse>`), but never `<Error>` where a result was expected.
pub fn parse<T: serde::de::DeserializeOwned>(xml: &[u8], root: &str) -> Result<T, String> {
    let text = std::str::from_utf8(xml).map_err(|_| "response is not UTF-8".to_owned())?;
    let found = root_name(text).unwrap_or_default();
    if found.is_empty() || (found == "Error" && root != "Error") {
        return Err(format!("expected <{root}>, got <{found}>"));
    }
    quick_xml::de::from_str(text).map_err(|e| format!("malformed <{root}>: {e}"))
}

/// The name of the document's root element.
pub fn root_name(text: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// Text escaped for an XML element.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// `<CompleteMultipartUpload>` for `parts` (number, ETag as the client sent it).
pub fn complete_document(parts: &[(u32, String)]) -> String {
    let mut out = String::from("<CompleteMultipartUpload>");
    for (number, etag) in parts {
        let etag = format!("\"{}\"", etag.trim_matches('"'));
        out.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
            escape(&etag)
        ));
    }
    out.push_str("</CompleteMultipartUpload>");
    out
}

/// `<Tagging>` for `tags`.
pub fn tagging_document<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut out = String::from("<Tagging><TagSet>");
    for (k, v) in tags {
        out.push_str(&format!(
            "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
            escape(k),
            escape(v)
        ));
    }
    out.push_str("</TagSet></Tagging>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_results_parse_with_unknown_elements() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>a&amp;b</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>
<CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes>
<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let r: ListBucketResult = parse(xml, "ListBucketResult").unwrap();
        assert!(r.is_truncated);
        assert_eq!(r.contents[0].key, "a&b");
        assert_eq!(r.contents[0].etag, "\"abc\"");
        assert_eq!(r.contents[0].size, 3);
        assert_eq!(r.common_prefixes[0].prefix, "d/");
        assert_eq!(r.next_continuation_token.as_deref(), Some("tok"));
        let e =
            parse::<ListBucketResult>(b"<Error><Code>NoSuchKey</Code></Error>", "ListBucketResult");
        assert!(e.unwrap_err().contains("<Error>"));
    }

    #[test]
    fn documents_escape_their_text() {
        let doc = complete_document(&[(1, "\"e<1>\"".into())]);
        assert!(doc.contains("<ETag>&quot;e&lt;1&gt;&quot;</ETag>"), "{doc}");
    }
}
