//! Fuzz targets for every parser that reads client bytes, with the properties they must keep.
//!
//! This crate owns the targets, the small reference implementations they are checked against,
//! and the generators of structured inputs. Each `pub fn <target>(data: &[u8])` panics when a
//! property is violated; it is called by the cargo-fuzz project in `fuzz/` (nightly, libFuzzer)
//! and by `tests/properties.rs` (stable, a fixed seed and case count, plus every file of
//! `regressions/<target>/` replayed forever). See `docs/FUZZING.md`.
//!
//! A target checks more than "no panic" wherever it can: agreement with a reference written
//! here from the spec (not from the code under test), round trips, and the refusal rules that
//! keep two readers of one request from disagreeing (repeated singular fields).
//!
//! Input layouts are documented on each target; the regression files are written in them.

pub mod chunked;
pub mod conditional;
pub mod config_file;
pub mod key_store;
pub mod mutate;
pub mod percent;
pub mod ranges;
pub mod router;
pub mod sigv4_auth;
pub mod sigv4_canonical;
pub mod xml_documents;

pub use chunked::{aws_chunked, gen_aws_chunked};
pub use conditional::{conditional_headers, gen_conditional_headers};
pub use config_file::{GeneratedConfig, config_loader, gen_config};
pub use key_store::{GeneratedStore, gen_key_store, key_store_loader};
pub use mutate::mutate;
pub use ranges::{gen_range_header, range_header};
pub use router::{gen_request_target, request_target};
pub use sigv4_auth::{
    gen_authorization_header, gen_presigned_query, sigv4_authorization_header,
    sigv4_presigned_query,
};
pub use sigv4_canonical::{gen_canonical, sigv4_canonical};
pub use xml_documents::{gen_xml_document, xml_documents};

/// A fuzz target: panics when a property does not hold.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz target and regression directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("sigv4_authorization_header", sigv4_authorization_header),
    ("sigv4_presigned_query", sigv4_presigned_query),
    ("sigv4_canonical", sigv4_canonical),
    ("aws_chunked", aws_chunked),
    ("xml_documents", xml_documents),
    ("range_header", range_header),
    ("conditional_headers", conditional_headers),
    ("config_loader", config_loader),
    ("key_store_loader", key_store_loader),
    ("request_target", request_target),
];

/// Reads bytes one at a time from a fuzz input, yielding zeros once it is used up, so that any
/// input (even an empty one) decodes to a complete structured recipe.
#[derive(Debug)]
pub struct Recipe<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Recipe<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// One of `items`, chosen by the next byte.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::from(self.byte()) % items.len()]
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        self.pos = self.data.len();
        rest
    }
}

/// The input as text for a panic message: printable ASCII kept, everything else escaped.
pub fn show(data: &[u8]) -> String {
    data.escape_ascii().to_string()
}
