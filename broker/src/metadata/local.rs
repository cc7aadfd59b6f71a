//! The single-broker authority: the topic registry file, changed by shard 0 only.
//!
//! A change is checked against the current image ([`super::change`]), written to the
//! registry file atomically, and turns into the next image, which shard 0 hands to every
//! shard before the change is answered: a client that saw its CreateTopics succeed finds
//! the topic on whichever shard its next connection lands.
//!
//! In cluster mode the raft group is the authority for topics and brokers, and this
//! registry keeps only what is the broker's own: its provisional cluster id and its block
//! of producer ids.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rill_net::ErrorCode;
use rill_storage::{Backend, DmaBackend};
use tracing::{error, info};
use uuid::Uuid;

use crate::config::topic::{BrokerDefaults, TopicSettings};
use crate::config::{BrokerConfig, Limits};
use crate::errors::KafkaError;
use crate::fifo::{Acquire, FifoLock};
use crate::metadata::change::{self, Change, Outcome};
use crate::metadata::image::{BrokerInfo, Image, Placement, TopicInfo};
use crate::metadata::registry::{new_topic_id, RegistryFile, TopicRecord};

/// Cluster mode: producer ids are `node_id << PRODUCER_ID_NODE_SHIFT | n` (2^40 per broker),
/// so a producer that moves to another leader is never mistaken for one that broker handed
/// out itself (as Kafka's controller-issued id blocks do).
const PRODUCER_ID_NODE_SHIFT: u32 = 40;

/// The registry, on shard 0.
pub struct LocalRegistry {
    file: RefCell<RegistryFile>,
    version: Cell<u64>,
    /// One change at a time, from its checks to every shard having its image.
    lock: FifoLock,
    path: PathBuf,
    me: BrokerInfo,
    file_defaults: BTreeMap<String, String>,
    limits: Limits,
    /// In a cluster: producer ids carry the node id, and topics live in the raft group.
    cluster: bool,
}

impl LocalRegistry {
    pub fn new(file: RegistryFile, config: &BrokerConfig, cluster: bool) -> LocalRegistry {
        LocalRegistry {
            file: RefCell::new(file),
            version: Cell::new(0),
            lock: FifoLock::new(),
            path: RegistryFile::path(&config.data_dir),
            me: BrokerInfo::of_config(config),
            file_defaults: config.topic_default_strings(),
            limits: config.limits.clone(),
            cluster,
        }
    }

    /// Serializes changes: held from a change's checks until every shard has its image.
    pub fn lock(&self) -> Acquire {
        self.lock.lock()
    }

    /// The image of the registry as it is now.
    pub fn image(&self) -> Result<Image, String> {
        image_of(
            self.version.get(),
            &self.file.borrow(),
            &self.me,
            &self.file_defaults,
        )
    }

    /// Checks `change` and, unless `validate_only`, makes it: the registry file is written
    /// before this returns, with the next image to hand to every shard. Caller holds
    /// [`LocalRegistry::lock`].
    pub async fn change(
        &self,
        change: Change,
        validate_only: bool,
    ) -> Result<(Outcome, Option<Arc<Image>>), KafkaError> {
        let image = self
            .image()
            .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?;
        let mut file = self.file.borrow().clone();
        let (outcome, changed) = self.apply(&image, &mut file, change, validate_only)?;
        if !changed {
            return Ok((outcome, None));
        }
        DmaBackend::new()
            .write_small_atomic(&self.path, &file.encode())
            .await
            .map_err(|e| {
                error!(error = %e, path = %self.path.display(), "cannot write the topic registry");
                KafkaError::new(ErrorCode::KafkaStorageError, e.to_string())
            })?;
        let version = self.version.get() + 1;
        let next = image_of(version, &file, &self.me, &self.file_defaults)
            .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?;
        self.version.set(version);
        *self.file.borrow_mut() = file;
        // Answer with the topic as every shard will see it.
        let outcome = match outcome {
            Outcome::Topic(t) => Outcome::Topic(next.topic(&t.name).cloned().unwrap_or(t)),
            other => other,
        };
        Ok((outcome, Some(Arc::new(next))))
    }

    /// Applies `change` to `file`; says whether the file changed.
    fn apply(
        &self,
        image: &Image,
        file: &mut RegistryFile,
        change: Change,
        validate_only: bool,
    ) -> Result<(Outcome, bool), KafkaError> {
        let find =
            |file: &RegistryFile, name: &str| file.topics.iter().position(|t| t.name == name);
        let keep = !validate_only;
        match change {
            Change::AllocateProducerId => {
                let local = file.next_producer_id;
                file.next_producer_id += 1;
                let id = if self.cluster {
                    (i64::from(self.me.id) << PRODUCER_ID_NODE_SHIFT)
                        | (local & ((1 << PRODUCER_ID_NODE_SHIFT) - 1))
                } else {
                    local
                };
                Ok((Outcome::ProducerId(id), true))
            }
            _ if self.cluster => Err(KafkaError::new(
                ErrorCode::NotController,
                "in cluster mode the metadata raft group makes this change",
            )),
            Change::CreateTopic(spec) => {
                let checked = change::check_new_topic(image, &spec, &self.limits)?;
                // One broker: every replica list is this broker (the checks refused others).
                if spec.assignments.is_none() && spec.replication_factor > 1 {
                    return Err(KafkaError::new(
                        ErrorCode::InvalidReplicationFactor,
                        format!(
                            "replication factor {} is larger than the 1 broker available",
                            spec.replication_factor
                        ),
                    ));
                }
                let record = TopicRecord {
                    name: checked.name,
                    id: new_topic_id(),
                    partitions: checked.partitions,
                    configs: checked.configs,
                };
                let t = topic_info(&record, checked.settings, self.me.id);
                if keep {
                    info!(topic = %record.name, partitions = record.partitions, "topic created");
                    file.topics.push(record);
                }
                Ok((Outcome::Topic(Arc::new(t)), keep))
            }
            Change::DeleteTopic { name } => {
                let i = find(file, &name).ok_or_else(|| KafkaError::unknown_topic(&name))?;
                let t = image
                    .topic(&name)
                    .cloned()
                    .ok_or_else(|| KafkaError::unknown_topic(&name))?;
                file.topics.remove(i);
                info!(topic = %name, "topic deleted");
                Ok((Outcome::Topic(t), true))
            }
            Change::CreatePartitions {
                name,
                count,
                assignments,
            } => {
                let t = change::check_create_partitions(
                    image,
                    &name,
                    count,
                    assignments.as_deref(),
                    &self.limits,
                )?;
                let i = find(file, &name).ok_or_else(|| KafkaError::unknown_topic(&name))?;
                let from = file.topics[i].partitions;
                let mut record = file.topics[i].clone();
                record.partitions = count;
                let grown = topic_info(&record, t.settings.clone(), self.me.id);
                if keep {
                    file.topics[i].partitions = count;
                    info!(topic = %name, from, to = count, "partitions added");
                }
                Ok((Outcome::Topic(Arc::new(grown)), keep))
            }
            Change::AlterTopicConfigs { name, change } => {
                let next = change::check_topic_configs(image, &name, change)?;
                let i = find(file, &name).ok_or_else(|| KafkaError::unknown_topic(&name))?;
                let mut record = file.topics[i].clone();
                record.configs = next;
                let settings = TopicSettings::resolve(&image.defaults, &record.configs)
                    .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?;
                let t = topic_info(&record, settings, self.me.id);
                if keep {
                    info!(topic = %name, configs = ?record.configs, "topic configs changed");
                    file.topics[i] = record;
                }
                Ok((Outcome::Topic(Arc::new(t)), keep))
            }
            Change::AlterBrokerConfigs { broker, change } => {
                // One broker: its own defaults are the broker-wide ones.
                let broker = broker.filter(|b| *b != self.me.id);
                let next = change::check_broker_configs(image, broker, change)?;
                if keep {
                    info!(configs = ?next, "broker topic defaults changed");
                    file.broker_configs = next.into_iter().collect();
                }
                Ok((Outcome::Done, keep))
            }
            // A move to where the partition already is changes nothing.
            Change::Reassign {
                name,
                partition,
                target: Some(target),
            } if image
                .placement(&name, partition)
                .is_some_and(|p| p.replicas == target) =>
            {
                Ok((Outcome::Done, false))
            }
            Change::Reassign { .. }
            | Change::Decommission { .. }
            | Change::Isr { .. }
            | Change::ElectLeader { .. } => Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                "a single-node broker has no other broker to move partitions to; start it \
                     with --controller-quorum to form a cluster",
            )),
        }
    }
}

fn topic_info(record: &TopicRecord, settings: TopicSettings, me: i32) -> TopicInfo {
    TopicInfo {
        name: Arc::from(record.name.as_str()),
        id: Uuid::from_bytes(record.id),
        configs: record.configs.clone(),
        settings,
        partitions: (0..record.partitions)
            .map(|_| Placement::single(me))
            .collect(),
    }
}

/// The image of a single broker's registry: every partition led here, at epoch 0.
pub fn image_of(
    version: u64,
    file: &RegistryFile,
    me: &BrokerInfo,
    file_defaults: &BTreeMap<String, String>,
) -> Result<Image, String> {
    let defaults = BrokerDefaults {
        file: file_defaults.clone(),
        dynamic: file.broker_configs.iter().cloned().collect(),
    };
    let mut topics = BTreeMap::new();
    for t in &file.topics {
        let settings = TopicSettings::resolve(&defaults, &t.configs)
            .map_err(|e| format!("topic {}: {e}", t.name))?;
        let info = topic_info(t, settings, me.id);
        topics.insert(info.name.clone(), Arc::new(info));
    }
    Ok(Image {
        version,
        ready: true,
        me_can_lead: true,
        me: me.clone(),
        cluster_id: Arc::from(file.cluster_id.as_str()),
        cluster_named: true,
        broker_token: None,
        controller: me.id,
        brokers: vec![me.clone()],
        broker_configs: [(None, defaults.dynamic.clone())].into(),
        defaults,
        topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::registry::new_cluster_id;

    #[test]
    fn a_registry_image_places_every_partition_on_this_broker() {
        let file = RegistryFile {
            cluster_id: new_cluster_id(),
            next_producer_id: 7,
            broker_configs: vec![("segment.ms".into(), "60000".into())],
            topics: vec![TopicRecord {
                name: "orders".into(),
                id: new_topic_id(),
                partitions: 3,
                configs: vec![("retention.ms".into(), "1000".into())],
            }],
        };
        let me = BrokerInfo {
            id: 4,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            alive: true,
        };
        let image = image_of(1, &file, &me, &BTreeMap::new()).unwrap();
        let t = image.topic("orders").unwrap();
        assert_eq!(t.settings.retention_ms, 1000);
        assert_eq!(t.settings.segment_ms, 60000);
        assert_eq!(t.partition_count(), 3);
        assert_eq!(t.placement(2), Some(&Placement::single(4)));
        assert_eq!(image.controller, 4);
        assert_eq!(image.live_brokers(), vec![me]);
    }
}
