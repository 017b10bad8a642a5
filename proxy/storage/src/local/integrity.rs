//! Block checksums against bit rot. Every blob written by this version ends with a table of
//! CRC32C values, one per 64 KiB block of its data (big-endian u32; the last block may be
//! short). Readers verify each block before handing out any of its bytes, so a blob whose
//! bytes changed on disk is never served as if intact, whole or by range.
//!
//! Blob layout (DO NOT CHANGE: blobs on disk depend on it; records say `checked: true`):
//!
//! ```text
//! data (size bytes) | crc32c(block 0) | crc32c(block 1) | ... | crc32c(block n-1)
//! ```

use crc_fast::{CrcAlgorithm, Digest as CrcDigest};

/// DO NOT CHANGE: the block size of every checked blob.
pub(super) const BLOCK: u64 = 64 * 1024;

/// Length of the checksum table that follows `size` bytes of data.
pub(super) fn table_len(size: u64) -> u64 {
    size.div_ceil(BLOCK) * 4
}

pub(super) fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Computes the table while a body streams in, whatever its chunking.
pub(super) struct BlockSummer {
    digest: CrcDigest,
    fill: u64,
    table: Vec<u8>,
}

impl BlockSummer {
    pub(super) fn new() -> Self {
        Self {
            digest: CrcDigest::new(CrcAlgorithm::Crc32Iscsi),
            fill: 0,
            table: Vec::new(),
        }
    }

    pub(super) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((BLOCK - self.fill) as usize).min(data.len());
            self.digest.update(&data[..take]);
            self.fill += take as u64;
            data = &data[take..];
            if self.fill == BLOCK {
                self.close_block();
            }
        }
    }

    fn close_block(&mut self) {
        let digest = std::mem::replace(&mut self.digest, CrcDigest::new(CrcAlgorithm::Crc32Iscsi));
        self.table
            .extend_from_slice(&(digest.finalize() as u32).to_be_bytes());
        self.fill = 0;
    }

    /// The table bytes to append after the data.
    pub(super) fn finish(mut self) -> Vec<u8> {
        if self.fill > 0 {
            self.close_block();
        }
        self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_independent_of_chunking() {
        let data: Vec<u8> = (0..(3 * BLOCK as usize + 123))
            .map(|i| (i * 7) as u8)
            .collect();
        let mut whole = BlockSummer::new();
        whole.update(&data);
        let whole = whole.finish();
        let mut pieces = BlockSummer::new();
        for chunk in data.chunks(1000) {
            pieces.update(chunk);
        }
        assert_eq!(pieces.finish(), whole);
        assert_eq!(whole.len() as u64, table_len(data.len() as u64));
        let last = &data[3 * BLOCK as usize..];
        assert_eq!(&whole[12..16], &crc32c(last).to_be_bytes());
        assert!(BlockSummer::new().finish().is_empty());
    }
}
