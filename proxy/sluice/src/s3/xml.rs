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

/// Parses an optional `CreateBucketConfiguration` body and returns its `LocationConstraint`.
pub fn parse_create_bucket(body: &[u8]) -> Result<Option<String>, MalformedXml> {
    use quick_xml::events::Event;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut location = None;
    let mut saw_root = false;
    loop {
        match reader.read_event().map_err(|_| MalformedXml)? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_vec();
                if path.is_empty() {
                    if name != b"CreateBucketConfiguration" || saw_root {
                        return Err(MalformedXml);
                    }
                    saw_root = true;
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Empty(e) => {
                if path.is_empty()
                    && (e.local_name().as_ref() != b"CreateBucketConfiguration" || saw_root)
                {
                    return Err(MalformedXml);
                }
                saw_root |= path.is_empty();
            }
            Event::Text(t) if path.len() == 2 && path[1] == b"LocationConstraint" => {
                location = Some(t.unescape().map_err(|_| MalformedXml)?.into_owned());
            }
            Event::Text(t) if path.is_empty() && !t.iter().all(u8::is_ascii_whitespace) => {
                return Err(MalformedXml);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root || !path.is_empty() {
        return Err(MalformedXml);
    }
    Ok(location)
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
