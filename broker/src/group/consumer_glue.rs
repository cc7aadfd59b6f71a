//! KIP-848 groups on the coordinator shard: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe through the state machine in [`super::consumer`], the records its
//! changes need written before the answer goes out, and the expiry of silent members.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use tracing::info;
use uuid::Uuid;

use super::consumer as cg;
use super::coordinator::{group_entry, Groups};
use super::records::{consumer_records, offsets_partition};
use crate::runtime;

/// The KIP-848 part of a shard's coordinator state.
#[derive(Default)]
pub(super) struct ConsumerGlue {
    /// An expiry pass is running (at most one at a time).
    expiry_running: Cell<bool>,
    /// Topics as the assignors see them, with the registry version they come from.
    #[allow(clippy::type_complexity)]
    topics_cache: RefCell<Option<(u64, Rc<BTreeMap<String, cg::TopicMeta>>)>>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Groups {
    /// Every topic as the KIP-848 assignors see it (rebuilt only when the registry changes,
    /// not per heartbeat).
    fn assignable_topics(&self) -> Rc<BTreeMap<String, cg::TopicMeta>> {
        let snap = self.image();
        if let Some((version, topics)) = &*self.state.consumer.topics_cache.borrow() {
            if *version == snap.version {
                return topics.clone();
            }
        }
        let topics: Rc<BTreeMap<String, cg::TopicMeta>> = Rc::new(
            snap.topics
                .values()
                .map(|t| {
                    (
                        t.name.to_string(),
                        cg::TopicMeta {
                            id: t.id,
                            partitions: t.partition_count(),
                        },
                    )
                })
                .collect(),
        );
        *self.state.consumer.topics_cache.borrow_mut() = Some((snap.version, topics.clone()));
        topics
    }

    fn consumer_context<'a>(
        &'a self,
        topics: &'a BTreeMap<String, cg::TopicMeta>,
    ) -> cg::Context<'a> {
        cg::Context {
            now: Instant::now(),
            topics,
            session_timeout: Duration::from_millis(self.config().consumer_group_session_timeout_ms),
            heartbeat_interval_ms: self.config().consumer_group_heartbeat_interval_ms as i32,
            members_max: self.config().limits.group_members_max,
            default_assignor: &self.config().consumer_group_assignor,
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848): join, reconcile, leave.
    pub(super) async fn consumer_heartbeat(
        &self,
        partition: i32,
        r: ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: String,
        client_host: String,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = r.group_id.0.to_string();
        let fail = |code: ErrorCode, message: String| {
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(s(&message)))
                .with_member_epoch(-1)
        };
        let mut member_id = r.member_id.to_string();
        if member_id.is_empty() && version == 0 && r.member_epoch == 0 {
            // v0: the coordinator names new members (v1 clients name themselves).
            member_id = Uuid::from_u128(fastrand::u128(..)).simple().to_string();
        }
        let hb = cg::Heartbeat {
            member_id,
            member_epoch: r.member_epoch,
            instance_id: r.instance_id.as_ref().map(|v| v.to_string()),
            rack_id: r.rack_id.as_ref().map(|v| v.to_string()),
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            topics: r
                .subscribed_topic_names
                .as_ref()
                .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
            regex: r.subscribed_topic_regex.as_ref().map(|v| v.to_string()),
            assignor: r.server_assignor.as_ref().map(|v| v.to_string()),
            owned: r.topic_partitions.as_ref().map(|tps| {
                tps.iter()
                    .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
                    .collect()
            }),
            client_id,
            client_host,
        };
        let topics = self.assignable_topics();
        let ctx = self.consumer_context(&topics);
        let (reply, records) = {
            let mut groups = self.state.groups.borrow_mut();
            let g = match group_entry(
                &mut groups,
                &group_id,
                self.config().limits.groups_per_shard_max,
            ) {
                Ok(g) => g,
                Err(code) => {
                    return fail(
                        code,
                        "this coordinator has limits.groups_per_shard_max groups".to_string(),
                    )
                }
            };
            if g.consumer.is_none() {
                if g.classic.has_members() {
                    return fail(
                        ErrorCode::GroupIdNotFound,
                        format!("group {group_id} is a classic group with members"),
                    );
                }
                g.consumer = Some(cg::ConsumerGroup::default());
            }
            let c = g.consumer.as_mut().expect("set above");
            let mut changes = cg::Changes::default();
            let before = (c.epoch, c.members.len());
            match c.heartbeat(hb, &ctx, &mut changes) {
                Ok(reply) => {
                    if before != (c.epoch, c.members.len()) {
                        info!(group = %group_id, epoch = c.epoch, members = c.members.len(),
                            assignor = %c.assignor, "consumer group epoch moved");
                    }
                    (reply, consumer_records(&group_id, c, &changes))
                }
                Err((code, message)) => return fail(code, message),
            }
        };
        if let Err(code) = self.persist(partition, records).await {
            return fail(
                code,
                "cannot write the group state to __consumer_offsets".to_string(),
            );
        }
        let assignment = reply.assignment.map(|a| {
            consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
                a.into_iter()
                    .map(|(t, ps)| {
                        consumer_group_heartbeat_response::TopicPartitions::default()
                            .with_topic_id(t)
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        });
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s(&reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(ctx.heartbeat_interval_ms)
            .with_assignment(assignment)
    }

    /// ConsumerGroupDescribe of one group this shard coordinates.
    pub(super) fn consumer_describe(
        &self,
        group: &str,
    ) -> consumer_group_describe_response::DescribedGroup {
        use consumer_group_describe_response::{
            Assignment as DAssignment, DescribedGroup as D, Member as DMember,
            TopicPartitions as DTp,
        };
        let base = D::default().with_group_id(GroupId(s(group)));
        let groups = self.state.groups.borrow();
        let Some(g) = groups.get(group) else {
            return base
                .with_error_code(ErrorCode::GroupIdNotFound.code())
                .with_error_message(Some(s(&format!("group {group} does not exist"))))
                .with_group_state(s("Dead"));
        };
        let Some(c) = &g.consumer else {
            return base
                .with_error_code(ErrorCode::GroupIdNotFound.code())
                .with_error_message(Some(s(&format!("group {group} is not a consumer group"))))
                .with_group_state(s("Dead"));
        };
        let snap = self.image();
        let describe = |a: &cg::Assignment| {
            DAssignment::default().with_topic_partitions(
                a.iter()
                    .map(|(t, ps)| {
                        DTp::default()
                            .with_topic_id(*t)
                            .with_topic_name(TopicName(s(&snap
                                .topic_by_id(*t)
                                .map(|i| i.name.to_string())
                                .unwrap_or_default())))
                            .with_partitions(ps.iter().copied().collect())
                    })
                    .collect(),
            )
        };
        base.with_group_state(s(cg::state_name(c)))
            .with_group_epoch(c.epoch)
            .with_assignment_epoch(c.assignment_epoch)
            .with_assignor_name(s(&c.assignor))
            .with_authorized_operations(i32::MIN)
            .with_members(
                c.members
                    .values()
                    .map(|m| {
                        DMember::default()
                            .with_member_id(s(&m.id))
                            .with_instance_id(m.instance_id.as_deref().map(s))
                            .with_rack_id(m.rack_id.as_deref().map(s))
                            .with_member_epoch(m.epoch)
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host))
                            .with_subscribed_topic_names(
                                m.topics.iter().map(|t| TopicName(s(t))).collect(),
                            )
                            .with_subscribed_topic_regex(m.regex.as_deref().map(s))
                            .with_assignment(describe(&m.assigned))
                            .with_target_assignment(describe(&m.target))
                    })
                    .collect(),
            )
    }

    /// Removes KIP-848 members whose session ran out, and persists that, in a background
    /// task. Each group's change is computed right before its write starts, so a heartbeat
    /// that comes in meanwhile cannot be overtaken by an older state of its group.
    pub(super) fn expire_consumer_members(&self) {
        if self.state.consumer.expiry_running.get() {
            return;
        }
        let topics = self.assignable_topics();
        let due: Vec<String> = {
            let ctx = self.consumer_context(&topics);
            self.state
                .groups
                .borrow()
                .iter()
                .filter(|(_, g)| {
                    g.consumer
                        .as_ref()
                        .is_some_and(|c| !c.expired(&ctx).is_empty())
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        let Some(partitions) = self.offsets_partitions() else {
            return;
        };
        if due.is_empty() {
            return;
        }
        self.state.consumer.expiry_running.set(true);
        let me = self.clone();
        runtime::spawn(async move {
            for id in due {
                let records = {
                    let topics = me.assignable_topics();
                    let ctx = me.consumer_context(&topics);
                    let mut groups = me.state.groups.borrow_mut();
                    let Some(c) = groups.get_mut(&id).and_then(|g| g.consumer.as_mut()) else {
                        continue;
                    };
                    let mut changes = cg::Changes::default();
                    let dead = c.expire(&ctx, &mut changes);
                    if dead.is_empty() {
                        continue;
                    }
                    info!(group = %id, members = ?dead, epoch = c.epoch,
                        "consumer group members expired (session or rebalance timeout)");
                    consumer_records(&id, c, &changes)
                };
                // A failure is logged inside; the group's next change writes its state again.
                let _ = me
                    .persist(offsets_partition(&id, partitions), records)
                    .await;
            }
            me.state.consumer.expiry_running.set(false);
        });
    }
}
