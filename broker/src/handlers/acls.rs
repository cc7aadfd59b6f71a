//! DescribeAcls, CreateAcls and DeleteAcls: Rill has no authorizer, so it answers them as
//! Kafka without `authorizer.class.name` does, SECURITY_DISABLED with words saying why, and
//! admin clients report a clear error instead of "unsupported api".

use rill_net::kafka_protocol::messages::create_acls_response::AclCreationResult;
use rill_net::kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use super::s;

const NO_AUTHORIZER: &str =
    "Rill has no authorizer: every client may use every resource, and ACLs cannot be listed, \
     created or deleted";

fn why() -> Option<StrBytes> {
    Some(s(NO_AUTHORIZER))
}

pub fn describe(_r: DescribeAclsRequest) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ErrorCode::SecurityDisabled.code())
        .with_error_message(why())
}

/// One result per creation, in order.
pub fn create(r: CreateAclsRequest) -> CreateAclsResponse {
    let results = r
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(ErrorCode::SecurityDisabled.code())
                .with_error_message(why())
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// One result per filter, in order, matching nothing.
pub fn delete(r: DeleteAclsRequest) -> DeleteAclsResponse {
    let results = r
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(ErrorCode::SecurityDisabled.code())
                .with_error_message(why())
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
