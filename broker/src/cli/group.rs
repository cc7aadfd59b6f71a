//! `rill group list|describe|reset-offsets|delete`: consumer groups, their members,
//! committed offsets and lag (log end offset minus committed offset).

use std::collections::BTreeMap;

use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::json;

use super::client::{check, connect_coordinator, list_offsets, CliError, Client};
use super::{table, GroupCmd, Output};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

/// topic, partition, committed offset, log end offset, lag, owning member.
type LagRow = (String, i32, Option<i64>, i64, Option<i64>, String);

/// (topic, partition) -> committed offset of `group`.
fn committed(c: &mut Client, group: &str) -> Result<BTreeMap<(String, i32), i64>, CliError> {
    // v8 asks by a list of groups (and needs the old fields left at their defaults);
    // earlier versions by one group id.
    let request = if c.version(ApiKey::OffsetFetch)? >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(None),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None)
    };
    let r = c.send(&request)?;
    let mut out = BTreeMap::new();
    check(format!("offsets of group {group}"), r.error_code, None)?;
    for t in &r.topics {
        for p in &t.partitions {
            if p.committed_offset >= 0 {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    for g in &r.groups {
        check(format!("offsets of group {group}"), g.error_code, None)?;
        for t in &g.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// The partitions in a consumer-protocol assignment.
fn assigned(bytes: &[u8]) -> Vec<(String, i32)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    let mut body = bytes::Bytes::copy_from_slice(&bytes[2..]);
    match ConsumerProtocolAssignment::decode(&mut body, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.to_string(), *p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn group(cmd: GroupCmd) -> Result<(), CliError> {
    match cmd {
        GroupCmd::List { common } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let r = c.send(&ListGroupsRequest::default())?;
            check("list groups", r.error_code, None)?;
            let mut groups: Vec<(String, String, String)> = r
                .groups
                .iter()
                .map(|g| {
                    (
                        g.group_id.0.to_string(),
                        g.group_state.to_string(),
                        g.protocol_type.to_string(),
                    )
                })
                .collect();
            groups.sort();
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!(groups
                        .iter()
                        .map(|(g, st, pt)| json!({"group": g, "state": st, "protocol_type": pt}))
                        .collect::<Vec<_>>())
                ),
                Output::Table => {
                    let rows: Vec<Vec<String>> = groups
                        .into_iter()
                        .map(|(g, st, pt)| vec![g, st, pt])
                        .collect();
                    print!("{}", table(&["GROUP", "STATE", "PROTOCOL TYPE"], &rows));
                }
            }
            Ok(())
        }
        GroupCmd::Describe { group, common } => {
            let mut c = connect_coordinator(&common.bootstrap, &group)?;
            let g = describe_any(&mut c, &group)?;
            let owner = &g.owner;
            let offsets = committed(&mut c, &group)?;
            let mut parts: Vec<(String, i32)> = offsets.keys().cloned().collect();
            for tp in owner.keys() {
                if !offsets.contains_key(tp) {
                    parts.push(tp.clone());
                }
            }
            parts.sort();
            let ends = if parts.is_empty() {
                BTreeMap::new()
            } else {
                list_offsets(&mut c, &parts, -1)?
            };
            let rows: Vec<LagRow> = parts
                .iter()
                .map(|(t, p)| {
                    let key = (t.clone(), *p);
                    let committed = offsets.get(&key).copied();
                    let end = ends.get(&key).copied().unwrap_or(-1);
                    let lag = committed.map(|c| (end - c).max(0));
                    let member = owner.get(&key).cloned().unwrap_or_else(|| "-".into());
                    (t.clone(), *p, committed, end, lag, member)
                })
                .collect();
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "group": group,
                        "state": g.state,
                        "type": g.group_type,
                        "protocol": g.protocol,
                        "members": g.members.iter().map(|m| json!({
                            "member_id": m.member_id,
                            "client_id": m.client_id,
                            "host": m.host,
                            "instance_id": m.instance_id,
                        })).collect::<Vec<_>>(),
                        "partitions": rows.iter().map(|(t, p, c, e, l, m)| json!({
                            "topic": t, "partition": p, "committed_offset": c,
                            "log_end_offset": e, "lag": l, "member": m,
                        })).collect::<Vec<_>>(),
                    })
                ),
                Output::Table => {
                    println!(
                        "group {group}  type {}  state {}  protocol {}  members {}",
                        g.group_type,
                        g.state,
                        g.protocol,
                        g.members.len()
                    );
                    let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
                    let table_rows: Vec<Vec<String>> = rows
                        .iter()
                        .map(|(t, p, c, e, l, m)| {
                            vec![
                                t.clone(),
                                p.to_string(),
                                opt(*c),
                                e.to_string(),
                                opt(*l),
                                m.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(
                            &[
                                "TOPIC",
                                "PARTITION",
                                "COMMITTED",
                                "LOG END",
                                "LAG",
                                "MEMBER"
                            ],
                            &table_rows
                        )
                    );
                }
            }
            Ok(())
        }
        GroupCmd::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            dry_run,
            common,
        } => {
            let mut c = connect_coordinator(&common.bootstrap, &group)?;
            let target = match (to_earliest, to_latest, to_offset) {
                (true, false, None) => -2,
                (false, true, None) => -1,
                (false, false, Some(o)) if o >= 0 => o,
                _ => {
                    return Err(CliError::Usage(
                        "give exactly one of --to-earliest, --to-latest, --to-offset N".into(),
                    ))
                }
            };
            let m = c.send(
                &MetadataRequest::default()
                    .with_allow_auto_topic_creation(false)
                    .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                    )
                    .with_name(Some(topic_name(&topic)))])),
            )?;
            let t = m
                .topics
                .first()
                .ok_or_else(|| CliError::Protocol("empty Metadata response".into()))?;
            check(format!("topic {topic}"), t.error_code, None)?;
            let parts: Vec<(String, i32)> = t
                .partitions
                .iter()
                .map(|p| (topic.clone(), p.partition_index))
                .collect();
            let offsets = if target < 0 {
                list_offsets(&mut c, &parts, target)?
            } else {
                parts.iter().map(|k| (k.clone(), target)).collect()
            };
            if !dry_run {
                // A commit without member id and generation: the broker accepts it only
                // while the group has no members (stop the consumers first).
                let r = c.send(
                    &OffsetCommitRequest::default()
                        .with_group_id(GroupId(s(&group)))
                        .with_generation_id_or_member_epoch(-1)
                        .with_member_id(s(""))
                        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                offsets
                                    .iter()
                                    .map(|((_, p), o)| {
                                        offset_commit_request::OffsetCommitRequestPartition::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(*o)
                                    })
                                    .collect(),
                            )]),
                )?;
                for t in &r.topics {
                    for p in &t.partitions {
                        check(
                            format!(
                                "reset offsets of group {group} on {topic}-{}",
                                p.partition_index
                            ),
                            p.error_code,
                            None,
                        )?;
                    }
                }
            }
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!({"group": group, "topic": topic, "dry_run": dry_run,
                        "offsets": offsets.iter().map(|((_, p), o)| json!({"partition": p, "offset": o})).collect::<Vec<_>>()})
                ),
                Output::Table => {
                    let rows: Vec<Vec<String>> = offsets
                        .iter()
                        .map(|((t, p), o)| vec![t.clone(), p.to_string(), o.to_string()])
                        .collect();
                    print!("{}", table(&["TOPIC", "PARTITION", "NEW OFFSET"], &rows));
                    if dry_run {
                        println!("(dry run: nothing committed)");
                    }
                }
            }
            Ok(())
        }
        GroupCmd::Delete { group, common } => {
            let mut c = connect_coordinator(&common.bootstrap, &group)?;
            let r = c.send(
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]),
            )?;
            let res = r
                .results
                .first()
                .ok_or_else(|| CliError::Protocol("empty DeleteGroups response".into()))?;
            check(format!("delete group {group}"), res.error_code, None)?;
            match common.output {
                Output::Json => println!("{}", json!({"group": group, "deleted": true})),
                Output::Table => println!("deleted group {group}"),
            }
            Ok(())
        }
    }
}

/// One member as `rill group describe` shows it.
struct DescribedMember {
    member_id: String,
    client_id: String,
    host: String,
    instance_id: Option<String>,
}

/// A group of either kind, as `rill group describe` shows it.
struct Described {
    group_type: &'static str,
    state: String,
    /// The classic protocol (assignor) name, or the KIP-848 server assignor.
    protocol: String,
    members: Vec<DescribedMember>,
    /// (topic, partition) -> "member (host)".
    owner: BTreeMap<(String, i32), String>,
}

/// DescribeGroups, or ConsumerGroupDescribe for a KIP-848 group (which DescribeGroups
/// answers with GROUP_ID_NOT_FOUND, as Kafka does).
fn describe_any(c: &mut Client, group: &str) -> Result<Described, CliError> {
    let what = format!("describe group {group}");
    let d = c.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]))?;
    let g = d
        .groups
        .first()
        .ok_or_else(|| CliError::Protocol("empty DescribeGroups response".into()))?;
    if g.error_code == rill_net::ErrorCode::GroupIdNotFound.code() {
        let d = c.send(
            &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
        )?;
        let g = d
            .groups
            .first()
            .ok_or_else(|| CliError::Protocol("empty ConsumerGroupDescribe response".into()))?;
        check(what, g.error_code, g.error_message.as_deref())?;
        let mut owner = BTreeMap::new();
        for m in &g.members {
            for tp in &m.assignment.topic_partitions {
                for p in &tp.partitions {
                    owner.insert(
                        (tp.topic_name.0.to_string(), *p),
                        format!("{} ({})", &*m.member_id, &*m.client_host),
                    );
                }
            }
        }
        return Ok(Described {
            group_type: "consumer",
            state: g.group_state.to_string(),
            protocol: g.assignor_name.to_string(),
            members: g
                .members
                .iter()
                .map(|m| DescribedMember {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    instance_id: m.instance_id.as_ref().map(|i| i.to_string()),
                })
                .collect(),
            owner,
        });
    }
    check(what.clone(), g.error_code, g.error_message.as_deref())?;
    if g.group_state.as_str() == "Dead" {
        return Err(CliError::Kafka {
            what,
            code: rill_net::ErrorCode::GroupIdNotFound,
            message: Some("no such group".into()),
        });
    }
    let mut owner = BTreeMap::new();
    for m in &g.members {
        for tp in assigned(&m.member_assignment) {
            owner.insert(tp, format!("{} ({})", &*m.member_id, &*m.client_host));
        }
    }
    Ok(Described {
        group_type: "classic",
        state: g.group_state.to_string(),
        protocol: g.protocol_data.to_string(),
        members: g
            .members
            .iter()
            .map(|m| DescribedMember {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            })
            .collect(),
        owner,
    })
}
