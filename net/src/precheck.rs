//! A shape check of request bodies, run before kafka-protocol decodes them.
//!
//! Why: kafka-protocol 0.18 sizes every array with `Vec::with_capacity(count)` straight from
//! the count on the wire (`Array::decode` / `CompactArray::decode` in its `protocol/types.rs`;
//! upstream fixes are still open PRs). A 20-byte request claiming two billion topics asks
//! the allocator for hundreds of GiB, and an allocation failure aborts the process: one
//! client could take the broker down. The walk below follows each api's field layout
//! ([`schema`]) exactly as the decoder will, and rejects the body if any array, string or
//! bytes length could not possibly fit in the bytes that remain (each array element needs
//! at least its minimum wire size). What passes can only make kafka-protocol allocate in
//! proportion to the frame, which `frame_bytes_max` already bounds.
//!
//! The walk never allocates and never panics on any input; it is pure and stateless.

mod schema;
mod schema_admin;
mod schema_txn;

/// Upper end of an open version range ("3+").
const MAX: i16 = i16::MAX;
/// `flexible_min` of a message with no flexible versions.
const FLEX_NONE: i16 = i16::MAX;

/// A field's wire type.
#[derive(Debug)]
pub(crate) enum Ty {
    /// Fixed-width: bool, int8..int64, uint16/32, float64 (the width), uuid (16).
    Fixed(usize),
    /// string: i16 length (compact: unsigned varint length + 1).
    Str,
    /// bytes and records: i32 length (compact: unsigned varint length + 1).
    Bytes,
    /// A nested struct's fields (plus its own tagged section in flexible versions).
    Struct(&'static [Field]),
    /// An array: i32 count (compact: unsigned varint count + 1) then the elements.
    Array(&'static Ty),
    /// A nullable struct: an int8 marker (1: present, anything else: null), then the
    /// struct's fields when present.
    NullableStruct(&'static [Field]),
}

/// One field of a struct or message.
#[derive(Debug)]
pub(crate) struct Field {
    ty: Ty,
    versions: (i16, i16),
    /// `(tag, tagged versions)` for a tagged field.
    tag: Option<(u32, (i16, i16))>,
}

impl Field {
    pub(crate) const fn inline(ty: Ty, min: i16, max: i16) -> Field {
        Field {
            ty,
            versions: (min, max),
            tag: None,
        }
    }

    pub(crate) const fn tagged(
        ty: Ty,
        min: i16,
        max: i16,
        tag: u32,
        tagged_min: i16,
        tagged_max: i16,
    ) -> Field {
        Field {
            ty,
            versions: (min, max),
            tag: Some((tag, (tagged_min, tagged_max))),
        }
    }

    fn present_in(&self, version: i16) -> bool {
        self.versions.0 <= version && version <= self.versions.1
    }

    fn inline_in(&self, version: i16) -> bool {
        self.present_in(version)
            && !matches!(self.tag, Some((_, (lo, hi))) if lo <= version && version <= hi)
    }
}

/// A request body layout.
#[derive(Debug)]
pub(crate) struct Message {
    #[allow(dead_code)] // read by the tests, documents the table
    pub(crate) api_key: i16,
    /// Highest version this layout describes.
    pub(crate) version_max: i16,
    flexible_min: i16,
    fields: &'static [Field],
}

/// Why a body was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrecheckError {
    /// No layout is known for this api at this version.
    NoLayout,
    /// The body is malformed (the reason is for the log).
    Malformed(String),
}

/// Walks `body` as a request of `api_key` at `version`; returns the bytes the walk consumed
/// (the decoder ignores anything after that).
pub(crate) fn check_request_body(
    api_key: i16,
    version: i16,
    body: &[u8],
) -> Result<usize, PrecheckError> {
    let message = layout(api_key).ok_or(PrecheckError::NoLayout)?;
    if version < 0 || version > message.version_max {
        return Err(PrecheckError::NoLayout);
    }
    let mut walk = Walk {
        buf: body,
        pos: 0,
        version,
        flexible: version >= message.flexible_min,
    };
    walk.fields(message.fields)
        .map_err(PrecheckError::Malformed)?;
    Ok(walk.pos)
}

/// The layout of `api_key`'s request, if Rill decodes it.
fn layout(api_key: i16) -> Option<&'static Message> {
    schema::message(api_key)
        .or_else(|| schema_admin::message(api_key))
        .or_else(|| schema_txn::message(api_key))
}

/// The highest version whose layout [`check_request_body`] knows, per api key.
#[cfg(test)]
pub(crate) fn layout_version_max(api_key: i16) -> Option<i16> {
    layout(api_key).map(|m| m.version_max)
}

struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    version: i16,
    flexible: bool,
}

type WalkResult<T> = Result<T, String>;

impl Walk<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> WalkResult<()> {
        if n > self.remaining() {
            return Err(format!(
                "{what} needs {n} bytes at offset {}, {} remain",
                self.pos,
                self.remaining()
            ));
        }
        self.pos += n;
        Ok(())
    }

    fn read_array<const N: usize>(&mut self, what: &str) -> WalkResult<[u8; N]> {
        let start = self.pos;
        self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[start..start + N]);
        Ok(out)
    }

    fn i16(&mut self, what: &str) -> WalkResult<i16> {
        self.read_array::<2>(what).map(i16::from_be_bytes)
    }

    fn i32(&mut self, what: &str) -> WalkResult<i32> {
        self.read_array::<4>(what).map(i32::from_be_bytes)
    }

    /// Unsigned varint exactly as kafka-protocol reads it: at most 5 bytes, stopping at the
    /// first byte without the continuation bit, excess high bits dropped. Matching its quirks
    /// keeps the walk and the decoder at the same offset.
    fn uvarint(&mut self, what: &str) -> WalkResult<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.read_array::<1>(what)?[0] as u32;
            value |= (b & 0x7f).wrapping_shl(i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length or count: `Ok(None)` for null.
    fn length(&mut self, short: bool, what: &str) -> WalkResult<Option<usize>> {
        if self.flexible {
            let n = self.uvarint(what)?;
            Ok(n.checked_sub(1).map(|n| n as usize))
        } else {
            let n = if short {
                self.i16(what)? as i32
            } else {
                self.i32(what)?
            };
            match n {
                -1 => Ok(None),
                n if n < 0 => Err(format!("{what} length {n} is negative")),
                n => Ok(Some(n as usize)),
            }
        }
    }

    fn fields(&mut self, fields: &[Field]) -> WalkResult<()> {
        for field in fields {
            if field.inline_in(self.version) {
                self.ty(&field.ty)?;
            }
        }
        if self.flexible {
            self.tagged(fields)?;
        }
        Ok(())
    }

    fn tagged(&mut self, fields: &[Field]) -> WalkResult<()> {
        let count = self.uvarint("tagged field count")?;
        for _ in 0..count {
            let tag = self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")? as usize;
            if size > self.remaining() {
                return Err(format!(
                    "tagged field {tag} of {size} bytes overruns the body"
                ));
            }
            // kafka-protocol decodes a known tag in place, ignoring `size`; walk it the same
            // way and insist it fills exactly `size`, so both stay in step.
            let known = fields
                .iter()
                .find(|f| matches!(f.tag, Some((t, _)) if t == tag) && f.present_in(self.version));
            match known {
                Some(field) => {
                    let start = self.pos;
                    self.ty(&field.ty)?;
                    if self.pos - start != size {
                        return Err(format!(
                            "tagged field {tag} declares {size} bytes, holds {}",
                            self.pos - start
                        ));
                    }
                }
                None => self.take(size, "unknown tagged field")?,
            }
        }
        Ok(())
    }

    fn ty(&mut self, ty: &Ty) -> WalkResult<()> {
        match ty {
            Ty::Fixed(width) => self.take(*width, "fixed-width field"),
            Ty::Str => match self.length(true, "string")? {
                Some(n) => self.take(n, "string"),
                None => Ok(()),
            },
            Ty::Bytes => match self.length(false, "bytes")? {
                Some(n) => self.take(n, "bytes"),
                None => Ok(()),
            },
            Ty::Struct(fields) => self.fields(fields),
            Ty::NullableStruct(fields) => {
                let [marker] = self.read_array::<1>("nullable struct marker")?;
                if marker == 1 {
                    self.fields(fields)?;
                }
                Ok(())
            }
            Ty::Array(element) => {
                let Some(count) = self.length(false, "array")? else {
                    return Ok(());
                };
                let element_bytes_min = self.wire_bytes_min(element).max(1);
                if count.saturating_mul(element_bytes_min) > self.remaining() {
                    return Err(format!(
                        "array of {count} elements (at least {element_bytes_min} bytes each) \
                         at offset {} cannot fit in the {} bytes that remain",
                        self.pos,
                        self.remaining()
                    ));
                }
                for _ in 0..count {
                    self.ty(element)?;
                }
                Ok(())
            }
        }
    }

    /// The fewest bytes a value of `ty` occupies at this version.
    fn wire_bytes_min(&self, ty: &Ty) -> usize {
        match ty {
            Ty::Fixed(width) => *width,
            Ty::Str if self.flexible => 1,
            Ty::Str => 2,
            Ty::Bytes | Ty::Array(_) if self.flexible => 1,
            Ty::Bytes | Ty::Array(_) => 4,
            Ty::Struct(fields) => {
                let inline: usize = fields
                    .iter()
                    .filter(|f| f.inline_in(self.version))
                    .map(|f| self.wire_bytes_min(&f.ty))
                    .sum();
                inline + usize::from(self.flexible)
            }
            Ty::NullableStruct(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_array_count_is_rejected_before_walking() {
        // Metadata v0: topics array with i32::MAX entries and nothing after.
        let body = [0x7f, 0xff, 0xff, 0xff];
        let err = check_request_body(3, 0, &body).unwrap_err();
        assert!(matches!(err, PrecheckError::Malformed(ref r) if r.contains("cannot fit")));
    }

    #[test]
    fn compact_huge_array_count_is_rejected() {
        // Metadata v9 (flexible): topics compact array count 0xffffffff.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(check_request_body(3, 9, &body).is_err());
    }

    #[test]
    fn null_metadata_topics_is_fine() {
        // Metadata v1: null topics (all topics).
        assert_eq!(check_request_body(3, 1, &[0xff, 0xff, 0xff, 0xff]), Ok(4));
    }

    #[test]
    fn unknown_api_or_version_has_no_layout() {
        assert_eq!(check_request_body(4, 0, &[]), Err(PrecheckError::NoLayout));
        assert_eq!(check_request_body(0, 99, &[]), Err(PrecheckError::NoLayout));
        assert_eq!(check_request_body(0, -1, &[]), Err(PrecheckError::NoLayout));
    }

    /// xorshift64*: small, seeded, good enough to pick shapes.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Writes a random body that follows `fields`' layout at `version`: no nulls (the layout
    /// does not say which fields are nullable), ASCII strings, 0-2 array elements, known
    /// tagged fields sometimes present (ascending, as Kafka requires) plus sometimes an
    /// unknown one.
    struct Gen<'r> {
        rng: &'r mut Rng,
        out: Vec<u8>,
        version: i16,
        flexible: bool,
    }

    impl Gen<'_> {
        fn uvarint(&mut self, mut v: u32) {
            while v >= 0x80 {
                self.out.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.out.push(v as u8);
        }

        fn length(&mut self, n: usize, short: bool) {
            if self.flexible {
                self.uvarint(n as u32 + 1);
            } else if short {
                self.out.extend_from_slice(&(n as i16).to_be_bytes());
            } else {
                self.out.extend_from_slice(&(n as i32).to_be_bytes());
            }
        }

        fn fields(&mut self, fields: &[Field]) {
            for f in fields {
                if f.inline_in(self.version) {
                    self.ty(&f.ty);
                }
            }
            if self.flexible {
                let mut tagged: Vec<(u32, &Field)> = fields
                    .iter()
                    .filter_map(|f| match f.tag {
                        Some((tag, _)) if f.present_in(self.version) => Some((tag, f)),
                        _ => None,
                    })
                    .filter(|_| self.rng.below(2) == 0)
                    .collect();
                tagged.sort_by_key(|(t, _)| *t);
                let unknown = self.rng.below(4) == 0;
                self.uvarint(tagged.len() as u32 + u32::from(unknown));
                for (tag, f) in tagged {
                    let mut inner = Gen {
                        rng: &mut *self.rng,
                        out: Vec::new(),
                        version: self.version,
                        flexible: self.flexible,
                    };
                    inner.ty(&f.ty);
                    let bytes = inner.out;
                    self.uvarint(tag);
                    self.uvarint(bytes.len() as u32);
                    self.out.extend_from_slice(&bytes);
                }
                if unknown {
                    self.uvarint(1000);
                    self.uvarint(3);
                    self.out.extend_from_slice(b"xyz");
                }
            }
        }

        fn ty(&mut self, ty: &Ty) {
            match ty {
                Ty::Fixed(width) => {
                    for _ in 0..*width {
                        let b = self.rng.next() as u8;
                        self.out.push(b);
                    }
                }
                Ty::Str => {
                    let n = self.rng.below(6) as usize;
                    self.length(n, true);
                    for _ in 0..n {
                        let c = b'a' + self.rng.below(26) as u8;
                        self.out.push(c);
                    }
                }
                Ty::Bytes => {
                    let n = self.rng.below(9) as usize;
                    self.length(n, false);
                    for _ in 0..n {
                        let b = self.rng.next() as u8;
                        self.out.push(b);
                    }
                }
                Ty::Struct(fields) => self.fields(fields),
                Ty::NullableStruct(fields) => {
                    if self.rng.below(3) == 0 {
                        self.out.push(0xff);
                    } else {
                        self.out.push(1);
                        self.fields(fields);
                    }
                }
                Ty::Array(element) => {
                    let n = self.rng.below(3) as usize;
                    self.length(n, false);
                    for _ in 0..n {
                        self.ty(element);
                    }
                }
            }
        }
    }

    /// The layout table against kafka-protocol itself: random bodies built from the table
    /// must decode with kafka-protocol and be consumed to the last byte, at every version
    /// Rill supports. A missing, extra or misplaced field in the table fails here.
    #[test]
    fn layouts_match_kafka_protocol_at_every_supported_version() {
        use kafka_protocol::messages::ApiKey;
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for &(key, min, max) in crate::codec::SUPPORTED_VERSIONS {
            let message = layout(key as i16).unwrap();
            for version in min..=max {
                for case in 0..150 {
                    let mut gen = Gen {
                        rng: &mut rng,
                        out: Vec::new(),
                        version,
                        flexible: version >= message.flexible_min,
                    };
                    gen.fields(message.fields);
                    let body = gen.out;
                    assert_eq!(
                        check_request_body(key as i16, version, &body),
                        Ok(body.len()),
                        "{key:?} v{version} case {case}: walk of a generated body"
                    );
                    let mut bytes = bytes::Bytes::from(body.clone());
                    let decoded = crate::codec::decode_body(key, &mut bytes, version).unwrap();
                    if let Err(e) = decoded {
                        panic!(
                            "{key:?} v{version} case {case}: kafka-protocol rejects {body:?}: {e}"
                        );
                    }
                    assert!(
                        bytes.is_empty(),
                        "{key:?} v{version} case {case}: kafka-protocol left {} of {} bytes",
                        bytes.len(),
                        body.len()
                    );
                    let _ = ApiKey::Produce;
                }
            }
        }
    }

    #[test]
    fn every_table_entry_is_reachable() {
        for key in [
            0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28,
            29, 30, 31, 32, 33, 35, 37, 42, 43, 44, 45, 46, 47, 60, 61, 64, 65, 66, 68, 69, 75,
        ] {
            let message = layout(key).unwrap();
            assert_eq!(message.api_key, key);
        }
    }
}
