//! The encryption layer over any store: object bodies are sealed on the way in and opened on
//! the way out (format v1 of `sluice_crypto`, `docs/ENCRYPTION.md`). Clients see plaintext
//! sizes, ETags and ranges, and never the envelope.
//!
//! What a client sees of an encrypted object (its [`View`]) follows from the store's record:
//! the envelope in system metadata; the plaintext size from the stored size; the ETag (the
//! plaintext's MD5) from `sluice-etag` where the store keeps metadata learnt at a body's end
//! (the local backend), else from the object's footer. A multipart object's parts are found
//! by walking its footers back from the end. What footers say is remembered by the stored
//! ETag. Conditions are checked here against the plaintext ETag, never passed to the store.
//!
//! A multipart upload's data key travels in the upload id given to the client
//! ([`sluice_crypto::upload_token`]); each part is a stream of its own.
//!
//! A store whose listings carry no metadata (an upstream) has each listed object probed once
//! (its last 72 bytes, whose answer carries the envelope too), remembered by its stored ETag.
//! Copies within the layer keep the stored bytes and rewrap the data key; so does `sluice
//! rewrap` ([`Encrypted::rewrap`]), and `sluice scan` reports what is stored
//! ([`Encrypted::scan`]).
//!
//! Not built yet: SSE-C.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sluice_crypto::stream::{FOOTER_LEN, HEADER_LEN};
use sluice_crypto::{
    CryptoError, DataKey, Envelope, FooterKey, FooterWalk, KeyId, Keyring, Layout, PartMap,
    StreamDecryptor, StreamEncryptor, StreamHeader, WRAPPED_LEN, Wrapping, check_upload_mac,
    is_multipart, object_etag, split_upload_token, unwrap_for_customer, upload_token,
    wrap_for_customer,
};

use crate::{
    Backend, BodyError, BucketInfo, BucketName, CompletePart, CopyObject, CopySource, CustomerKey,
    CustomerKeyProblem, ListPage, ListRequest, NewUpload, ObjectBody, ObjectKey, ObjectMeta,
    ObjectRead, PartId, PartInfo, PutBody, PutCondition, PutObject, ReadRange, ReadRequest,
    StorageError, TenantId, UploadListPage, UploadListRequest,
};

/// The bucket setting that holds a bucket's default encryption (`AES256`): writes to the bucket
/// are then encrypted whatever the route's policy. DO NOT CHANGE: stored in bucket records.
pub const BUCKET_DEFAULT: &str = "encryption";

/// The system metadata that holds an object's envelope.
pub const ENVELOPE_META: &str = "sluice-enc";
/// The system metadata that holds an encrypted object's plaintext ETag, where the store keeps
/// metadata learnt at the body's end.
pub const ETAG_META: &str = "sluice-etag";

/// The system metadata that holds an encrypted object's checksum (`x-amz-checksum-*`, as
/// "name value"), verified on its plaintext.
const CHECKSUM_META: &str = "sluice-checksum";

fn checksum_text((name, value): &(String, String)) -> String {
    format!("{name} {value}")
}

fn checksum_of(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once(' ')?;
    Some((name.to_owned(), value.to_owned()))
}

/// The checksum a sealed body ended with.
fn sealed_checksum(late: &crate::LateMeta) -> Option<(String, String)> {
    checksum_of(late.lock().ok()?.get(CHECKSUM_META)?)
}

/// The system metadata an encrypted object's view carries for the S3 layer, which answers it
/// as `x-amz-server-side-encryption` (and shows no other system metadata).
const SSE_META: &str = "sluice-sse";

/// The mark of an object encrypted under a client's SSE-C key.
const SSE_C_META: &str = "sluice-sse-c";

/// `x-amz-server-side-encryption` for an object this layer reported: `AES256` if encrypted
/// (under the keyring; an SSE-C object answers [`customer_encrypted`] instead).
pub fn server_side_encryption(meta: &ObjectMeta) -> Option<&str> {
    meta.system_meta.get(SSE_META).map(String::as_str)
}

/// Whether an object this layer reported is encrypted under a client's SSE-C key (its
/// responses then echo the key's algorithm and MD5).
pub fn customer_encrypted(meta: &ObjectMeta) -> bool {
    meta.system_meta.contains_key(SSE_C_META)
}

/// A record as a client sees an encrypted object: no Sluice metadata but the SSE mark.
fn mark_encrypted(meta: &mut ObjectMeta, wrapping: &Wrapping) {
    meta.system_meta.clear();
    let mark = match wrapping {
        Wrapping::Keyring(_) => SSE_META,
        Wrapping::Customer => SSE_C_META,
    };
    meta.system_meta
        .insert(mark.to_owned(), "AES256".to_owned());
}

/// When new objects are encrypted (ordered from weakest to strictest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Policy {
    /// Only when the client asks (`x-amz-server-side-encryption`).
    #[default]
    Off,
    /// Always, unless the client asks otherwise where allowed.
    On,
    /// Always: plaintext is never written.
    Required,
}

/// The encryption layer; see the module documentation.
pub struct Encrypted {
    inner: Arc<dyn Backend>,
    keyring: Arc<Keyring>,
    policy: Policy,
    /// What the stored bytes say of encrypted objects (plaintext ETag; a multipart object's
    /// parts), by (bucket, key, stored ETag): read from footers once, or known from the write.
    described: moka::sync::Cache<(String, String, String), Arc<Described>>,
    /// Stream headers read for ranges, by (bucket, key, stored ETag, part number): a range
    /// of an object read before costs only its segments.
    headers: moka::sync::Cache<(String, String, String, u32), StreamHeader>,
    /// Listed objects found to be plaintext, by (bucket, key, stored ETag), where listings
    /// carry no metadata.
    plaintext: moka::sync::Cache<(String, String, String), ()>,
}

/// What an encrypted object's footers say.
#[derive(Debug)]
struct Described {
    etag: String,
    /// The plaintext size.
    size: u64,
    /// A multipart object's streams, in order.
    parts: Option<PartMap>,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// How many objects' descriptions are remembered (single-part: about 200 bytes each).
const DESCRIBED_CACHE: u64 = 100_000;

/// A stored object as its record describes it.
struct Stored<'a> {
    etag: &'a str,
    size: u64,
    /// How many parts, for a multipart object.
    parts: Option<u32>,
}

/// A stored object as a read may serve it (returned once per read and taken apart at once:
/// the plaintext record is not boxed, so plaintext reads allocate nothing for it).
#[allow(clippy::large_enum_variant)]
enum Readable {
    Plaintext(ObjectMeta),
    Encrypted(Box<View>),
}

/// An encrypted object as a client sees it.
struct View {
    envelope: Envelope,
    /// `None` for an SSE-C object viewed without its key (enough for sizes and ETags).
    key: Option<DataKey>,
    /// The stored record with the plaintext size and ETag, and no Sluice metadata.
    meta: ObjectMeta,
    stored_size: u64,
    stored_etag: String,
    parts: Option<PartMap>,
}

impl Encrypted {
    pub fn new(inner: Arc<dyn Backend>, keyring: Arc<Keyring>, policy: Policy) -> Self {
        Self {
            inner,
            keyring,
            policy,
            described: moka::sync::Cache::new(DESCRIBED_CACHE),
            headers: moka::sync::Cache::new(DESCRIBED_CACHE),
            plaintext: moka::sync::Cache::new(DESCRIBED_CACHE),
        }
    }

    fn encrypts_new_objects(&self) -> bool {
        self.policy != Policy::Off
    }

    /// Whether the bucket's default encryption (PutBucketEncryption) is set.
    async fn bucket_default(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<bool, StorageError> {
        Ok(self
            .inner
            .bucket_config(tenant, bucket, BUCKET_DEFAULT)
            .await?
            .is_some())
    }

    /// A fresh data key and its envelope: wrapped under the keyring's current key, or under
    /// the client's SSE-C key (its footer key then under the keyring's).
    fn new_key(&self, customer: Option<&CustomerKey>) -> (DataKey, Envelope) {
        let data_key = DataKey::generate();
        let envelope = match customer {
            None => {
                let (wrapping, wrapped) = self.keyring.wrap(&data_key);
                Envelope {
                    layout: Layout::default(),
                    wrapping,
                    wrapped,
                    footer: None,
                }
            }
            Some(customer) => Envelope {
                layout: Layout::default(),
                wrapping: Wrapping::Customer,
                wrapped: wrap_for_customer(customer.bytes(), &data_key),
                footer: Some(self.wrap_footer_key(&FooterKey::of(&data_key))),
            },
        };
        (data_key, envelope)
    }

    fn wrap_footer_key(&self, key: &FooterKey) -> (KeyId, [u8; WRAPPED_LEN]) {
        let (wrapping, wrapped) = self.keyring.wrap(key.as_data_key());
        let Wrapping::Keyring(id) = wrapping else {
            unreachable!("the keyring wraps under its own keys")
        };
        (id, wrapped)
    }

    /// The key an upload token's MAC is made with: the data key; for an SSE-C upload, the
    /// footer key (which opens without the customer's key, so that the upload can be
    /// completed, listed or aborted without it).
    fn upload_mac_key(&self, envelope: &Envelope) -> Result<DataKey, StorageError> {
        match &envelope.wrapping {
            Wrapping::Keyring(_) => self.data_key(envelope, None),
            Wrapping::Customer => Ok(self.footer_key(envelope, None)?.as_data_key().clone()),
        }
    }

    /// The store's upload id, the upload's envelope, and its data key where `customer` opens it
    /// (always for an upload under the keyring), from an upload id this layer gave a client;
    /// `None` for a store's own id (an upload started without encryption). An id whose
    /// envelope or MAC does not check out names no upload.
    #[allow(clippy::type_complexity)]
    fn upload_key(
        &self,
        id: &str,
        customer: Option<&CustomerKey>,
    ) -> Result<Option<(String, Envelope, Option<DataKey>)>, StorageError> {
        let Some((store_id, envelope, mac)) = split_upload_token(id) else {
            if customer.is_some() {
                return Err(StorageError::CustomerKey(CustomerKeyProblem::NotApplicable));
            }
            return Ok(None);
        };
        let mac_key = self
            .upload_mac_key(&envelope)
            .map_err(|_| StorageError::NoSuchUpload)?;
        check_upload_mac(store_id, &envelope, mac, &mac_key)
            .map_err(|_| StorageError::NoSuchUpload)?;
        let data_key = match (&envelope.wrapping, customer) {
            (Wrapping::Keyring(_), None) => Some(mac_key),
            (Wrapping::Customer, None) => None,
            (_, Some(_)) => Some(self.data_key(&envelope, customer)?),
        };
        Ok(Some((store_id.to_owned(), envelope, data_key)))
    }

    /// An upload started without encryption may not go on where plaintext must never be
    /// written.
    fn plaintext_upload_allowed(&self) -> Result<(), StorageError> {
        if self.policy == Policy::Required {
            return Err(StorageError::NotAllowed(
                "This upload was started without encryption, which this bucket requires",
            ));
        }
        Ok(())
    }

    /// A write's condition as the store can check it: `If-Match` names the client's ETag
    /// (the plaintext's), so it is checked here and the store is asked to replace exactly the
    /// object that was checked.
    async fn store_condition(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        condition: PutCondition,
    ) -> Result<PutCondition, StorageError> {
        let PutCondition::IfMatch(wanted) = &condition else {
            return Ok(condition);
        };
        match self.stored_head(tenant, bucket, key).await {
            // A missing key: the store answers as it does for any conditional write.
            Err(StorageError::NoSuchKey) => Ok(condition),
            Err(err) => Err(err),
            Ok(meta) => {
                let stored_etag = meta.etag.clone();
                let current = match self.view(tenant, bucket, key, meta, None).await? {
                    Some(view) => view.meta.etag,
                    None => stored_etag.clone(),
                };
                if wanted.trim_matches('"') != current {
                    return Err(StorageError::PreconditionFailed {
                        condition: Some("If-Match"),
                    });
                }
                Ok(PutCondition::IfMatch(stored_etag))
            }
        }
    }

    /// Seals a body as stream `part` under `data_key`: what the store is given instead.
    fn seal(
        put: &mut PutObject,
        body: PutBody,
        data_key: &DataKey,
        layout: Layout,
        part: u32,
    ) -> (PutBody, crate::LateMeta) {
        put.expected_size = put.expected_size.map(|p| layout.stored_len(p));
        let late: crate::LateMeta = Arc::new(Mutex::new(BTreeMap::new()));
        put.late_meta = Some(Arc::clone(&late));
        // The store sees ciphertext: the client's digests are checked here, on the plaintext.
        let content_md5 = put.content_md5.take();
        put.sha256 = None;
        put.etag = None;
        // A checksum verified on the plaintext is kept beside it, not given to the store (an
        // upstream would check it against the ciphertext): where known up front, as system
        // metadata; from a trailer, as metadata learnt at the end (which an upstream cannot
        // keep).
        let checksum = put.checksum.take();
        if let Some(checksum) = &checksum {
            put.system_meta
                .insert(CHECKSUM_META.to_owned(), checksum_text(checksum));
        }
        let sealing = Sealing {
            body,
            encryptor: StreamEncryptor::new(data_key, layout, part),
            md5: crate::body_md5::BodyMd5::default(),
            content_md5,
            checksum,
            late_checksum: put.late_checksum.take(),
            late: Arc::clone(&late),
        };
        (sealing.into_body(), late)
    }

    /// An object's data key, opened with the keyring, or with the request's SSE-C key for an
    /// object encrypted under one (which must then be given, and only then).
    fn data_key(
        &self,
        envelope: &Envelope,
        customer: Option<&CustomerKey>,
    ) -> Result<DataKey, StorageError> {
        match (&envelope.wrapping, customer) {
            (Wrapping::Keyring(id), None) => {
                self.keyring.unwrap(id, &envelope.wrapped).map_err(sealed)
            }
            (Wrapping::Keyring(_), Some(_)) => {
                Err(StorageError::CustomerKey(CustomerKeyProblem::NotApplicable))
            }
            (Wrapping::Customer, None) => {
                Err(StorageError::CustomerKey(CustomerKeyProblem::Missing))
            }
            (Wrapping::Customer, Some(customer)) => {
                unwrap_for_customer(customer.bytes(), &envelope.wrapped)
                    .map_err(|_| StorageError::CustomerKey(CustomerKeyProblem::Wrong))
            }
        }
    }

    /// The key to an object's footers: from its data key where open, else (an SSE-C object
    /// read without its key: a listing) from the envelope, under the keyring.
    fn footer_key(
        &self,
        envelope: &Envelope,
        data_key: Option<&DataKey>,
    ) -> Result<FooterKey, StorageError> {
        if let Some(data_key) = data_key {
            return Ok(FooterKey::of(data_key));
        }
        match (&envelope.wrapping, &envelope.footer) {
            (Wrapping::Keyring(_), _) => Ok(FooterKey::of(&self.data_key(envelope, None)?)),
            (Wrapping::Customer, Some((id, wrapped))) => self
                .keyring
                .unwrap(id, wrapped)
                .map(FooterKey::from_data_key)
                .map_err(sealed),
            (Wrapping::Customer, None) => Err(corrupt("an SSE-C envelope without its footer key")),
        }
    }

    /// The client's view of a stored record: `None` for a plaintext object. The data key is
    /// opened where it can be: always under the keyring; for an SSE-C object only with
    /// `customer` (which must be its key).
    async fn view(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        mut meta: ObjectMeta,
        customer: Option<&CustomerKey>,
    ) -> Result<Option<View>, StorageError> {
        let Some(text) = meta.system_meta.remove(ENVELOPE_META) else {
            return Ok(None);
        };
        let envelope = Envelope::from_meta(&text).map_err(sealed)?;
        let data_key = match (&envelope.wrapping, customer) {
            (Wrapping::Customer, None) => None,
            _ => Some(self.data_key(&envelope, customer)?),
        };
        let footer_key = self.footer_key(&envelope, data_key.as_ref())?;
        let stored_size = meta.size;
        let stored_etag = meta.etag.clone();
        let kept_etag = meta.system_meta.remove(ETAG_META);
        if let Some(checksum) = meta.system_meta.get(CHECKSUM_META) {
            meta.checksum = checksum_of(checksum);
        }
        mark_encrypted(&mut meta, &envelope.wrapping);
        let described = match (meta.parts, kept_etag) {
            (None, Some(etag)) => Arc::new(Described {
                etag,
                size: envelope.layout.plain_len(stored_size).map_err(sealed)?,
                parts: None,
            }),
            (parts, _) => {
                let object = Stored {
                    etag: &stored_etag,
                    size: stored_size,
                    parts,
                };
                self.describe(
                    tenant,
                    bucket,
                    key,
                    &object,
                    &footer_key,
                    envelope.layout,
                    None,
                )
                .await?
            }
        };
        meta.size = described.size;
        meta.etag = described.etag.clone();
        Ok(Some(View {
            envelope,
            key: data_key,
            meta,
            stored_size,
            stored_etag,
            parts: described.parts.clone(),
        }))
    }

    /// What an object's footers say, remembered by its stored ETag: one footer for a
    /// single-part object; for a multipart one, each part's, walked back from the end (each
    /// gives its part's stored size, so where the part before ends). `last_footer` is the
    /// object's last 72 bytes where already read.
    #[allow(clippy::too_many_arguments)]
    async fn describe(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        object: &Stored<'_>,
        footer_key: &FooterKey,
        layout: Layout,
        mut last_footer: Option<Vec<u8>>,
    ) -> Result<Arc<Described>, StorageError> {
        let cache_key = cache_key(bucket, key, object.etag);
        if let Some(described) = self.described.get(&cache_key) {
            return Ok(described);
        }
        let mut walk = FooterWalk::new(footer_key, layout, object.size);
        while let Some((first, last)) = walk.next_read().map_err(sealed)? {
            let bytes = match last_footer.take() {
                Some(bytes) => bytes,
                None => {
                    self.read_stored(tenant, bucket, key, first, last, object.etag)
                        .await?
                }
            };
            walk.feed(&bytes).map_err(sealed)?;
        }
        let streams = walk.finish().map_err(sealed)?;
        let multipart = is_multipart(&streams);
        if object
            .parts
            .is_some_and(|n| !multipart || n as usize != streams.len())
        {
            return Err(corrupt("the parts found are not the parts the object has"));
        }
        let parts = multipart
            .then(|| {
                let sizes: Vec<(u32, u64)> = streams.iter().map(|&(n, len, _)| (n, len)).collect();
                PartMap::new(layout, &sizes)
            })
            .transpose()
            .map_err(sealed)?;
        let described = Described {
            etag: object_etag(&streams),
            size: match &parts {
                Some(map) => map.plain_len(),
                None => layout.plain_len(object.size).map_err(sealed)?,
            },
            parts,
        };
        let described = Arc::new(described);
        self.described.insert(cache_key, Arc::clone(&described));
        Ok(described)
    }

    /// A listing of a store that lists no metadata (an upstream), as clients see it: each
    /// entry's kind and description is remembered by its stored ETag (objects written through
    /// this layer are known from their write); the others are probed, a few at a time, with
    /// one read of their last 72 bytes, which answers the envelope too. An object deleted or
    /// replaced since it was listed is described as it is now, or left out if gone.
    async fn describe_listed(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        objects: &mut Vec<(ObjectKey, ObjectMeta)>,
    ) -> Result<(), StorageError> {
        let smallest = Layout::default().stored_len(0);
        let mut unknown = Vec::new();
        for (i, (key, meta)) in objects.iter_mut().enumerate() {
            if meta.size < smallest {
                continue; // too small to be a stream: plaintext
            }
            let cache_key = cache_key(bucket, key, &listed_version(meta));
            if let Some(described) = self.described.get(&cache_key) {
                show_described(meta, &described);
            } else if !self.plaintext.contains_key(&cache_key) {
                unknown.push(i);
            }
        }
        let probed: Vec<_> = futures_util::stream::iter(unknown)
            .map(|i| {
                let (key, meta) = &objects[i];
                async move { (i, self.probe(tenant, bucket, key, meta).await) }
            })
            .buffered(PROBES_AT_ONCE)
            .collect()
            .await;
        let mut gone = Vec::new();
        for (i, probe) in probed {
            let probe = match probe {
                Err(err) => listed_anyway(&objects[i].0, err)?,
                Ok(probe) => probe,
            };
            match probe {
                Probed::Plaintext => {}
                Probed::Encrypted(described) => show_described(&mut objects[i].1, &described),
                Probed::Now(Some(meta)) => objects[i].1 = *meta,
                Probed::Now(None) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            objects.remove(i);
        }
        Ok(())
    }

    /// What a listed object is, from one read of its last footer (and, for a multipart
    /// object, its other parts' footers).
    async fn probe(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        listed: &ObjectMeta,
    ) -> Result<Probed, StorageError> {
        let footer_at = listed.size - FOOTER_LEN as u64;
        let mut footer_read = stored_read(footer_at, listed.size - 1, &listed.etag);
        if listed.etag.is_empty() {
            footer_read.conditions.if_match = None;
        }
        let read = self
            .inner
            .get_object(tenant, bucket, key, footer_read)
            .await;
        let read = match read {
            // Of the object listed: the listing's ETag matched, or its size (without one).
            Ok(read) if read.meta.size == listed.size => read,
            Ok(_) | Err(StorageError::NoSuchKey | StorageError::PreconditionFailed { .. }) => {
                // Changed since the listing: described as it is now.
                let now = match self.stored_head(tenant, bucket, key).await {
                    Err(StorageError::NoSuchKey) => return Ok(Probed::Now(None)),
                    other => other?,
                };
                let shown = match self.view(tenant, bucket, key, now.clone(), None).await? {
                    Some(view) => view.meta,
                    None => now,
                };
                return Ok(Probed::Now(Some(Box::new(shown))));
            }
            Err(err) => return Err(err),
        };
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        let mut body = read.body;
        while let Some(piece) = body.next().await {
            footer.extend_from_slice(&piece?);
        }
        let cache_key = cache_key(bucket, key, &listed_version(listed));
        let Some(text) = read.meta.system_meta.get(ENVELOPE_META) else {
            self.plaintext.insert(cache_key, ());
            return Ok(Probed::Plaintext);
        };
        let envelope = Envelope::from_meta(text).map_err(sealed)?;
        let footer_key = self.footer_key(&envelope, None)?;
        let object = Stored {
            etag: &read.meta.etag,
            size: listed.size,
            parts: None,
        };
        let described = self
            .describe(
                tenant,
                bucket,
                key,
                &object,
                &footer_key,
                envelope.layout,
                Some(footer),
            )
            .await?;
        if listed.etag.is_empty() {
            self.described.insert(cache_key, Arc::clone(&described));
        }
        Ok(Probed::Encrypted(described))
    }

    /// `envelope` with its keys wrapped anew under the keyring's current key: the data key
    /// (`data_key`, where already open) or, for an SSE-C object, whose data key is the client's
    /// to wrap, its footer key.
    fn rewrapped(
        &self,
        envelope: &Envelope,
        data_key: Option<&DataKey>,
    ) -> Result<Envelope, StorageError> {
        let mut new = envelope.clone();
        match &envelope.wrapping {
            Wrapping::Keyring(_) => {
                let opened;
                let data_key = match data_key {
                    Some(key) => key,
                    None => {
                        opened = self.data_key(envelope, None)?;
                        &opened
                    }
                };
                (new.wrapping, new.wrapped) = self.keyring.wrap(data_key);
            }
            Wrapping::Customer => {
                let footer_key = self.footer_key(envelope, None)?;
                new.footer = Some(self.wrap_footer_key(&footer_key));
            }
        }
        Ok(new)
    }

    /// Copies the stored bytes of `from` (its record `stored`) to `at` with `envelope`, on the
    /// store's side where it can: the bytes are not decrypted. The source is copied only if it
    /// is still the one described. `headers` default to the source's.
    #[allow(clippy::too_many_arguments)]
    async fn copy_stored(
        &self,
        at: Place<'_>,
        from: Place<'_>,
        stored: &ObjectMeta,
        envelope: &Envelope,
        headers: crate::StoredHeaders,
        tags: Option<BTreeMap<String, String>>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, StorageError> {
        let mut system_meta = stored.system_meta.clone();
        system_meta.insert(ENVELOPE_META.to_owned(), envelope.to_meta());
        let (store, source_bucket, source_key) = self.inner.resolve(from.bucket, from.key)?;
        let conditions = crate::Preconditions {
            if_match: Some(format!("\"{}\"", stored.etag)),
            ..Default::default()
        };
        let source = CopySource {
            store,
            bucket: &source_bucket,
            key: &source_key,
            conditions: &conditions,
            customer_key: None,
        };
        let copy = CopyObject {
            headers: Some(headers),
            tags,
            condition,
            system_meta: Some(system_meta),
            customer_key: None,
        };
        self.inner
            .copy_object(at.tenant, at.bucket, at.key, source, copy)
            .await
            .map_err(replaced_meanwhile)
    }

    /// Rewraps one stored object's data key under the keyring's current key, keeping its
    /// stored bytes (`sluice rewrap`): a copy onto itself, only of the version examined, so
    /// a write racing it wins and an interrupted run leaves every object whole.
    pub async fn rewrap(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Finding, StorageError> {
        let stored = self.stored_head(tenant, bucket, key).await?;
        let finding = self.examine(&stored);
        if finding != Finding::OldKey {
            return Ok(finding);
        }
        let envelope = Envelope::from_meta(&stored.system_meta[ENVELOPE_META]).map_err(sealed)?;
        let envelope = self.rewrapped(&envelope, None)?;
        let place = Place {
            tenant,
            bucket,
            key,
        };
        let headers = stored.headers.clone();
        self.copy_stored(
            place,
            place,
            &stored,
            &envelope,
            headers,
            None,
            PutCondition::None,
        )
        .await?;
        Ok(Finding::OldKey)
    }

    /// What an object's stored record says of its encryption (without reading its bytes).
    fn examine(&self, stored: &ObjectMeta) -> Finding {
        let Some(text) = stored.system_meta.get(ENVELOPE_META) else {
            return Finding::Plaintext;
        };
        let Ok(envelope) = Envelope::from_meta(text) else {
            return Finding::Unreadable;
        };
        // The keyring key in the envelope: the data key's, or an SSE-C object's footer key's.
        let (id, wrapped) = match (&envelope.wrapping, &envelope.footer) {
            (Wrapping::Keyring(id), _) => (id, &envelope.wrapped),
            (Wrapping::Customer, Some((id, wrapped))) => (id, wrapped),
            (Wrapping::Customer, None) => return Finding::Unreadable,
        };
        if self.keyring.unwrap(id, wrapped).is_err() {
            Finding::Unreadable
        } else if id != self.keyring.current() {
            Finding::OldKey
        } else if envelope.wrapping == Wrapping::Customer {
            Finding::CustomerKey
        } else {
            Finding::Current
        }
    }

    /// `sluice scan`: what one object is, read from the store directly: its record and its
    /// last footer, which only opens under the object's data key (so a record that claims
    /// encryption over bytes that are not its ciphertext is found out).
    pub async fn scan(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Finding, StorageError> {
        let stored = self.stored_head(tenant, bucket, key).await?;
        let finding = self.examine(&stored);
        if !matches!(
            finding,
            Finding::Current | Finding::OldKey | Finding::CustomerKey
        ) {
            return Ok(finding);
        }
        let walked = async {
            let text = &stored.system_meta[ENVELOPE_META];
            let envelope = Envelope::from_meta(text).map_err(sealed)?;
            let footer_key = self.footer_key(&envelope, None)?;
            let mut walk = FooterWalk::new(&footer_key, envelope.layout, stored.size);
            while let Some((first, last)) = walk.next_read().map_err(sealed)? {
                let bytes = self
                    .read_stored(tenant, bucket, key, first, last, &stored.etag)
                    .await?;
                walk.feed(&bytes).map_err(sealed)?;
            }
            walk.finish().map_err(sealed)
        };
        Ok(match walked.await {
            Ok(_) => finding,
            Err(StorageError::NoSuchKey) => Finding::Gone,
            Err(err) => {
                tracing::warn!(bucket = %bucket, key = %key, error = %err, "scan: not its ciphertext");
                Finding::Unreadable
            }
        })
    }

    /// The store underneath: what `sluice scan` and `rewrap` list.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// Stored bytes `first..=last` of an object, whole, if its stored ETag is still
    /// `stored_etag` (an object replaced meanwhile is not mixed with the one described).
    async fn read_stored(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        first: u64,
        last: u64,
        stored_etag: &str,
    ) -> Result<Vec<u8>, StorageError> {
        let read = self
            .inner
            .get_object(tenant, bucket, key, stored_read(first, last, stored_etag))
            .await
            .map_err(replaced_meanwhile)?;
        let mut out = Vec::with_capacity((last - first + 1) as usize);
        let mut body = read.body;
        while let Some(piece) = body.next().await {
            out.extend_from_slice(&piece?);
        }
        if out.len() as u64 != last - first + 1 {
            return Err(corrupt("a ranged read came back short"));
        }
        Ok(out)
    }

    /// The stored record of `key`, without conditions (they are checked on the view).
    async fn stored_head(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, StorageError> {
        Ok(self
            .inner
            .head_object(tenant, bucket, key, ReadRequest::default())
            .await?
            .meta)
    }

    /// Opens `view`'s bytes for `range` (all of them if `None`): only the stored segments that
    /// cover it are read (and, for a range starting inside a stream, that stream's header). The
    /// first piece is decrypted before this returns, so damage at the start fails the request
    /// before any response.
    async fn open(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        view: &View,
        range: Option<crate::ByteRange>,
    ) -> Result<ObjectBody, StorageError> {
        let (read_first, read_last, steps) = self.plan(tenant, bucket, key, view, range).await?;
        let read = self
            .inner
            .get_object(
                tenant,
                bucket,
                key,
                stored_read(read_first, read_last, &view.stored_etag),
            )
            .await
            .map_err(replaced_meanwhile)?;
        decrypting(read.body, steps, read_last - read_first + 1).await
    }

    /// Which stored bytes (first, last; inclusive) hold `range` of `view` (all of it if
    /// `None`), and the steps that turn them into its plaintext.
    async fn plan(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        view: &View,
        range: Option<crate::ByteRange>,
    ) -> Result<(u64, u64, VecDeque<Step>), StorageError> {
        let data_key = view
            .key
            .as_ref()
            .ok_or(StorageError::CustomerKey(CustomerKeyProblem::Missing))?;
        let layout = view.envelope.layout;
        let single;
        let map = match &view.parts {
            Some(map) => map,
            None => {
                single = PartMap::new(layout, &[(0, view.stored_size)]).map_err(sealed)?;
                &single
            }
        };
        // The streams to read, each with the plaintext range within it (end exclusive): all of
        // them for the whole object, else those holding the range.
        let covering: Vec<_> = match range {
            None => map.parts().iter().map(|p| (p, 0, p.plain_len)).collect(),
            Some(r) => map
                .covering(r.start, r.end_inclusive)
                .map(|(p, from, to)| (p, from, to + 1))
                .collect(),
        };
        let mut steps = VecDeque::new();
        let (mut read_first, mut read_last) = (None, 0);
        for (i, &(part, from, to)) in covering.iter().enumerate() {
            if i > 0 {
                // What is left of the stream before (its footer): read past, not decrypted.
                let gap = part.stored_start - (read_last + 1);
                if gap > 0 {
                    steps.push_back(Step::Skip(gap));
                }
            }
            let whole_stream = range.is_none();
            if i == 0 && from > 0 {
                // Starting inside the stream: its header, then only the covering segments.
                let cache_key = (
                    bucket.as_str().to_owned(),
                    key.as_str().to_owned(),
                    view.stored_etag.clone(),
                    part.number,
                );
                let header = match self.headers.get(&cache_key) {
                    Some(header) => header,
                    None => {
                        let header_at = part.stored_start;
                        let bytes = self
                            .read_stored(
                                tenant,
                                bucket,
                                key,
                                header_at,
                                header_at + HEADER_LEN as u64 - 1,
                                &view.stored_etag,
                            )
                            .await?;
                        let header = StreamHeader::parse(&bytes).map_err(sealed)?;
                        if header.layout != layout || header.part != part.number {
                            return Err(corrupt("a stream header does not match its place"));
                        }
                        self.headers.insert(cache_key, header);
                        header
                    }
                };
                let span = layout.span(part.plain_len, from, to - 1);
                steps.push_back(Step::Open(Box::new(StreamDecryptor::span(
                    data_key,
                    &header,
                    part.plain_len,
                    &span,
                ))));
                read_first = Some(part.stored_start + span.stored_first);
                read_last = part.stored_start + span.stored_last;
            } else {
                let take = if whole_stream { part.plain_len } else { to };
                steps.push_back(Step::Open(Box::new(StreamDecryptor::prefix(
                    data_key,
                    layout,
                    part.plain_len,
                    Some(part.number),
                    take,
                ))));
                read_first.get_or_insert(part.stored_start);
                read_last = part.stored_start + layout.prefix_stored_len(part.plain_len, take) - 1;
            }
        }
        let read_first = read_first.ok_or_else(|| corrupt("nothing to read"))?;
        Ok((read_first, read_last, steps))
    }

    async fn read(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
        with_body: bool,
    ) -> Result<ObjectRead, StorageError> {
        if with_body && read.range.is_none() {
            return self.read_whole(tenant, bucket, key, read).await;
        }
        let meta = self.stored_head(tenant, bucket, key).await?;
        let customer = read.customer_key.as_ref();
        let view = match self.read_view(tenant, bucket, key, meta, customer).await? {
            Readable::Encrypted(view) => view,
            // A plaintext object (written before encryption was on): read as it is.
            Readable::Plaintext(_) if with_body => {
                return self.inner.get_object(tenant, bucket, key, read).await;
            }
            Readable::Plaintext(_) => {
                return self.inner.head_object(tenant, bucket, key, read).await;
            }
        };
        read.conditions.check(&view.meta)?;
        let size = view.meta.size;
        let part_sizes: Vec<u64> = match &view.parts {
            Some(map) => map.parts().iter().map(|p| p.plain_len).collect(),
            None => vec![size],
        };
        let range = read
            .range
            .map(|r| r.resolve(size, &part_sizes))
            .transpose()?;
        let body = if !with_body || size == 0 {
            Box::pin(futures_util::stream::empty()) as ObjectBody
        } else {
            // A range that is the whole object is read as the whole object (footer checked).
            let part = range.filter(|r| r.start > 0 || r.end_inclusive + 1 < size);
            self.open(tenant, bucket, key, &view, part).await?
        };
        Ok(ObjectRead {
            meta: view.meta,
            range,
            body,
        })
    }

    /// What a read of the stored record `meta` may use: a plaintext object's record (which takes
    /// no SSE-C key), or an encrypted object's view (an SSE-C object's only with its key, even
    /// for a HEAD, as in S3).
    async fn read_view(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        meta: ObjectMeta,
        customer: Option<&CustomerKey>,
    ) -> Result<Readable, StorageError> {
        if !meta.system_meta.contains_key(ENVELOPE_META) {
            if customer.is_some() {
                return Err(StorageError::CustomerKey(CustomerKeyProblem::NotApplicable));
            }
            return Ok(Readable::Plaintext(meta));
        }
        let view = self
            .view(tenant, bucket, key, meta, customer)
            .await?
            .expect("an envelope makes a view");
        if view.key.is_none() {
            return Err(StorageError::CustomerKey(CustomerKeyProblem::Missing));
        }
        Ok(Readable::Encrypted(Box::new(view)))
    }

    /// A GET of a whole object: one read of the store gives its record and its bytes (an
    /// upstream is asked once, not for a HEAD first). Conditions are checked on the record
    /// before any byte is passed on.
    async fn read_whole(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        let mut stored = self
            .inner
            .get_object(tenant, bucket, key, ReadRequest::default())
            .await?;
        if stored.range.is_some() {
            return Err(corrupt("the store sent a range, not the object"));
        }
        let meta = std::mem::take(&mut stored.meta);
        let customer = read.customer_key.as_ref();
        let view = match self.read_view(tenant, bucket, key, meta, customer).await? {
            Readable::Encrypted(view) => view,
            Readable::Plaintext(meta) => {
                read.conditions.check(&meta)?;
                stored.meta = meta;
                return Ok(stored);
            }
        };
        read.conditions.check(&view.meta)?;
        let body = if view.meta.size == 0 {
            Box::pin(futures_util::stream::empty()) as ObjectBody
        } else {
            let (first, last, steps) = self.plan(tenant, bucket, key, &view, None).await?;
            if (first, last) != (0, view.stored_size - 1) {
                return Err(corrupt("a whole read that is not the whole object"));
            }
            decrypting(stored.body, steps, view.stored_size).await?
        };
        Ok(ObjectRead {
            meta: view.meta,
            range: None,
            body,
        })
    }
}

/// An object in a store, as `sluice scan` and `sluice rewrap` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Ciphertext, its data key wrapped under the keyring's current key.
    Current,
    /// Ciphertext under an older key of the keyring (`sluice rewrap` moves it on).
    OldKey,
    /// Ciphertext under a client's SSE-C key.
    CustomerKey,
    /// Stored as sent.
    Plaintext,
    /// Claims encryption, but its envelope, key or stored bytes do not check out.
    Unreadable,
    /// Deleted while being looked at.
    Gone,
}

/// Where an object is.
#[derive(Clone, Copy)]
struct Place<'a> {
    tenant: &'a TenantId,
    bucket: &'a BucketName,
    key: &'a ObjectKey,
}

/// What a probe found a listed object to be.
enum Probed {
    Plaintext,
    Encrypted(Arc<Described>),
    /// It changed since the listing: as it is now (`None`: deleted).
    Now(Option<Box<ObjectMeta>>),
}

/// An object whose envelope, key or footers do not check out is listed as stored (its reads
/// fail), not allowed to fail the listing of every other object; the store's own failures
/// still do.
fn listed_anyway(key: &ObjectKey, err: StorageError) -> Result<Probed, StorageError> {
    match err {
        StorageError::Corrupt(detail) => {
            tracing::error!(key = %key, detail = detail.as_str(), "listing an object that cannot be decrypted");
            Ok(Probed::Plaintext)
        }
        other => Err(other),
    }
}

/// What the description caches are keyed by: an object's bucket, key and stored version.
fn cache_key(bucket: &BucketName, key: &ObjectKey, version: &str) -> (String, String, String) {
    (
        bucket.as_str().to_owned(),
        key.as_str().to_owned(),
        version.to_owned(),
    )
}

/// Which version of an object a listing names, to remember what it is by: its ETag, or for a
/// store whose listings carry none (s3s-fs), its size and modification time.
fn listed_version(meta: &ObjectMeta) -> String {
    if meta.etag.is_empty() {
        format!("{}@{}", meta.size, meta.last_modified_ms)
    } else {
        meta.etag.clone()
    }
}

/// How many listed objects are probed at once.
const PROBES_AT_ONCE: usize = 16;

/// A listing entry shown as its description says.
fn show_described(meta: &mut ObjectMeta, described: &Described) {
    meta.size = described.size;
    meta.etag = described.etag.clone();
    meta.system_meta.clear();
}

/// A read of stored bytes `first..=last`, only of the object with `stored_etag`.
fn stored_read(first: u64, last: u64, stored_etag: &str) -> ReadRequest {
    ReadRequest {
        range: Some(ReadRange::Exact { first, last }),
        conditions: crate::Preconditions {
            if_match: Some(format!("\"{stored_etag}\"")),
            ..Default::default()
        },
        customer_key: None,
    }
}

/// The plaintext of `len` stored bytes arriving in `body`, by `steps`. The first piece is
/// decrypted before this returns, so damage at the start fails the request before any
/// response; large reads are decrypted on a task of their own.
async fn decrypting(
    body: ObjectBody,
    steps: VecDeque<Step>,
    len: u64,
) -> Result<ObjectBody, StorageError> {
    let mut opening = Opening {
        body,
        steps,
        failed: false,
    };
    let first = match opening.next().await {
        None => return Ok(Box::pin(futures_util::stream::empty())),
        Some(Err(err)) => return Err(err),
        Some(Ok(first)) => first,
    };
    let rest: ObjectBody = if len > PIPELINE_AFTER {
        pipelined(opening)
    } else {
        Box::pin(opening)
    };
    Ok(Box::pin(
        futures_util::stream::once(async move { Ok(first) }).chain(rest),
    ))
}

/// The object changed between reading its record and its bytes: as S3 answers a read racing
/// an overwrite, it is simply gone from under the reader.
fn replaced_meanwhile(err: StorageError) -> StorageError {
    match err {
        StorageError::PreconditionFailed { .. } => {
            StorageError::Corrupt("the object was replaced while it was being read".into())
        }
        other => other,
    }
}

fn sealed(err: CryptoError) -> StorageError {
    match err {
        CryptoError::UnknownKey(_) | CryptoError::WrongKey(_) => {
            StorageError::Corrupt(format!("cannot open the object's data key: {err}"))
        }
        other => StorageError::Corrupt(format!("encrypted object: {other}")),
    }
}

/// The client's `Content-MD5`, checked by the sealing body, failed.
fn bad_digest(err: StorageError) -> StorageError {
    match err {
        StorageError::Body(body)
            if matches!(
                body.0.downcast_ref::<StorageError>(),
                Some(StorageError::BadDigest)
            ) =>
        {
            StorageError::BadDigest
        }
        other => other,
    }
}

/// The store's own id inside an upload id this layer made (or the id itself).
fn store_upload_id(id: &str) -> &str {
    split_upload_token(id).map_or(id, |(store_id, _, _)| store_id)
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("encrypted object: {what}"))
}

/// A body being sealed on its way into the store: the plaintext's MD5 is taken as it passes
/// (the ETag, and the client's `Content-MD5` checked; on a thread of its own for a large body,
/// as the local backend does), and the stream is finished with it.
struct Sealing {
    body: PutBody,
    encryptor: StreamEncryptor,
    md5: crate::body_md5::BodyMd5,
    content_md5: Option<[u8; 16]>,
    checksum: Option<(String, String)>,
    late_checksum: Option<crate::LateChecksum>,
    late: crate::LateMeta,
}

impl Sealing {
    fn into_body(self) -> PutBody {
        Box::pin(futures_util::stream::unfold(
            Some(self),
            |state| async move {
                let mut this = state?;
                loop {
                    match this.body.next().await {
                        Some(Ok(piece)) => {
                            if let Err(err) = this.md5.update(&piece).await {
                                return Some((Err(BodyError(Box::new(err))), None));
                            }
                            let segment = this.encryptor.header().layout.segment_size() as usize;
                            let grows = piece.len() / segment * 16 + 64;
                            let mut out = Vec::with_capacity(piece.len() + grows + HEADER_LEN);
                            this.encryptor.push(&piece, &mut out);
                            if !out.is_empty() {
                                return Some((Ok(out.into()), Some(this)));
                            }
                        }
                        Some(Err(err)) => return Some((Err(err), None)),
                        None => return Some((this.finish().await, None)),
                    }
                }
            },
        ))
    }

    /// The last segment and the footer, once the digests check out.
    async fn finish(self) -> Result<Bytes, BodyError> {
        let md5 = self
            .md5
            .finish()
            .await
            .map_err(|err| BodyError(Box::new(err)))?;
        if self.content_md5.is_some_and(|expected| expected != md5) {
            return Err(BodyError(Box::new(StorageError::BadDigest)));
        }
        let checksum = self.checksum.or_else(|| {
            self.late_checksum
                .as_ref()
                .and_then(|late| late.lock().ok()?.clone())
        });
        if let Ok(mut late) = self.late.lock() {
            late.insert(ETAG_META.to_owned(), hex::encode(md5));
            if let Some(checksum) = &checksum {
                late.insert(CHECKSUM_META.to_owned(), checksum_text(checksum));
            }
        }
        let segment = self.encryptor.header().layout.segment_size() as usize;
        let mut out = Vec::with_capacity(segment + 16 + FOOTER_LEN);
        self.encryptor.finish(md5, &mut out);
        Ok(out.into())
    }
}

/// Reads at least this large are decrypted on a task of their own, ahead of the response:
/// decryption then overlaps with the TLS and socket writes of the connection's task.
const PIPELINE_AFTER: u64 = 8 << 20;
/// Decrypted pieces waiting for the connection at most (each up to a stored read's piece).
const PIPELINE_DEPTH: usize = 4;

/// `opening` run on its own task, its pieces handed over through a bounded channel. A reader
/// that goes away drops the receiver, which ends the task and the read underneath.
fn pipelined(mut opening: Opening) -> ObjectBody {
    let (tx, rx) = tokio::sync::mpsc::channel(PIPELINE_DEPTH);
    tokio::spawn(async move {
        while let Some(item) = opening.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Stored bytes being opened on their way out, stream after stream (a multipart object's
/// parts): plaintext only of authenticated segments; an integrity failure or an early end is
/// an error, so no client takes a cut body as whole.
struct Opening {
    body: ObjectBody,
    steps: VecDeque<Step>,
    failed: bool,
}

/// What to do with the next stored bytes.
enum Step {
    Open(Box<StreamDecryptor>),
    /// Read past this many (the rest of a stream whose plaintext is not asked for).
    Skip(u64),
}

impl Opening {
    fn fail(&mut self, err: CryptoError) -> Poll<Option<Result<Bytes, StorageError>>> {
        self.failed = true;
        tracing::error!(error = %err, "an encrypted object failed to decrypt");
        Poll::Ready(Some(Err(sealed(err))))
    }

    /// Passes `input` through the steps, appending plaintext to `out`.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        while !input.is_empty() {
            match self.steps.front_mut() {
                None => return Err(CryptoError::TrailingData),
                Some(Step::Skip(n)) => {
                    let used = (*n).min(input.len() as u64);
                    *n -= used;
                    input = &input[used as usize..];
                    if *n == 0 {
                        self.steps.pop_front();
                    }
                }
                Some(Step::Open(decryptor)) => {
                    let used = decryptor.push_some(input, out)?;
                    input = &input[used..];
                    if decryptor.is_done() {
                        decryptor.finish()?;
                        self.steps.pop_front();
                    }
                }
            }
        }
        Ok(())
    }

    /// The stored bytes ended: every step must be done (an empty part's stream reads its
    /// few bytes like any other, so nothing may be left).
    fn end(&mut self) -> Result<(), CryptoError> {
        if self.steps.len() > 1 {
            return Err(CryptoError::Truncated);
        }
        match self.steps.front() {
            None => Ok(()),
            Some(Step::Open(decryptor)) => decryptor.finish().map(drop),
            Some(Step::Skip(_)) => Err(CryptoError::Truncated),
        }
    }
}

impl Stream for Opening {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.failed {
                return Poll::Ready(None);
            }
            match ready!(this.body.poll_next_unpin(cx)) {
                Some(Ok(piece)) => {
                    let mut out = Vec::with_capacity(piece.len());
                    if let Err(err) = this.feed(&piece, &mut out) {
                        return this.fail(err);
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out.into())));
                    }
                }
                Some(Err(err)) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    if let Err(err) = this.end() {
                        return this.fail(err);
                    }
                    this.failed = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

#[async_trait]
impl Backend for Encrypted {
    fn resolve(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(&dyn Backend, BucketName, ObjectKey), StorageError> {
        // Copies read through this layer (never the stored bytes underneath).
        Ok((self, bucket.clone(), key.clone()))
    }

    fn encryption(&self) -> Option<Policy> {
        Some(self.policy)
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>, StorageError> {
        self.inner.list_buckets(tenant).await
    }

    async fn create_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        self.inner.create_bucket(tenant, bucket).await
    }

    async fn head_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        self.inner.head_bucket(tenant, bucket).await
    }

    async fn delete_bucket(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> Result<(), StorageError> {
        self.inner.delete_bucket(tenant, bucket).await
    }

    async fn bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
    ) -> Result<Option<String>, StorageError> {
        self.inner.bucket_config(tenant, bucket, name).await
    }

    async fn set_bucket_config(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        name: &'static str,
        value: Option<String>,
    ) -> Result<(), StorageError> {
        self.inner
            .set_bucket_config(tenant, bucket, name, value)
            .await
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        mut put: PutObject,
        body: PutBody,
    ) -> Result<ObjectMeta, StorageError> {
        let customer = put.customer_key.take();
        if !(self.encrypts_new_objects()
            || put.encrypt
            || customer.is_some()
            || self.bucket_default(tenant, bucket).await?)
        {
            return self.inner.put_object(tenant, bucket, key, put, body).await;
        }
        put.condition = self
            .store_condition(tenant, bucket, key, std::mem::take(&mut put.condition))
            .await?;
        let (data_key, envelope) = self.new_key(customer.as_ref());
        let layout = envelope.layout;
        put.system_meta
            .insert(ENVELOPE_META.to_owned(), envelope.to_meta());
        let (sealed_body, late) = Self::seal(&mut put, body, &data_key, layout, 0);
        let stored = self
            .inner
            .put_object(tenant, bucket, key, put, sealed_body)
            .await
            .map_err(bad_digest)?;
        let etag = late
            .lock()
            .ok()
            .and_then(|late| late.get(ETAG_META).cloned())
            .ok_or_else(|| corrupt("the body ended without its ETag"))?;
        let size = layout.plain_len(stored.size).map_err(sealed)?;
        self.described.insert(
            cache_key(bucket, key, &stored.etag),
            Arc::new(Described {
                etag: etag.clone(),
                size,
                parts: None,
            }),
        );
        let mut meta = stored;
        meta.size = size;
        meta.etag = etag;
        meta.checksum = sealed_checksum(&late);
        mark_encrypted(&mut meta, &envelope.wrapping);
        Ok(meta)
    }

    async fn head_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.read(tenant, bucket, key, read, false).await
    }

    async fn get_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        read: ReadRequest,
    ) -> Result<ObjectRead, StorageError> {
        self.read(tenant, bucket, key, read, true).await
    }

    async fn copy_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        source: CopySource<'_>,
        copy: CopyObject,
    ) -> Result<ObjectMeta, StorageError> {
        let same_layer = std::ptr::addr_eq(source.store as *const dyn Backend, self as *const Self);
        // SSE-C on either side: streamed, decrypted with one key and sealed with the other.
        if same_layer
            && source.customer_key.is_none()
            && copy.customer_key.is_none()
            && (self.encrypts_new_objects() || self.bucket_default(tenant, bucket).await?)
        {
            let stored = self.stored_head(tenant, source.bucket, source.key).await?;
            let view = self
                .view(tenant, source.bucket, source.key, stored.clone(), None)
                .await?;
            if let Some(view) = view.filter(|v| v.key.is_some()) {
                // An encrypted source stays as it is stored: only its envelope is rewritten.
                source.conditions.check_copy_source(&view.meta)?;
                let condition = self
                    .store_condition(tenant, bucket, key, copy.condition)
                    .await?;
                let at = Place {
                    tenant,
                    bucket,
                    key,
                };
                let from = Place {
                    tenant,
                    bucket: source.bucket,
                    key: source.key,
                };
                let envelope = self.rewrapped(&view.envelope, view.key.as_ref())?;
                let headers = copy.headers.unwrap_or_else(|| view.meta.headers.clone());
                let mut meta = self
                    .copy_stored(at, from, &stored, &envelope, headers, copy.tags, condition)
                    .await?;
                meta.size = view.meta.size;
                meta.etag = view.meta.etag;
                mark_encrypted(&mut meta, &envelope.wrapping);
                return Ok(meta);
            }
        }
        // Through this layer both ways: the source decrypted, the copy sealed anew.
        crate::stream_copy(self, tenant, bucket, key, source, copy).await
    }

    async fn get_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        self.inner.get_tags(tenant, bucket, key).await
    }

    async fn set_tags(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        tags: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        self.inner.set_tags(tenant, bucket, key, tags).await
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(), StorageError> {
        self.inner.delete_object(tenant, bucket, key).await
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: ListRequest,
    ) -> Result<ListPage, StorageError> {
        let mut page = self.inner.list_objects(tenant, bucket, request).await?;
        if !self.inner.lists_system_meta() {
            self.describe_listed(tenant, bucket, &mut page.objects)
                .await?;
            return Ok(page);
        }
        for (key, meta) in &mut page.objects {
            // Plaintext entries are left as they are (not even copied).
            if meta.system_meta.contains_key(ENVELOPE_META) {
                let stored = std::mem::take(meta);
                match self.view(tenant, bucket, key, stored.clone(), None).await {
                    Ok(view) => *meta = view.expect("an envelope makes a view").meta,
                    Err(err) => {
                        listed_anyway(key, err)?;
                        *meta = stored;
                        meta.system_meta.clear();
                    }
                }
            }
        }
        Ok(page)
    }

    async fn create_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        mut upload: NewUpload,
    ) -> Result<String, StorageError> {
        let customer = upload.customer_key.take();
        if !(self.encrypts_new_objects()
            || upload.encrypt
            || customer.is_some()
            || self.bucket_default(tenant, bucket).await?)
        {
            return self
                .inner
                .create_multipart_upload(tenant, bucket, key, upload)
                .await;
        }
        let (_, envelope) = self.new_key(customer.as_ref());
        upload
            .system_meta
            .insert(ENVELOPE_META.to_owned(), envelope.to_meta());
        let store_id = self
            .inner
            .create_multipart_upload(tenant, bucket, key, upload)
            .await?;
        let mac_key = self.upload_mac_key(&envelope)?;
        Ok(upload_token(&store_id, &envelope, &mac_key))
    }

    async fn head_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        self.upload_key(upload_id, None)?;
        self.inner
            .head_upload(tenant, bucket, key, store_upload_id(upload_id))
            .await
    }

    async fn upload_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        mut put: PutObject,
        body: PutBody,
    ) -> Result<PartInfo, StorageError> {
        let Some((store_id, envelope, data_key)) =
            self.upload_key(part.upload_id, part.customer_key)?
        else {
            self.plaintext_upload_allowed()?;
            return self
                .inner
                .upload_part(tenant, bucket, key, part, put, body)
                .await;
        };
        // Each part is a stream of its own, its number in its header.
        let data_key = data_key.ok_or(StorageError::CustomerKey(CustomerKeyProblem::Missing))?;
        let layout = envelope.layout;
        let (sealed_body, late) = Self::seal(&mut put, body, &data_key, layout, part.number);
        let store_part = PartId {
            upload_id: &store_id,
            number: part.number,
            customer_key: None,
        };
        let mut info = self
            .inner
            .upload_part(tenant, bucket, key, store_part, put, sealed_body)
            .await
            .map_err(bad_digest)?;
        info.size = layout.plain_len(info.size).map_err(sealed)?;
        info.checksum = sealed_checksum(&late);
        Ok(info)
    }

    async fn copy_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        part: PartId<'_>,
        source: CopySource<'_>,
        range: Option<ReadRange>,
    ) -> Result<PartInfo, StorageError> {
        // The source read through its layer, the part sealed by `upload_part`.
        crate::stream_copy_part(self, tenant, bucket, key, part, source, range).await
    }

    async fn complete_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: Vec<CompletePart>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, StorageError> {
        let Some((store_id, envelope, data_key)) = self.upload_key(upload_id, None)? else {
            self.plaintext_upload_allowed()?;
            return self
                .inner
                .complete_multipart_upload(tenant, bucket, key, upload_id, parts, condition)
                .await;
        };
        let condition = self.store_condition(tenant, bucket, key, condition).await?;
        let mut meta = self
            .inner
            .complete_multipart_upload(tenant, bucket, key, &store_id, parts, condition)
            .await?;
        let footer_key = self.footer_key(&envelope, data_key.as_ref())?;
        let object = Stored {
            etag: &meta.etag,
            size: meta.size,
            parts: meta.parts,
        };
        let described = self
            .describe(
                tenant,
                bucket,
                key,
                &object,
                &footer_key,
                envelope.layout,
                None,
            )
            .await?;
        if described.parts.is_none() {
            return Err(corrupt("a completed upload that is not multipart"));
        }
        meta.size = described.size;
        meta.etag = described.etag.clone();
        mark_encrypted(&mut meta, &envelope.wrapping);
        Ok(meta)
    }

    async fn abort_multipart_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        self.inner
            .abort_multipart_upload(tenant, bucket, key, store_upload_id(upload_id))
            .await
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool), StorageError> {
        let encrypted = self.upload_key(upload_id, None)?;
        let (mut parts, more) = self
            .inner
            .list_parts(tenant, bucket, key, store_upload_id(upload_id), after, max)
            .await?;
        if let Some((_, envelope, _)) = encrypted {
            for part in &mut parts {
                part.size = envelope.layout.plain_len(part.size).map_err(sealed)?;
            }
        }
        Ok((parts, more))
    }

    async fn list_multipart_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        request: UploadListRequest,
    ) -> Result<UploadListPage, StorageError> {
        self.inner
            .list_multipart_uploads(tenant, bucket, request)
            .await
    }
}
