//! The partition checkpoint: small rkyv metadata beside the segments.
//!
//! Layout: `b"RILC"`, format version (u32 LE), CRC-32C of the payload (u32 LE),
//! then the rkyv payload. rkyv's validation catches structural damage, the
//! CRC catches flipped bits inside valid-looking fields. Written atomically
//! through [`crate::backend::Backend::write_small_atomic`].

use rkyv::{Archive, Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"RILC";
const VERSION: u32 = 1;
const PREFIX_BYTES: usize = 12;

/// What a clean shutdown leaves so the next open needs no recovery scan.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CleanShutdown {
    pub log_end_offset: i64,
    pub active_base_offset: i64,
    pub active_segment_bytes: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub log_start_offset: i64,
    /// Offsets below this were synced when the checkpoint was written.
    pub recovery_point: i64,
    pub clean_shutdown: Option<CleanShutdown>,
    /// (leader epoch, first offset of that epoch), for replication.
    pub leader_epochs: Vec<(i32, i64)>,
}

/// Where crash recovery of the active segment may start scanning.
///
/// Written (in its own file, after the segment's index files) once a sync
/// has made the bytes before `position` durable, so an open after a crash
/// CRC-checks only what follows, as Kafka does from its recovery point. The
/// open trusts it only if it names the current active segment, lies inside
/// the file, and the batch it says ends at `position` is there, whole and
/// with the recorded CRC; otherwise it scans the whole segment.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPoint {
    pub active_base_offset: i64,
    /// Offsets below this lie before `position`.
    pub next_offset: i64,
    /// Bytes of the active segment that were durable.
    pub position: u64,
    /// Leading entries of the segment's `.index` / `.timeindex` that
    /// describe `[0, position)` (the files may hold later entries too).
    pub offset_entries: u32,
    pub time_entries: u32,
    /// The batch that ends at `position`: where it starts and its CRC.
    pub last_batch_position: u64,
    pub last_batch_crc: u32,
}

const RECOVERY_MAGIC: &[u8; 4] = b"RILR";
const RECOVERY_VERSION: u32 = 1;

impl RecoveryPoint {
    pub fn encode(&self) -> Vec<u8> {
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing a recovery point into memory cannot fail");
        seal(RECOVERY_MAGIC, RECOVERY_VERSION, &payload)
    }

    /// Decodes and validates; the error says what is wrong.
    pub fn decode(buf: &[u8]) -> Result<RecoveryPoint, String> {
        let payload = unseal(RECOVERY_MAGIC, RECOVERY_VERSION, buf)?;
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        rkyv::from_bytes::<RecoveryPoint, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
    }
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing a checkpoint into memory cannot fail");
        seal(MAGIC, VERSION, &payload)
    }

    /// Decodes and validates; the error says what is wrong.
    pub fn decode(buf: &[u8]) -> Result<Checkpoint, String> {
        let payload = unseal(MAGIC, VERSION, buf)?;
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        rkyv::from_bytes::<Checkpoint, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
    }
}

/// Wraps a small metadata payload: `magic`, format `version` (u32 LE), CRC-32C of the
/// payload (u32 LE), then the payload. Shared by every small rkyv file Rill writes (partition
/// checkpoints here, the broker's topic registry).
pub fn seal(magic: &[u8; 4], version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_BYTES + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks what [`seal`] wrote and returns the payload; the error says what is wrong.
pub fn unseal<'a>(magic: &[u8; 4], version: u32, buf: &'a [u8]) -> Result<&'a [u8], String> {
    let name = String::from_utf8_lossy(magic);
    if buf.len() < PREFIX_BYTES || &buf[0..4] != magic {
        return Err(format!("missing {name} header"));
    }
    let found = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if found != version {
        return Err(format!("unknown {name} format version {found}"));
    }
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let payload = &buf[PREFIX_BYTES..];
    if crc32c::crc32c(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_single_bit_flip_is_caught() {
        let c = Checkpoint {
            log_start_offset: 17,
            recovery_point: 1234,
            clean_shutdown: Some(CleanShutdown {
                log_end_offset: 2000,
                active_base_offset: 1500,
                active_segment_bytes: 99_000,
            }),
            leader_epochs: vec![(0, 0), (3, 900)],
        };
        let enc = c.encode();
        assert_eq!(Checkpoint::decode(&enc).unwrap(), c);
        for bit in 0..enc.len() * 8 {
            let mut bad = enc.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Checkpoint::decode(&bad).is_err(),
                "bit {bit} flip not detected"
            );
        }
        assert!(Checkpoint::decode(&enc[..enc.len() - 1]).is_err());
    }

    #[test]
    fn recovery_point_roundtrip_and_every_single_bit_flip_is_caught() {
        let r = RecoveryPoint {
            active_base_offset: 100,
            next_offset: 5000,
            position: 1 << 30,
            offset_entries: 7,
            time_entries: 3,
            last_batch_position: (1 << 30) - 900,
            last_batch_crc: 0xdead_beef,
        };
        let enc = r.encode();
        assert_eq!(RecoveryPoint::decode(&enc).unwrap(), r);
        for bit in 0..enc.len() * 8 {
            let mut bad = enc.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                RecoveryPoint::decode(&bad).is_err(),
                "bit {bit} flip not detected"
            );
        }
        // A checkpoint is not a recovery point, nor the other way round.
        assert!(RecoveryPoint::decode(&Checkpoint::default().encode()).is_err());
        assert!(Checkpoint::decode(&enc).is_err());
    }
}
