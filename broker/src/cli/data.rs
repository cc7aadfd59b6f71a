//! `rill produce` (lines from stdin) and `rill consume` (records to stdout).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::client::{
    decode_record_batches, encode_record_batch, partition_for_key, BatchOptions, ProduceRecord,
};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::kafka_protocol::records::Compression;
use rill_net::ErrorCode;
use serde_json::json;

use super::client::{check, connect_coordinator, list_offsets, CliError, Client, Leaders};
use super::member::{Beat, GroupMember};
use super::{pair, ConsumeArgs, Format, ProduceArgs};

/// Records per produce batch, and bytes per partition batch, before it is sent.
const BATCH_RECORDS_MAX: usize = 1000;
const BATCH_BYTES_MAX: usize = 256 << 10;

fn topic_name(v: &str) -> TopicName {
    TopicName(StrBytes::from_string(v.to_string()))
}

fn parse_acks(s: &str) -> Result<i16, CliError> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(CliError::Usage(format!("--acks {other}: use all, 1 or 0"))),
    }
}

fn parse_compression(s: &str) -> Result<Compression, CliError> {
    Ok(match s {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(CliError::Usage(format!(
                "--compression {other}: use none, gzip, snappy, lz4 or zstd"
            )))
        }
    })
}

pub fn produce(args: ProduceArgs) -> Result<(), CliError> {
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = pair(h)?;
        headers.push((k, Some(Bytes::from(v.into_bytes()))));
    }
    let mut c = Client::connect(&args.common.bootstrap)?;
    // Producing may auto-create the topic, as Kafka's tools do.
    let mut leaders = Leaders::new(&mut c, &args.topic, true)?;
    let partitions = leaders.partitions();
    if let Some(p) = args.partition {
        if !partitions.contains(&p) {
            return Err(CliError::Usage(format!(
                "topic {} has no partition {p} (it has {})",
                args.topic,
                partitions.len()
            )));
        }
    }
    let interactive = std::io::stdin().is_terminal();
    let mut pending: BTreeMap<i32, (Vec<ProduceRecord>, usize)> = BTreeMap::new();
    let mut pending_records = 0usize;
    let mut round_robin = 0usize;
    let mut produced = 0u64;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| CliError::Protocol(format!("reading stdin: {e}")))?;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => {
                partitions[partition_for_key(k.as_bytes(), partitions.len() as u32) as usize]
            }
            (None, None) => {
                round_robin += 1;
                partitions[round_robin % partitions.len()]
            }
        };
        let size = value.len() + key.as_ref().map_or(0, String::len);
        let entry = pending.entry(partition).or_default();
        entry.0.push(ProduceRecord {
            key: key.map(|k| Bytes::from(k.into_bytes())),
            value: Some(Bytes::from(value.into_bytes())),
            headers: headers.clone(),
            timestamp_ms: now_ms(),
        });
        entry.1 += size;
        pending_records += 1;
        let full = entry.1 >= BATCH_BYTES_MAX;
        if interactive || full || pending_records >= BATCH_RECORDS_MAX {
            produced += send_batches(&mut leaders, &args.topic, &mut pending, acks, compression)?;
            pending_records = 0;
        }
    }
    produced += send_batches(&mut leaders, &args.topic, &mut pending, acks, compression)?;
    match args.common.output {
        super::Output::Json => eprintln!("{}", json!({"topic": args.topic, "produced": produced})),
        super::Output::Table => eprintln!("produced {produced} records to {}", args.topic),
    }
    Ok(())
}

/// Sends the pending batches, one Produce request per partition leader.
fn send_batches(
    leaders: &mut Leaders,
    topic: &str,
    pending: &mut BTreeMap<i32, (Vec<ProduceRecord>, usize)>,
    acks: i16,
    compression: Compression,
) -> Result<u64, CliError> {
    if pending.is_empty() {
        return Ok(0);
    }
    let options = BatchOptions {
        compression,
        ..BatchOptions::default()
    };
    let pending = std::mem::take(pending);
    let mut count = 0u64;
    for (leader, parts) in leaders.by_leader(pending.keys().copied()) {
        let mut data = Vec::new();
        for p in parts {
            let records = &pending[&p].0;
            count += records.len() as u64;
            let batch = encode_record_batch(records, &options)
                .map_err(|e| CliError::Protocol(format!("encoding records: {e}")))?;
            data.push(
                produce_request::PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(batch)),
            );
        }
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(data)]);
        let c = leaders.client(leader)?;
        if acks == 0 {
            c.send_no_response(&request)?;
            continue;
        }
        let r = c.send(&request)?;
        for t in &r.responses {
            for p in &t.partition_responses {
                check(
                    format!("produce to {topic}-{}", p.index),
                    p.error_code,
                    p.error_message.as_deref(),
                )?;
            }
        }
    }
    Ok(count)
}

pub fn consume(args: ConsumeArgs) -> Result<(), CliError> {
    if args.group.is_some() && (args.partition.is_some() || args.offset.is_some()) {
        return Err(CliError::Usage(
            "--group assigns partitions and resumes from committed offsets; drop --partition/--offset".into(),
        ));
    }
    let mut c = Client::connect(&args.common.bootstrap)?;
    let mut leaders = Leaders::new(&mut c, &args.topic, false)?;
    let all = leaders.partitions();
    // Group requests go to the group's coordinator, fetches to each partition's leader.
    let mut gc = match &args.group {
        Some(g) => Some(connect_coordinator(&args.common.bootstrap, g)?),
        None => None,
    };
    let mut member = match (&args.group, gc.as_mut()) {
        (Some(g), Some(gc)) => Some(GroupMember::join(gc, g, &args.topic, &all)?),
        _ => None,
    };
    let partitions = match (&member, args.partition) {
        (Some(m), _) => m.assigned.clone(),
        (None, Some(p)) if all.contains(&p) => vec![p],
        (None, Some(p)) => {
            return Err(CliError::Usage(format!(
                "topic {} has no partition {p}",
                args.topic
            )))
        }
        (None, None) => all.clone(),
    };
    let mut next = start_offsets(&mut c, gc.as_mut(), &args, member.as_ref(), &partitions)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    loop {
        if let (Some(m), Some(gc)) = (member.as_mut(), gc.as_mut()) {
            if let Beat::Rejoin = m.maybe_heartbeat(gc)? {
                m.commit(gc, &next, true)?;
                m.rejoin(gc, &all)?;
                let assigned = m.assigned.clone();
                next = start_offsets(&mut c, Some(gc), &args, Some(m), &assigned)?;
            }
            m.commit(gc, &next, false)?;
        }
        if args.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
        if let Some(idle) = args.idle_timeout_ms {
            if last_record.elapsed() >= Duration::from_millis(idle) {
                break;
            }
        }
        let wait = args.idle_timeout_ms.map_or(500, |idle| idle.min(500)) as i32;
        if next.is_empty() {
            // A group member with no partitions (more members than partitions) waits.
            std::thread::sleep(Duration::from_millis(wait.max(0) as u64));
            continue;
        }
        let groups = leaders.by_leader(next.keys().copied());
        // The long poll is shared out over the leaders asked in turn.
        let wait = (wait / groups.len() as i32).max(10);
        let mut responses = Vec::new();
        let mut moved = false;
        for (leader, parts) in groups {
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait)
                .with_min_bytes(1)
                .with_max_bytes(8 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic_name(&args.topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                fetch_request::FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(next[p])
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    )]);
            let r = leaders.client(leader)?.send(&request)?;
            check("fetch", r.error_code, None)?;
            moved |= r
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .any(|p| {
                    p.error_code == ErrorCode::NotLeaderOrFollower.code()
                        || p.error_code == ErrorCode::FencedLeaderEpoch.code()
                });
            responses.extend(r.responses);
        }
        if moved {
            // A partition's leader moved: look the leaders up again and carry on.
            leaders.refresh(&mut c, false)?;
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let r = FetchResponse::default().with_responses(responses);
        for t in &r.responses {
            for p in &t.partitions {
                if p.error_code == ErrorCode::OffsetOutOfRange.code() {
                    return Err(CliError::Kafka {
                        what: format!("consume {}-{}", args.topic, p.partition_index),
                        code: ErrorCode::OffsetOutOfRange,
                        message: Some(format!(
                            "offset {} is outside [{}, {}]",
                            next.get(&p.partition_index).copied().unwrap_or(-1),
                            p.log_start_offset,
                            p.high_watermark
                        )),
                    });
                }
                check(
                    format!("consume {}-{}", args.topic, p.partition_index),
                    p.error_code,
                    None,
                )?;
                let Some(records) = &p.records else { continue };
                let decoded = decode_record_batches(records)
                    .map_err(|e| CliError::Protocol(format!("decoding records: {e}")))?;
                let from = next.get(&p.partition_index).copied().unwrap_or(0);
                for rec in decoded.into_iter().filter(|r| r.offset >= from) {
                    if args.max_messages.is_some_and(|m| printed >= m) {
                        break;
                    }
                    print_record(&mut out, args.format, p.partition_index, &rec)
                        .map_err(|e| CliError::Protocol(format!("writing stdout: {e}")))?;
                    printed += 1;
                    last_record = Instant::now();
                    next.insert(p.partition_index, rec.offset + 1);
                }
            }
        }
        let _ = out.flush();
    }
    if let (Some(m), Some(gc)) = (member.as_mut(), gc.as_mut()) {
        m.commit(gc, &next, true)?;
        m.leave(gc)?;
    }
    Ok(())
}

/// Where to start reading each partition: the group's committed offset, else --offset,
/// else the beginning (--from-beginning) or the end (asked of each partition's leader).
fn start_offsets(
    c: &mut Client,
    coordinator: Option<&mut Client>,
    args: &ConsumeArgs,
    member: Option<&GroupMember>,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, CliError> {
    let committed = match (member, coordinator) {
        (Some(m), Some(gc)) => m.committed(gc)?,
        _ => BTreeMap::new(),
    };
    let start = if args.from_beginning { -2 } else { -1 };
    let missing: Vec<(String, i32)> = partitions
        .iter()
        .filter(|p| !committed.contains_key(p) && args.offset.is_none())
        .map(|p| (args.topic.clone(), *p))
        .collect();
    let listed = if missing.is_empty() {
        BTreeMap::new()
    } else {
        list_offsets(c, &missing, start)?
    };
    let mut next = BTreeMap::new();
    for p in partitions {
        let offset = match (committed.get(p), args.offset) {
            (Some(o), _) => *o,
            (None, Some(o)) => o,
            (None, None) => listed
                .get(&(args.topic.clone(), *p))
                .copied()
                .ok_or_else(|| CliError::Protocol(format!("no offset for partition {p}")))?,
        };
        next.insert(*p, offset);
    }
    Ok(next)
}

fn text(b: &Option<Bytes>) -> String {
    b.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn print_record(
    out: &mut impl Write,
    format: Format,
    partition: i32,
    rec: &rill_net::client::FetchedRecord,
) -> std::io::Result<()> {
    match format {
        Format::Value => writeln!(out, "{}", text(&rec.value)),
        Format::Kv => writeln!(out, "{}\t{}", text(&rec.key), text(&rec.value)),
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = rec
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(text(v))))
                .collect();
            writeln!(
                out,
                "{}",
                json!({
                    "partition": partition,
                    "offset": rec.offset,
                    "timestamp": rec.timestamp_ms,
                    "key": rec.key.as_ref().map(|_| text(&rec.key)),
                    "value": rec.value.as_ref().map(|_| text(&rec.value)),
                    "headers": headers,
                })
            )
        }
    }
}

/// Wall-clock milliseconds for record timestamps.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
