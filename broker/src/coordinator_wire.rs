//! Apache Kafka's coordinator record encodings (the key and value schemas of
//! `__consumer_offsets` and `__transaction_state`): a writer and a reader of their
//! primitive types, non-flexible and flexible (compact lengths, tagged fields), and where a
//! replay of a coordinator's partition reads next. Used by `group` and `txn`; bytes in,
//! values out.

use bytes::{BufMut, Bytes, BytesMut};

/// A record key or value being written, its version (or key type) first.
pub(crate) struct W(pub(crate) BytesMut);

impl W {
    pub(crate) fn new(version: i16) -> W {
        let mut b = BytesMut::with_capacity(64);
        b.put_i16(version);
        W(b)
    }
    pub(crate) fn i8(&mut self, v: u8) -> &mut Self {
        self.0.put_u8(v);
        self
    }
    pub(crate) fn i16(&mut self, v: i16) -> &mut Self {
        self.0.put_i16(v);
        self
    }
    pub(crate) fn i32(&mut self, v: i32) -> &mut Self {
        self.0.put_i32(v);
        self
    }
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.0.put_i64(v);
        self
    }
    /// A non-flexible string: int16 length.
    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        let b = v.as_bytes();
        let len = b.len().min(i16::MAX as usize);
        self.0.put_i16(len as i16);
        self.0.put_slice(&b[..len]);
        self
    }
    pub(crate) fn nullable_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => {
                self.0.put_i16(-1);
                self
            }
            Some(s) => self.str(s),
        }
    }
    /// Non-flexible bytes: int32 length.
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.put_i32(v.len() as i32);
        self.0.put_slice(v);
        self
    }
    pub(crate) fn uvarint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.put_u8(v as u8);
        self
    }
    /// A flexible (compact) string: uvarint length + 1.
    pub(crate) fn cstr(&mut self, v: &str) -> &mut Self {
        self.uvarint(v.len() as u64 + 1);
        self.0.put_slice(v.as_bytes());
        self
    }
    pub(crate) fn nullable_cstr(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.uvarint(0),
            Some(s) => self.cstr(s),
        }
    }
    pub(crate) fn clen(&mut self, n: usize) -> &mut Self {
        self.uvarint(n as u64 + 1)
    }
    pub(crate) fn uuid(&mut self, v: &[u8; 16]) -> &mut Self {
        self.0.put_slice(v);
        self
    }
    pub(crate) fn no_tags(&mut self) -> &mut Self {
        self.uvarint(0)
    }
    pub(crate) fn done(self) -> Bytes {
        self.0.freeze()
    }
}

/// A record key or value being read; `what` names it in errors.
pub(crate) struct R<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) what: &'static str,
}

pub(crate) type Res<T> = Result<T, String>;

impl<'a> R<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.b.len() < n {
            return Err(format!("{} ends early", self.what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(crate) fn i8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn i16(&mut self) -> Res<i16> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    pub(crate) fn i32(&mut self) -> Res<i32> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub(crate) fn i64(&mut self) -> Res<i64> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub(crate) fn utf8(&self, b: &[u8]) -> Res<String> {
        String::from_utf8(b.to_vec()).map_err(|_| format!("{}: a string is not UTF-8", self.what))
    }
    pub(crate) fn nullable_str(&mut self) -> Res<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let b = self.take(len as usize)?;
        self.utf8(b).map(Some)
    }
    pub(crate) fn str(&mut self) -> Res<String> {
        self.nullable_str()?
            .ok_or_else(|| format!("{}: a string that may not be null is null", self.what))
    }
    pub(crate) fn bytes(&mut self) -> Res<Vec<u8>> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Vec::new());
        }
        Ok(self.take(len as usize)?.to_vec())
    }
    pub(crate) fn uvarint(&mut self) -> Res<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.i8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{}: a varint is too long", self.what))
    }
    /// A compact length: None for null.
    pub(crate) fn clen(&mut self) -> Res<Option<usize>> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(None);
        }
        let n = (n - 1) as usize;
        // Every element takes at least a byte: a length past the end is damage.
        if n > self.b.len() {
            return Err(format!("{}: a length runs past the end", self.what));
        }
        Ok(Some(n))
    }
    pub(crate) fn nullable_cstr(&mut self) -> Res<Option<String>> {
        match self.clen()? {
            None => Ok(None),
            Some(n) => {
                let b = self.take(n)?;
                self.utf8(b).map(Some)
            }
        }
    }
    pub(crate) fn cstr(&mut self) -> Res<String> {
        self.nullable_cstr()?
            .ok_or_else(|| format!("{}: a string that may not be null is null", self.what))
    }
    pub(crate) fn uuid(&mut self) -> Res<[u8; 16]> {
        Ok(self.take(16)?.try_into().expect("16 bytes"))
    }
    /// Tagged fields: calls `f` with each (tag, data); unknown ones are skipped.
    pub(crate) fn tags(&mut self, mut f: impl FnMut(u32, &[u8]) -> Res<()>) -> Res<()> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()? as u32;
            let size = self.uvarint()? as usize;
            let data = self.take(size)?;
            f(tag, data)?;
        }
        Ok(())
    }
    pub(crate) fn skip_tags(&mut self) -> Res<()> {
        self.tags(|_, _| Ok(()))
    }
}

/// The offset after the last record batch in `chunks` (a coordinator replaying its
/// partition reads on from there, also past batches the cleaner emptied) (from each batch header's base
/// offset and last offset delta), or -1 if there is none whole.
pub(crate) fn end_of_batches(chunks: &[Bytes]) -> i64 {
    let mut end = -1;
    for chunk in chunks {
        let mut rest: &[u8] = chunk;
        while rest.len() >= 27 {
            let base = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
            let len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
            let last_delta = i32::from_be_bytes(rest[23..27].try_into().expect("4 bytes"));
            let total = len as i64 + 12;
            if len <= 0 || total > rest.len() as i64 {
                break;
            }
            end = end.max(base + last_delta as i64 + 1);
            rest = &rest[total as usize..];
        }
    }
    end
}
