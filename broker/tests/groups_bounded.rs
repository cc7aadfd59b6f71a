//! The number of consumer groups a coordinator shard holds is bounded
//! (`limits.groups_per_shard_max`): past it, a commit or join that would create a new group
//! gets GROUP_MAX_SIZE_REACHED, existing groups keep working, and deleting a group makes
//! room again.

mod common;

use common::groups::{code_name, commit, delete_group, group_options};
use common::Broker;
use rill_net::ErrorCode;

#[test]
fn new_groups_past_the_limit_are_refused_until_one_is_deleted() {
    let mut options = group_options("[limits]\ngroups_per_shard_max = 2\n");
    options.shards = 1;
    let broker = Broker::start_with("groups-bounded", options);
    broker.create_topic("t", 1, &[]);
    let mut net = broker.net();
    let codes = |net: &mut common::NetClient, group: &str| -> i16 {
        let r = commit(net, group, "", None, -1, "t", &[(0, 1)]);
        assert_eq!(r.len(), 1, "{r:?}");
        r[0].1
    };
    assert_eq!(codes(&mut net, "g1"), 0);
    assert_eq!(codes(&mut net, "g2"), 0);
    let refused = codes(&mut net, "g3");
    assert_eq!(
        refused,
        ErrorCode::GroupMaxSizeReached.code(),
        "a third group got {}",
        code_name(refused)
    );
    // The groups that exist still take commits.
    assert_eq!(codes(&mut net, "g1"), 0);
    assert_eq!(delete_group(&mut net, "g2"), 0);
    assert_eq!(codes(&mut net, "g3"), 0, "deleting g2 did not make room");
}
