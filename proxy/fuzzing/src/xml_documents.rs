//! Target `xml_documents`: the bounded tree parser, the writer → parser round trip, and every
//! request-body parser, each against a reference reading of the parsed tree written here from
//! S3's API reference.
//!
//! Specs: <https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html>,
//! `API_PutObjectTagging.html`, `API_CompleteMultipartUpload.html`, `API_PutBucketCors.html`,
//! `API_CreateBucket.html` (same directory).

use std::collections::BTreeMap;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use sluice::s3::xml::{XmlNode, XmlWriter, parse_create_bucket, parse_tree};
use sluice::s3::{batch, cors, multipart, tagging};

use crate::Recipe;

/// `parse_tree`'s documented bounds.
const MAX_DEPTH: usize = 16;
const MAX_ELEMENTS: usize = 40_000;

/// Element names the recipe builder draws from: every name the parsers look for, plus a few
/// others.
const NAMES: &[&str] = &[
    "Delete",
    "Object",
    "Key",
    "VersionId",
    "Quiet",
    "Tagging",
    "TagSet",
    "Tag",
    "Value",
    "CompleteMultipartUpload",
    "Part",
    "PartNumber",
    "ETag",
    "CORSConfiguration",
    "CORSRule",
    "ID",
    "AllowedOrigin",
    "AllowedMethod",
    "AllowedHeader",
    "ExposeHeader",
    "MaxAgeSeconds",
    "CreateBucketConfiguration",
    "LocationConstraint",
    "a",
    "x.y-z_1",
];

/// Texts the recipe builder draws from: values with meaning to some parser, markup that must
/// be escaped, control characters, whitespace and non-ASCII.
const TEXTS: &[&str] = &[
    "",
    "true",
    "false",
    " TRUE ",
    "1",
    "10000",
    "10001",
    "0",
    "+5",
    "05",
    " 7 ",
    "4294967296",
    "\"etag\"",
    "aws:x",
    "AWS:x",
    "awsx",
    "k",
    "v",
    "GET",
    "PUT",
    "PATCH",
    "*",
    "https://*.e.com",
    "a*b*",
    "x-amz-*",
    "content-type",
    "bad header",
    "a\rb",
    "a\nb",
    "\t",
    "<&>\"'",
    "]]>",
    "\u{1}",
    "\u{7f}",
    "\u{e9}",
    "ሴ",
    " ",
    "eu-west-1",
];

/// Input: first byte 0 → the rest is a recipe for a tree (names and texts drawn from the lists
/// above), written with `XmlWriter` and parsed back: the parse must equal the tree. Otherwise
/// the input is a request body as received.
///
/// Either way the document then goes through `parse_tree` (bounded: depth and element count)
/// and every request-body parser, each compared with a reference reading of the tree: a
/// singular element (Key, VersionId, Quiet, PartNumber, ETag, Value, TagSet, ID, MaxAgeSeconds,
/// LocationConstraint) twice in one parent is refused; DeleteObjects returns exactly the
/// document's keys in order; tag keys starting `aws:` are refused; CORS header names must be
/// tokens (no CR, LF or other separators).
pub fn xml_documents(data: &[u8]) {
    let document = match data.split_first() {
        Some((0, recipe)) => {
            let (tree, written) = tree_from_recipe(&mut Recipe::new(recipe));
            let parsed = parse_tree(&written).unwrap_or_else(|e| {
                panic!(
                    "parse_tree refused what XmlWriter wrote ({e:?}): {}",
                    crate::show(&written)
                )
            });
            assert_eq!(parsed, tree, "write → parse is not the identity");
            written
        }
        _ => data.to_vec(),
    };
    check_parsers(&document);
}

fn check_parsers(doc: &[u8]) {
    let tree = parse_tree(doc).ok();
    if let Some(tree) = &tree {
        let (depth, count) = measure(tree);
        assert!(depth <= MAX_DEPTH, "depth {depth} accepted");
        assert!(count <= MAX_ELEMENTS, "{count} elements accepted");
    }
    let t = tree.as_ref();

    let got = batch::parse_delete(doc).ok();
    let want = t.and_then(reference_delete);
    assert_eq!(
        got.map(|d| (d.quiet, d.objects)),
        want,
        "parse_delete disagrees with the reference"
    );

    let got = tagging::parse_tagging(doc).ok();
    assert_eq!(
        got,
        t.and_then(reference_tagging),
        "parse_tagging disagrees with the reference"
    );

    let got = multipart::parse_complete(doc)
        .ok()
        .map(|parts| parts.into_iter().map(|p| (p.part_number, p.etag)).collect());
    assert_eq!(
        got,
        t.and_then(reference_complete),
        "parse_complete disagrees with the reference"
    );

    let got = cors::parse(doc)
        .ok()
        .map(|rules| serde_json::to_value(rules).expect("rules serialise"));
    assert_eq!(
        got,
        t.and_then(reference_cors),
        "cors::parse disagrees with the reference"
    );

    let got = parse_create_bucket(doc).ok();
    let want = if doc.iter().all(u8::is_ascii_whitespace) {
        Some(None)
    } else {
        t.and_then(reference_create_bucket)
    };
    assert_eq!(
        got, want,
        "parse_create_bucket disagrees with the reference"
    );
}

fn measure(node: &XmlNode) -> (usize, usize) {
    node.children
        .iter()
        .map(measure)
        .fold((1, 1), |(depth, count), (d, c)| {
            (depth.max(d + 1), count + c)
        })
}

/// Children named `name`.
fn all<'a>(node: &'a XmlNode, name: &str) -> Vec<&'a XmlNode> {
    node.children.iter().filter(|c| c.name == name).collect()
}

/// The text of a singular child: `Err` if it appears twice, `Ok(None)` if absent.
fn single<'a>(node: &'a XmlNode, name: &str) -> Result<Option<&'a str>, ()> {
    match all(node, name)[..] {
        [] => Ok(None),
        [one] => Ok(Some(one.text.as_str())),
        _ => Err(()),
    }
}

/// Keys and version ids, in document order.
type DeleteObjects = Vec<(String, Option<String>)>;

/// `Delete`: optional `Quiet` (true/false, any case, trimmed); 1 to 1,000 `Object`s, each one
/// `Key` and at most one `VersionId`.
fn reference_delete(root: &XmlNode) -> Option<(bool, DeleteObjects)> {
    if root.name != "Delete" {
        return None;
    }
    let quiet = match single(root, "Quiet").ok()?.map(str::trim) {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("true") => true,
        Some(q) if q.eq_ignore_ascii_case("false") => false,
        Some(_) => return None,
    };
    let mut objects = Vec::new();
    for object in all(root, "Object") {
        let key = single(object, "Key").ok()??;
        let version = single(object, "VersionId").ok()?;
        objects.push((key.to_owned(), version.map(str::to_owned)));
    }
    (1..=1000)
        .contains(&objects.len())
        .then_some((quiet, objects))
}

/// `Tagging` with one `TagSet` of `Tag`s, each one `Key` and at most one `Value`: at most 10
/// tags, keys 1-128 and values 0-256 characters, keys unique and not starting with `aws:`.
fn reference_tagging(root: &XmlNode) -> Option<BTreeMap<String, String>> {
    if root.name != "Tagging" {
        return None;
    }
    let [tag_set] = all(root, "TagSet")[..] else {
        return None;
    };
    let mut tags = BTreeMap::new();
    let list = all(tag_set, "Tag");
    if list.len() > 10 {
        return None;
    }
    for tag in list {
        let key = single(tag, "Key").ok()??;
        let value = single(tag, "Value").ok()?.unwrap_or("");
        let reserved = key.len() >= 4 && key.as_bytes()[..4].eq_ignore_ascii_case(b"aws:");
        let key_len = key.chars().count();
        if reserved || key_len == 0 || key_len > 128 || value.chars().count() > 256 {
            return None;
        }
        if tags.insert(key.to_owned(), value.to_owned()).is_some() {
            return None;
        }
    }
    Some(tags)
}

/// `CompleteMultipartUpload`: one or more `Part`s, each one `PartNumber` (ASCII digits, trimmed,
/// 1 to 10,000, an optional `+` as `xs:int` allows) and one `ETag`.
fn reference_complete(root: &XmlNode) -> Option<Vec<(u32, String)>> {
    if root.name != "CompleteMultipartUpload" {
        return None;
    }
    let mut parts = Vec::new();
    for part in all(root, "Part") {
        let number = single(part, "PartNumber").ok()??.trim();
        let etag = single(part, "ETag").ok()??;
        let number = xsd_uint(number).filter(|n| (1..=10_000).contains(n))?;
        parts.push((u32::try_from(number).ok()?, etag.to_owned()));
    }
    (!parts.is_empty()).then_some(parts)
}

/// An `xs:int` as S3's schemas type PartNumber and MaxAgeSeconds: an optional `+`, then ASCII
/// digits (saturating); negative values are never in range here.
fn xsd_uint(text: &str) -> Option<u128> {
    digits_value(text.strip_prefix('+').unwrap_or(text))
}

/// The value of a non-empty run of ASCII digits (saturating), else `None`: no sign, no space.
fn digits_value(text: &str) -> Option<u128> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| {
        text.bytes().fold(0u128, |n, d| {
            n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
        })
    })
}

/// An RFC 9110 token: what a header name is.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `CORSConfiguration`: 1 to 100 `CORSRule`s; each at least one `AllowedOrigin` (non-empty, no
/// control characters, at most one `*`) and `AllowedMethod` (GET, PUT, POST, DELETE, HEAD);
/// `AllowedHeader`s (tokens, at most one `*`) and `ExposeHeader`s (tokens); at most one `ID`
/// and one `MaxAgeSeconds` (digits, fits u32). Values are trimmed.
fn reference_cors(root: &XmlNode) -> Option<Value> {
    if root.name != "CORSConfiguration" {
        return None;
    }
    let texts = |node: &XmlNode, name: &str| -> Vec<String> {
        all(node, name)
            .iter()
            .map(|c| c.text.trim().to_owned())
            .collect()
    };
    let mut rules = Vec::new();
    for rule in all(root, "CORSRule") {
        let origins = texts(rule, "AllowedOrigin");
        let methods = texts(rule, "AllowedMethod");
        let headers = texts(rule, "AllowedHeader");
        let expose = texts(rule, "ExposeHeader");
        let origins_ok = origins.iter().all(|o| {
            !o.is_empty() && o.matches('*').count() <= 1 && !o.bytes().any(|b| b.is_ascii_control())
        });
        let methods_ok = methods
            .iter()
            .all(|m| ["GET", "PUT", "POST", "DELETE", "HEAD"].contains(&m.as_str()));
        let headers_ok = headers
            .iter()
            .all(|h| is_token(h) && h.matches('*').count() <= 1);
        if origins.is_empty()
            || methods.is_empty()
            || !origins_ok
            || !methods_ok
            || !headers_ok
            || !expose.iter().all(|h| is_token(h))
        {
            return None;
        }
        let id = single(rule, "ID").ok()?;
        let max_age = match single(rule, "MaxAgeSeconds").ok()? {
            Some(text) => Some(u32::try_from(xsd_uint(text.trim())?).ok()?),
            None => None,
        };
        let mut r = json!({
            "origins": origins,
            "methods": methods,
            "headers": headers,
            "expose": expose,
        });
        if let Some(id) = id {
            r["id"] = json!(id);
        }
        if let Some(age) = max_age {
            r["max_age"] = json!(age);
        }
        rules.push(r);
    }
    (1..=100)
        .contains(&rules.len())
        .then_some(Value::Array(rules))
}

/// `CreateBucketConfiguration` with at most one `LocationConstraint`.
fn reference_create_bucket(root: &XmlNode) -> Option<Option<String>> {
    if root.name != "CreateBucketConfiguration" {
        return None;
    }
    Some(single(root, "LocationConstraint").ok()?.map(str::to_owned))
}

/// Builds a tree from a recipe and writes it with `XmlWriter` as it goes. Text may come before,
/// between and after children; the parser keeps an element's text as one concatenated string,
/// so that is what the expected tree records.
fn tree_from_recipe(r: &mut Recipe) -> (XmlNode, Vec<u8>) {
    let mut w = XmlWriter::new();
    let root_name = r.pick(NAMES);
    w.root(root_name);
    let mut stack = vec![XmlNode {
        name: root_name.to_owned(),
        ..Default::default()
    }];
    let mut elements = 1;
    while !r.is_empty() && elements < 300 {
        match r.byte() % 5 {
            0 | 1 if stack.len() < MAX_DEPTH => {
                let name = r.pick(NAMES);
                w.open(name);
                stack.push(XmlNode {
                    name: name.to_owned(),
                    ..Default::default()
                });
                elements += 1;
            }
            2 if stack.len() > 1 => {
                let node = stack.pop().expect("not the root");
                w.close(&node.name);
                stack.last_mut().expect("root").children.push(node);
            }
            3 if stack.len() < MAX_DEPTH => {
                let name = r.pick(NAMES);
                let text = r.pick(TEXTS);
                w.element(name, text);
                stack.last_mut().expect("root").children.push(XmlNode {
                    name: name.to_owned(),
                    text: text.to_owned(),
                    children: Vec::new(),
                });
                elements += 1;
            }
            _ => {
                let text = r.pick(TEXTS);
                w.element_text(text);
                stack.last_mut().expect("root").text.push_str(text);
            }
        }
    }
    while stack.len() > 1 {
        let node = stack.pop().expect("not the root");
        w.close(&node.name);
        stack.last_mut().expect("root").children.push(node);
    }
    let root = stack.pop().expect("root");
    w.close(&root.name);
    (root, w.finish())
}

/// Request bodies: half recipes, half hand-written S3 documents close to valid (repeated
/// singular elements, reserved tag keys, bad header names, odd part numbers).
pub fn gen_xml_document(rng: &mut StdRng) -> Vec<u8> {
    if rng.random_bool(0.4) {
        let n = rng.random_range(0..120);
        let mut out = vec![0u8];
        out.extend((0..n).map(|_| rng.random::<u8>()));
        return out;
    }
    // Values per element: (valid, edge). Mostly valid, so that whole documents pass often
    // enough for the properties on accepted documents to be exercised.
    type Values = (&'static [&'static str], &'static [&'static str]);
    let values = |name: &str| -> Values {
        match name {
            "Quiet" => (&["true", "false", " TRUE "], &["yes", ""]),
            "PartNumber" => (
                &["1", "2", "10000", " 7 ", "+5"],
                &["10001", "0", "x", "4294967297", "-1"],
            ),
            "AllowedOrigin" => (
                &["*", "https://*.e.com", "http://a"],
                &["a*b*", "", "a\u{1}b"],
            ),
            "AllowedMethod" => (&["GET", "PUT", "HEAD", "POST", "DELETE"], &["PATCH", "get"]),
            "AllowedHeader" => (
                &["x-amz-*", "content-type", "*"],
                &["*a*", "bad header", "a\rb", "a:b"],
            ),
            "ExposeHeader" => (
                &["ETag", "x-amz-request-id"],
                &["a\nb", "bad header", "a;b"],
            ),
            "MaxAgeSeconds" => (&["600", " 5 ", "+5"], &["-1", "4294967296", "x"]),
            _ => (TEXTS, TEXTS),
        }
    };
    let text = |rng: &mut StdRng, name: &str| {
        let (valid, edge) = values(name);
        let list = if rng.random_ratio(9, 10) { valid } else { edge };
        list.choose(rng)
            .unwrap()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
    };
    // Sometimes twice: a repeated singular element must be refused.
    let elem = |rng: &mut StdRng, name: &str| {
        let element = format!("<{name}>{}</{name}>", text(rng, name));
        if rng.random_ratio(1, 8) {
            format!("{element}{element}")
        } else {
            element
        }
    };
    let mut body = String::new();
    match rng.random_range(0..5) {
        0 => {
            body.push_str("<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
            if rng.random_bool(0.5) {
                body += &elem(rng, "Quiet");
            }
            for _ in 0..rng.random_range(0..4) {
                let mut object = elem(rng, "Key");
                if rng.random_bool(0.3) {
                    object += &elem(rng, "VersionId");
                }
                body += &format!("<Object>{object}</Object>");
            }
            body.push_str("</Delete>");
        }
        1 => {
            body.push_str("<Tagging>");
            let mut set = String::new();
            for _ in 0..rng.random_range(0..4) {
                let mut tag = elem(rng, "Key");
                tag += &elem(rng, "Value");
                set += &format!("<Tag>{tag}</Tag>");
            }
            let tag_set = format!("<TagSet>{set}</TagSet>");
            body += &tag_set;
            if rng.random_ratio(1, 8) {
                body += &tag_set;
            }
            body.push_str("</Tagging>");
        }
        2 => {
            body.push_str("<CompleteMultipartUpload>");
            for _ in 0..rng.random_range(1..4) {
                let mut part = elem(rng, "PartNumber");
                part += &elem(rng, "ETag");
                body += &format!("<Part>{part}</Part>");
            }
            body.push_str("</CompleteMultipartUpload>");
        }
        3 => {
            body.push_str("<CORSConfiguration>");
            for _ in 0..rng.random_range(1..3) {
                let mut rule = String::new();
                if rng.random_bool(0.3) {
                    rule += &elem(rng, "ID");
                }
                for name in [
                    "AllowedOrigin",
                    "AllowedMethod",
                    "AllowedHeader",
                    "ExposeHeader",
                ] {
                    let least =
                        usize::from(name.starts_with("AllowedO") || name.starts_with("AllowedM"));
                    for _ in 0..rng.random_range(least..3) {
                        rule += &format!("<{name}>{}</{name}>", text(rng, name));
                    }
                }
                if rng.random_bool(0.3) {
                    rule += &elem(rng, "MaxAgeSeconds");
                }
                body += &format!("<CORSRule>{rule}</CORSRule>");
            }
            body.push_str("</CORSConfiguration>");
        }
        _ => {
            body.push_str("<CreateBucketConfiguration>");
            if rng.random_bool(0.7) {
                body += &elem(rng, "LocationConstraint");
            }
            body.push_str("</CreateBucketConfiguration>");
        }
    }
    body.into_bytes()
}
