//! Interval histograms in HdrHistogram's interval log format (`intervals.hlog`), the one
//! Java's `HistogramLogWriter` writes and `HistogramLogAnalyzer` / `HistogramLogProcessor`
//! read: one compressed (V2 deflate, base64) histogram per interval and latency kind, tagged
//! `produce-ack` or `end-to-end`, values in microseconds, timestamps in seconds since the
//! run started (`BaseTime`). Built on the main thread as intervals arrive, so only the
//! compressed text is kept, never the interval histograms themselves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::stats::Latency;

/// Tag of produce acknowledgement histograms.
pub const ACK_TAG: &str = "produce-ack";
/// Tag of end-to-end histograms.
pub const E2E_TAG: &str = "end-to-end";

/// An interval log being written.
pub struct IntervalLog {
    buf: Vec<u8>,
    serializer: V2DeflateSerializer,
}

impl std::fmt::Debug for IntervalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalLog")
            .field("bytes", &self.buf.len())
            .finish()
    }
}

impl IntervalLog {
    /// A log whose interval timestamps count from `start_unix_ms`.
    pub fn new(start_unix_ms: i64) -> IntervalLog {
        let mut log = IntervalLog {
            buf: Vec::new(),
            serializer: V2DeflateSerializer::new(),
        };
        let start = UNIX_EPOCH + Duration::from_millis(start_unix_ms.max(0) as u64);
        let header = IntervalLogWriterBuilder::new()
            .add_comment("rill-loadgen interval histograms, values in microseconds")
            .add_comment("tags: produce-ack (intended send to acknowledgement), end-to-end (intended send to consumed)")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut log.buf, &mut log.serializer)
            .map(|_| ());
        // Writing into a Vec cannot fail.
        debug_assert!(header.is_ok());
        log.buf.extend_from_slice(
            b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        );
        log
    }

    /// Appends the non-empty histograms of one interval.
    pub fn append(
        &mut self,
        start: Duration,
        length: Duration,
        tagged: &[(&str, &Latency)],
    ) -> Result<(), String> {
        for &(tag, h) in tagged {
            if h.is_empty() {
                continue;
            }
            let mut writer = IntervalLogWriterBuilder::new()
                .begin_log_with(&mut self.buf, &mut self.serializer)
                .map_err(|e| e.to_string())?;
            writer
                .write_histogram(h, start, length, Tag::new(tag))
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }

    /// The log text.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Wall-clock ms now (for logs that start now).
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    use super::*;
    use crate::stats::latency_histogram;

    #[test]
    fn intervals_round_trip_through_the_standard_format() {
        let mut log = IntervalLog::new(1_700_000_000_000);
        let mut a = latency_histogram();
        let mut b = latency_histogram();
        for v in 1..=100 {
            a.record(v).unwrap();
            b.record(v * 10).unwrap();
        }
        let empty = latency_histogram();
        log.append(
            Duration::ZERO,
            Duration::from_secs(1),
            &[(ACK_TAG, &a), (E2E_TAG, &empty)],
        )
        .unwrap();
        log.append(
            Duration::from_secs(1),
            Duration::from_secs(1),
            &[(ACK_TAG, &a), (E2E_TAG, &b)],
        )
        .unwrap();
        let bytes = log.into_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("#[BaseTime: 1700000000.000"), "{text}");
        let mut seen = Vec::new();
        for entry in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(h) = entry.unwrap() {
                let decoded: Latency = Deserializer::new()
                    .deserialize(&mut base64_decode(h.encoded_histogram()).as_slice())
                    .unwrap();
                seen.push((
                    h.tag().map(|t| t.as_str().to_string()),
                    h.start_timestamp(),
                    decoded.len(),
                    decoded.max(),
                ));
            }
        }
        assert_eq!(
            seen,
            vec![
                (Some(ACK_TAG.into()), Duration::ZERO, 100, 100),
                (Some(ACK_TAG.into()), Duration::from_secs(1), 100, 100),
                (Some(E2E_TAG.into()), Duration::from_secs(1), 100, 1000),
            ]
        );
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let mut acc = 0u32;
        let mut bits = 0;
        for c in s.bytes().filter(|&c| c != b'=') {
            let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
            acc = acc << 6 | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }
}
