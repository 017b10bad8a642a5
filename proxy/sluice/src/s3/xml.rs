//! A small XML writer for S3 response bodies, and the request-body parsers S3 needs.
//! Text is escaped with quick-xml; element names are always literals from this crate.

use quick_xml::escape::escape;

#[derive(Debug)]
pub struct XmlWriter {
    out: String,
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlWriter {
    pub fn new() -> Self {
        Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        }
    }

    /// Opens the root element with S3's namespace.
    pub fn root(&mut self, name: &str) {
        self.out.push_str(&format!(
            "<{name} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        ));
    }

    pub fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn element(&mut self, name: &str, text: &str) {
        self.open(name);
        self.element_text(text);
        self.close(name);
    }

    /// Escapes markup characters, and writes control characters (legal in S3 keys) as character
    /// references, as S3 does; clients that need strict XML 1.0 ask for `encoding-type=url`.
    pub fn element_text(&mut self, text: &str) {
        let mut run_start = 0;
        for (i, c) in text.char_indices() {
            // A raw CR would be read back as LF by XML parsers (line-end normalisation).
            if c.is_control() && !matches!(c, '\t' | '\n') {
                self.out.push_str(&escape(&text[run_start..i]));
                self.out.push_str(&format!("&#x{:X};", c as u32));
                run_start = i + c.len_utf8();
            }
        }
        self.out.push_str(&escape(&text[run_start..]));
    }

    pub fn finish(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

/// A request body that is not the XML document the operation expects.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedXml;

/// A parsed XML element: local name (namespace prefix dropped), text, children.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct XmlNode {
    pub name: String,
    pub text: String,
    pub children: Vec<XmlNode>,
}

impl XmlNode {
    /// The direct child `name`, which may appear at most once: a document with two (`<Object>`
    /// with two `<Key>`s) is malformed, since acting on either one would ignore the other.
    pub fn child(&self, name: &str) -> Result<Option<&XmlNode>, MalformedXml> {
        let mut found = self.children.iter().filter(|c| c.name == name);
        match (found.next(), found.next()) {
            (_, Some(_)) => Err(MalformedXml),
            (one, None) => Ok(one),
        }
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a XmlNode> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the direct child `name` (at most one, as for [`Self::child`]).
    pub fn text_of(&self, name: &str) -> Result<Option<&str>, MalformedXml> {
        Ok(self.child(name)?.map(|c| c.text.as_str()))
    }
}

/// Deepest nesting accepted in a request document (S3's deepest is 4).
const MAX_DEPTH: usize = 16;
/// Most elements accepted in one document: CompleteMultipartUpload's 10,000 parts have three
/// each; anything larger is refused while parsing, before it costs memory.
const MAX_ELEMENTS: usize = 40_000;

/// Parses a request body into its root element. Well-formedness is checked; a DTD, a second
/// root, text outside the root or nesting deeper than [`MAX_DEPTH`] is malformed.
pub fn parse_tree(body: &[u8]) -> Result<XmlNode, MalformedXml> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<XmlNode> = Vec::new();
    let mut root: Option<XmlNode> = None;
    let name_of = |raw: &[u8]| String::from_utf8(raw.to_vec()).map_err(|_| MalformedXml);
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(|_| MalformedXml)?;
        if matches!(event, Event::Start(_) | Event::Empty(_)) {
            elements += 1;
            if elements > MAX_ELEMENTS {
                return Err(MalformedXml);
            }
        }
        match event {
            Event::Start(e) => {
                if root.is_some() || stack.len() >= MAX_DEPTH {
                    return Err(MalformedXml);
                }
                stack.push(XmlNode {
                    name: name_of(e.local_name().as_ref())?,
                    ..Default::default()
                });
            }
            Event::Empty(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(MalformedXml);
                }
                let node = XmlNode {
                    name: name_of(e.local_name().as_ref())?,
                    ..Default::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err(MalformedXml),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or(MalformedXml)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|_| MalformedXml)?;
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(MalformedXml),
                }
            }
            Event::CData(c) => match stack.last_mut() {
                Some(node) => node
                    .text
                    .push_str(std::str::from_utf8(&c).map_err(|_| MalformedXml)?),
                None => return Err(MalformedXml),
            },
            Event::DocType(_) => return Err(MalformedXml),
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(MalformedXml);
    }
    root.ok_or(MalformedXml)
}

/// Parses an optional `CreateBucketConfiguration` body and returns its `LocationConstraint`.
pub fn parse_create_bucket(body: &[u8]) -> Result<Option<String>, MalformedXml> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let root = parse_tree(body)?;
    if root.name != "CreateBucketConfiguration" {
        return Err(MalformedXml);
    }
    Ok(root.text_of("LocationConstraint")?.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bucket_configuration() {
        assert_eq!(parse_create_bucket(b""), Ok(None));
        let body = br#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"#;
        assert_eq!(parse_create_bucket(body), Ok(Some("eu-west-1".into())));
        assert_eq!(
            parse_create_bucket(b"<CreateBucketConfiguration/>"),
            Ok(None)
        );
        for bad in [
            &b"<CreateBucketConfiguration>"[..],
            b"<Other/>",
            b"not xml",
            b"<a></b>",
        ] {
            assert!(
                parse_create_bucket(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn parses_trees() {
        let doc = br#"<?xml version="1.0"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet><Object><Key>a&amp;b</Key></Object><Object><Key><![CDATA[c<d]]></Key></Object></Delete>"#;
        let root = parse_tree(doc).unwrap();
        assert_eq!(root.name, "Delete");
        assert_eq!(root.text_of("Quiet"), Ok(Some("true")));
        let keys: Vec<_> = root
            .children_named("Object")
            .filter_map(|o| o.text_of("Key").unwrap())
            .collect();
        assert_eq!(keys, ["a&b", "c<d"]);
        let twice = parse_tree(b"<Object><Key>a</Key><Key>b</Key></Object>").unwrap();
        assert_eq!(twice.text_of("Key"), Err(MalformedXml));
        assert_eq!(twice.children_named("Key").count(), 2);
        let deep = "<a>".repeat(20) + &"</a>".repeat(20);
        assert!(parse_tree(deep.as_bytes()).is_err());
        // The same depth limit whether the deepest element is empty or not.
        let at =
            |depth: usize, leaf: &str| "<a>".repeat(depth - 1) + leaf + &"</a>".repeat(depth - 1);
        for leaf in ["<b/>", "<b></b>"] {
            assert!(parse_tree(at(MAX_DEPTH, leaf).as_bytes()).is_ok(), "{leaf}");
            assert!(
                parse_tree(at(MAX_DEPTH + 1, leaf).as_bytes()).is_err(),
                "{leaf}"
            );
        }
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS));
        assert!(parse_tree(wide.as_bytes()).is_err());
    }

    #[test]
    fn escapes_text() {
        let mut w = XmlWriter::new();
        w.element("Key", "a<b>&\"c'");
        let s = String::from_utf8(w.finish()).unwrap();
        assert!(
            s.ends_with("<Key>a&lt;b&gt;&amp;&quot;c&apos;</Key>"),
            "{s}"
        );
        let mut w = XmlWriter::new();
        w.element("Key", "a\u{1}b\u{7f}");
        let s = String::from_utf8(w.finish()).unwrap();
        assert!(s.ends_with("<Key>a&#x1;b&#x7F;</Key>"), "{s}");
        let mut w = XmlWriter::new();
        w.element("Key", "a\rb\nc");
        assert!(
            String::from_utf8(w.finish())
                .unwrap()
                .ends_with("<Key>a&#xD;b\nc</Key>")
        );
    }
}
