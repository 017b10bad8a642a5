//! Target `request_target`: host and path addressing (`router::target`), routing to an
//! operation (`router::route`) and ListObjects parameters (`list::parse_params`).
//!
//! Spec: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html>.

use http::{HeaderMap, Method};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use sluice::s3::list::{MAX_KEYS, parse_params};
use sluice::s3::router::{route, target};
use sluice::s3::{S3Op, Target};

use crate::percent;

const BASE_DOMAINS: [&str; 2] = ["s3.localhost", "s3.example.com"];

/// Host and path to bucket and key: virtual-hosted style when the host (lowercased, port and
/// trailing dots removed) is `<bucket>.<base domain>`, else the first path segment. The path is
/// percent-decoded once and must be UTF-8.
fn reference_target(host: Option<&str>, raw_path: &str) -> Option<Target> {
    let path = String::from_utf8(percent::decode(raw_path)).ok()?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let host = host.map(|h| {
        let without_port = match h.rsplit_once(':') {
            Some((name, port))
                if !h.starts_with('[') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ if h.starts_with('[') => h.split_once(']').map_or(h, |(v6, _)| &h[..v6.len() + 1]),
            _ => h,
        };
        without_port.trim_end_matches('.').to_ascii_lowercase()
    });
    let virtual_bucket = host.as_deref().and_then(|h| {
        BASE_DOMAINS.iter().find_map(|d| {
            h.strip_suffix(d)
                .and_then(|b| b.strip_suffix('.'))
                .filter(|b| !b.is_empty())
        })
    });
    Some(match virtual_bucket {
        Some(bucket) => Target {
            bucket: Some(bucket.to_owned()),
            key: non_empty(path),
        },
        None => match path.split_once('/') {
            Some((bucket, key)) => Target {
                bucket: non_empty(bucket),
                key: non_empty(key),
            },
            None => Target {
                bucket: non_empty(path),
                key: None,
            },
        },
    })
}

/// Input: lines Host (`-` = absent), raw path, raw query (`-` = absent), method.
///
/// `target` must agree with the reference; `Target::resource` must contain no control
/// character; `route` must not panic and any operation it returns names the target's bucket
/// (and is `ListBuckets` exactly when there is none); `parse_params` must keep `max-keys`
/// within 0..=1000.
pub fn request_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(4, '\n');
    let host = lines.next().filter(|h| *h != "-");
    let path = lines.next().unwrap_or("/");
    let query = lines.next().filter(|q| *q != "-");
    let method = lines
        .next()
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(Method::GET);
    let domains: Vec<String> = BASE_DOMAINS.iter().map(|d| d.to_string()).collect();
    let got = target(host, path, &domains);
    assert_eq!(
        got.as_ref().ok(),
        reference_target(host, path).as_ref(),
        "target({host:?}, {path:?})"
    );
    let Ok(t) = got else {
        return;
    };
    assert!(!t.resource().chars().any(char::is_control));
    if let Ok(op) = route(&method, &t, query, &HeaderMap::new()) {
        match (&op, &t.bucket) {
            (S3Op::ListBuckets, None) => {}
            (S3Op::ListBuckets, Some(_)) => panic!("ListBuckets for bucket target {t:?}"),
            (_, bucket) => assert_eq!(op.bucket().map(|b| b.as_str()), bucket.as_deref()),
        }
    }
    for v2 in [false, true] {
        if let Ok(params) = parse_params(query, v2) {
            assert!(params.request.max_keys <= MAX_KEYS);
        }
    }
}

/// Requests in both addressing styles with ports, trailing dots, case, encoded slashes,
/// invalid UTF-8 escapes and sub-resource queries.
pub fn gen_request_target(rng: &mut StdRng) -> Vec<u8> {
    let host = [
        "-",
        "s3.localhost",
        "photos.s3.localhost",
        "Photos.S3.Localhost.:9000",
        ".s3.localhost",
        "a.b.s3.example.com",
        "[::1]:9000",
        "127.0.0.1:9000",
        "s3.localhost:x",
        "xs3.localhost",
    ]
    .choose(rng)
    .unwrap();
    let path = [
        "/",
        "",
        "/photos",
        "/photos/",
        "/photos/cat.jpg",
        "/photos/a%2Fb",
        "//key",
        "/b/%ff",
        "/b/%e1%88%b4",
        "/Bad_Bucket/k",
        "/b/%00",
        "/b/..",
        "/b/k%",
    ]
    .choose(rng)
    .unwrap();
    let query = [
        "-",
        "",
        "versionId=null",
        "versionId=3",
        "uploads",
        "uploadId=u&partNumber=1",
        "tagging",
        "cors",
        "delete",
        "list-type=2&max-keys=5000",
        "max-keys=-1",
        "max-keys=abc",
        "continuation-token=%%%",
        "continuation-token=YQ",
        "acl",
        "encoding-type=url",
        "encoding-type=zip",
    ]
    .choose(rng)
    .unwrap();
    let method = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"]
        .choose(rng)
        .unwrap();
    let _ = rng.random::<u8>();
    format!("{host}\n{path}\n{query}\n{method}").into_bytes()
}
