//! ElectLeaders: preferred and unclean leader elections, decided from this shard's image and
//! made by the metadata authority (the raft group in a cluster). A single broker is a cluster
//! of one: its preferred replica always leads, so every election there is
//! ELECTION_NOT_NEEDED, as Kafka answers on one node.
//!
//! Preferred (type 0): the first replica takes over when it is alive and in the ISR.
//! Unclean (type 1): only a partition without a live leader gets one, a live in-sync replica
//! first, else (when the topic's `unclean.leader.election.enable` allows it) any live
//! replica, which may lose records the old leader had.

use std::rc::Rc;
use std::sync::Arc;

use rill_net::kafka_protocol::messages::elect_leaders_response::*;
use rill_net::kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use rill_net::ErrorCode;

use super::topic_name;
use crate::errors::KafkaError;
use crate::metadata::{Image, Placement, TopicInfo};
use crate::shard::Shard;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// What one partition's election needs: a new leader and ISR, or an answer already.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Elect { leader: i32, isr: Vec<i32> },
    Answer(KafkaError),
}

pub async fn elect(shard: &Rc<Shard>, r: ElectLeadersRequest, v: i16) -> ElectLeadersResponse {
    // v0 has no type field and means preferred.
    let election_type = if v == 0 { PREFERRED } else { r.election_type };
    let image = shard.image();
    let all = r.topic_partitions.is_none();
    let asked: Vec<(Arc<str>, Vec<i32>)> = match r.topic_partitions {
        Some(list) => list
            .into_iter()
            .map(|t| (Arc::from(&*t.topic.0), t.partitions))
            .collect(),
        None => image
            .topics
            .values()
            .map(|t| (t.name.clone(), (0..t.partition_count()).collect()))
            .collect(),
    };
    let mut results = Vec::with_capacity(asked.len());
    for (topic, partitions) in asked {
        let mut answers = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let outcome = elect_one(shard, &image, election_type, &topic, partition).await;
            let result = PartitionResult::default().with_partition_id(partition);
            match outcome {
                Ok(()) => answers.push(result),
                // Kafka leaves partitions that need nothing out of an "every partition" answer.
                Err(e) if all && e.code == ErrorCode::ElectionNotNeeded => {}
                Err(e) => answers.push(
                    result
                        .with_error_code(e.code.code())
                        .with_error_message(e.message_str()),
                ),
            }
        }
        if !answers.is_empty() || !all {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&topic))
                    .with_partition_result(answers),
            );
        }
    }
    let mut response = ElectLeadersResponse::default().with_replica_election_results(results);
    if v >= 1 && !matches!(election_type, PREFERRED | UNCLEAN) {
        response = response.with_error_code(ErrorCode::InvalidRequest.code());
    }
    response
}

async fn elect_one(
    shard: &Rc<Shard>,
    image: &Image,
    election_type: i8,
    topic: &str,
    partition: i32,
) -> Result<(), KafkaError> {
    let t = image
        .topic(topic)
        .ok_or_else(|| KafkaError::unknown_topic(topic))?;
    let placement = t
        .placement(partition)
        .ok_or_else(|| KafkaError::unknown_partition(topic, partition))?;
    match decide(image, t, placement, election_type, partition) {
        Decision::Answer(e) => Err(e),
        Decision::Elect { leader, isr } => {
            shard
                .authority()
                .elect_leader(topic, partition, placement, leader, isr)
                .await
        }
    }
}

/// The election one partition needs, from the image alone (pure, so tests drive it).
fn decide(
    image: &Image,
    t: &TopicInfo,
    p: &Placement,
    election_type: i8,
    partition: i32,
) -> Decision {
    let name = format!("{}-{partition}", t.name);
    let answer = |code, words: String| Decision::Answer(KafkaError::new(code, words));
    match election_type {
        PREFERRED => {
            let Some(&preferred) = p.replicas.first() else {
                return answer(
                    ErrorCode::PreferredLeaderNotAvailable,
                    format!("{name} has no replicas"),
                );
            };
            if p.leader == preferred {
                return answer(
                    ErrorCode::ElectionNotNeeded,
                    format!("the preferred replica {preferred} already leads {name}"),
                );
            }
            if !p.isr.contains(&preferred) || !image.is_alive(preferred) {
                return answer(
                    ErrorCode::PreferredLeaderNotAvailable,
                    format!(
                        "the preferred replica {preferred} of {name} is not alive and in the ISR {:?}; \
                         it takes over once it has caught up",
                        p.isr
                    ),
                );
            }
            Decision::Elect {
                leader: preferred,
                isr: p.isr.clone(),
            }
        }
        UNCLEAN => {
            if p.leader >= 0 && image.is_alive(p.leader) {
                return answer(
                    ErrorCode::ElectionNotNeeded,
                    format!("{name} has a live leader, broker {}", p.leader),
                );
            }
            let live = |b: &&i32| image.is_alive(**b);
            if let Some(&leader) = p.replicas.iter().filter(|b| p.isr.contains(b)).find(live) {
                return Decision::Elect {
                    leader,
                    isr: p.isr.clone(),
                };
            }
            match p.replicas.iter().find(live) {
                Some(&leader) if t.settings.unclean_leader_election => Decision::Elect {
                    leader,
                    isr: vec![leader],
                },
                Some(_) => answer(
                    ErrorCode::EligibleLeadersNotAvailable,
                    format!(
                        "no in-sync replica of {name} is alive and unclean.leader.election.enable \
                         is false for the topic; set it to true to elect a replica that may lack \
                         records"
                    ),
                ),
                None => answer(
                    ErrorCode::EligibleLeadersNotAvailable,
                    format!("no replica of {name} ({:?}) is alive", p.replicas),
                ),
            }
        }
        other => answer(
            ErrorCode::InvalidRequest,
            format!("election type {other} is not 0 (preferred) or 1 (unclean)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::topic::{BrokerDefaults, TopicSettings};
    use crate::metadata::BrokerInfo;

    fn broker(id: i32, alive: bool) -> BrokerInfo {
        BrokerInfo {
            id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            alive,
        }
    }

    fn setup(alive: &[(i32, bool)], unclean: bool) -> (Image, TopicInfo) {
        let mut image = Image::empty(broker(1, true), Arc::from("c"), BrokerDefaults::default());
        image.brokers = alive.iter().map(|&(id, a)| broker(id, a)).collect();
        let configs = vec![(
            "unclean.leader.election.enable".to_string(),
            unclean.to_string(),
        )];
        let settings = TopicSettings::resolve(&BrokerDefaults::default(), &configs).unwrap();
        let t = TopicInfo {
            name: Arc::from("t"),
            id: uuid::Uuid::nil(),
            configs,
            settings,
            partitions: Vec::new(),
        };
        (image, t)
    }

    fn placement(leader: i32, replicas: &[i32], isr: &[i32]) -> Placement {
        Placement {
            leader,
            leader_epoch: 3,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            partition_epoch: 7,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    fn code(d: Decision) -> ErrorCode {
        match d {
            Decision::Answer(e) => e.code,
            Decision::Elect { .. } => ErrorCode::None,
        }
    }

    #[test]
    fn preferred_elections() {
        let (image, t) = setup(&[(1, true), (2, true), (3, false)], false);
        let single = placement(1, &[1], &[1]);
        assert_eq!(
            code(decide(&image, &t, &single, PREFERRED, 0)),
            ErrorCode::ElectionNotNeeded
        );
        let moved = placement(2, &[1, 2], &[1, 2]);
        assert_eq!(
            decide(&image, &t, &moved, PREFERRED, 0),
            Decision::Elect {
                leader: 1,
                isr: vec![1, 2]
            }
        );
        let behind = placement(2, &[1, 2], &[2]);
        assert_eq!(
            code(decide(&image, &t, &behind, PREFERRED, 0)),
            ErrorCode::PreferredLeaderNotAvailable
        );
        let dead = placement(2, &[3, 2], &[3, 2]);
        assert_eq!(
            code(decide(&image, &t, &dead, PREFERRED, 0)),
            ErrorCode::PreferredLeaderNotAvailable
        );
        assert_eq!(
            code(decide(&image, &t, &moved, 7, 0)),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn unclean_elections_need_the_topic_to_allow_them() {
        let (image, strict) = setup(&[(1, true), (2, true), (3, false)], false);
        let led = placement(2, &[1, 2], &[2]);
        assert_eq!(
            code(decide(&image, &strict, &led, UNCLEAN, 0)),
            ErrorCode::ElectionNotNeeded
        );
        // The leader died; an in-sync replica is alive: a clean election.
        let clean = placement(3, &[3, 2, 1], &[3, 2]);
        assert_eq!(
            decide(&image, &strict, &clean, UNCLEAN, 0),
            Decision::Elect {
                leader: 2,
                isr: vec![3, 2]
            }
        );
        // Only an out-of-sync replica is alive.
        let lost = placement(-1, &[3, 1], &[3]);
        assert_eq!(
            code(decide(&image, &strict, &lost, UNCLEAN, 0)),
            ErrorCode::EligibleLeadersNotAvailable
        );
        let (image, lenient) = setup(&[(1, true), (3, false)], true);
        assert_eq!(
            decide(&image, &lenient, &lost, UNCLEAN, 0),
            Decision::Elect {
                leader: 1,
                isr: vec![1]
            }
        );
        let none = placement(-1, &[3], &[3]);
        assert_eq!(
            code(decide(&image, &lenient, &none, UNCLEAN, 0)),
            ErrorCode::EligibleLeadersNotAvailable
        );
    }
}
