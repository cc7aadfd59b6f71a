//! Starting a broker: the data directory, the metadata authority, one shard per core with
//! its services and tasks, the listeners; and stopping it cleanly (SIGTERM / SIGINT). This
//! is the one place that knows every part; the parts know only those below them.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::handlers::FetchSessions;
use crate::metadata::local::{image_of, LocalRegistry};
use crate::metadata::raft::{self, Cluster};
use crate::metadata::{BrokerInfo, Image, RegistryFile};
use crate::partition::hw_checkpoint::{self, HighWatermarks};
use crate::runtime::{self, Listener, ShardStart};
use crate::shard::{ReplyMsg, Shard, ShardMsg, ShardParts};
use crate::{group, replica, server, shard};

/// Runs the broker until SIGTERM / SIGINT; every partition is flushed and sealed before this
/// returns.
pub fn run(config: BrokerConfig) -> Result<(), String> {
    let meta_dir = config.data_dir.join("meta");
    std::fs::create_dir_all(&meta_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}; check the path and its permissions",
            meta_dir.display()
        )
    })?;
    // One broker per data directory: a second one would corrupt the logs.
    let lock_path = meta_dir.join("lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        format!(
            "data directory {} is in use by another rill broker; stop it or pick another --data-dir",
            config.data_dir.display()
        )
    })?;
    if config.offsets_checkpoint_bytes.is_some() {
        warn!(
            "offsets_checkpoint_bytes is no longer used and is ignored: __consumer_offsets is \
             compacted (offsets_topic_segment_bytes sets its segment size); remove the line"
        );
    }
    let leftovers = rill_storage::reaper::reap_leftovers(&config.data_dir);
    if leftovers > 0 {
        info!(
            entries = leftovers,
            "removing partition directories deleted before the last stop"
        );
    }
    let registry = RegistryFile::load(&config.data_dir)?;
    refuse_single_node_data_in_cluster_mode(&config, &registry)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        cluster_id = %registry.cluster_id,
        topics = registry.topics.len(),
        shards = config.shards,
        "starting rill broker"
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    let mut bells = Vec::with_capacity(config.shards);
    let mut sockets = Vec::with_capacity(config.shards);
    for _ in 0..config.shards {
        let (bell, socket) = runtime::doorbell()
            .map_err(|e| format!("cannot create a doorbell socket pair: {e}"))?;
        bells.push(bell);
        sockets.push(socket);
    }
    let cluster = Cluster::start(&config, &registry.cluster_id, bells)?;
    let image = match &cluster {
        Some(c) => c.image(),
        None => Arc::new(image_of(
            0,
            &registry,
            &BrokerInfo::of_config(&config),
            &config.topic_default_strings(),
        )?),
    };
    let config = Arc::new(config);
    let ready = Arc::new(Barrier::new(config.shards));
    let registry = Arc::new(std::sync::Mutex::new(Some(registry)));
    let high_watermarks = Arc::new(hw_checkpoint::load_all(&config.data_dir));
    let shared = Shared {
        high_watermarks,
        config: config.clone(),
        image,
        cluster: cluster.clone(),
        registry,
        ready,
        stop: stop.clone(),
    };
    let result = runtime::run_shards::<ShardMsg, ReplyMsg, _, _>(
        config.shards,
        config.limits.shard_queue_depth,
        rill_storage::backend::dma::SHARD_IO_MEMORY_BYTES,
        sockets,
        stop,
        move |start| shard_main(start, shared.clone()),
    );
    if let Some(c) = &cluster {
        c.stop();
    }
    result?;
    info!("rill broker stopped cleanly");
    drop(lock);
    Ok(())
}

/// What every shard starts from.
#[derive(Clone)]
struct Shared {
    config: Arc<BrokerConfig>,
    image: Arc<Image>,
    cluster: Option<Arc<Cluster>>,
    /// Taken by shard 0.
    registry: Arc<std::sync::Mutex<Option<RegistryFile>>>,
    high_watermarks: Arc<HighWatermarks>,
    ready: Arc<Barrier>,
    stop: Arc<AtomicBool>,
}

async fn shard_main(start: ShardStart<ShardMsg, ReplyMsg>, shared: Shared) -> Result<(), String> {
    let id = start.id;
    let config = shared.config.clone();
    // Each step of a start says when it is done, so a start that stalls shows where.
    info!(
        shard = id,
        "shard executor running; joining the shard meshes"
    );
    let (requests, inbound) = start.requests.join().await?;
    let (replies, reply_inbound) = start.replies.join().await?;
    info!(shard = id, "shard meshes joined");
    let registry = if id == 0 {
        let file = shared
            .registry
            .lock()
            .map_err(|_| "the registry handoff lock is poisoned".to_string())?
            .take();
        file.map(|f| LocalRegistry::new(f, &config, shared.cluster.is_some()))
    } else {
        None
    };
    let shard = Shard::new(ShardParts {
        id,
        shards: start.shards,
        config: config.clone(),
        image: shared.image.clone(),
        requests,
        replies,
        registry,
        cluster: shared.cluster.clone(),
        high_watermarks: shared.high_watermarks.clone(),
    });
    // The services of the modules above the shard, before anything can ask for them.
    group::start(&shard);
    crate::txn::start(&shard);
    server::start(&shard);
    shard.provide(Rc::new(RefCell::new(FetchSessions::new(
        id,
        config.limits.fetch_sessions_max,
    ))));
    for peer in inbound {
        runtime::spawn(shard.clone().serve_peer(peer));
    }
    for peer in reply_inbound {
        runtime::spawn(shard.clone().take_replies(peer));
    }
    let started = std::time::Instant::now();
    shard.apply(shared.image.clone()).await;
    info!(
        shard = id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shard opened its partitions"
    );
    // Nobody is served until every shard has its partitions open.
    shared.ready.wait();
    if shared.cluster.is_some() {
        runtime::spawn(shard.clone().follow_cluster(start.doorbell));
    }
    let listener = Listener::bind(config.listen).map_err(|e| {
        format!(
            "cannot listen on {}: {e}; is another broker running there?",
            config.listen
        )
    })?;
    if id == 0 {
        info!(listen = %config.listen, shards = start.shards, data_dir = %config.data_dir.display(), "rill broker ready");
    }
    shard::tasks::start(&shard);
    runtime::spawn(replica::run(shard.clone()));
    if id == 0 {
        if let Some(addr) = config.metrics_addr() {
            let listener = Listener::bind(addr).map_err(|e| {
                format!("cannot serve metrics on {addr}: {e}; set metrics_listen to a free address or \"\" to turn metrics off")
            })?;
            info!(metrics = %addr, "serving Prometheus metrics at /metrics");
            runtime::spawn(server::metrics_http::serve(shard.clone(), listener));
        }
    }
    server::accept(shard.clone(), listener, shared.stop.clone()).await;
    info!(shard = id, "shutting down");
    shard.close_all().await;
    if shared.stop.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(format!("shard {id} stopped serving"))
    }
}

/// A data directory a single-node broker used holds topics the cluster does not know; in
/// cluster mode the broker follows the cluster's topics and would drop them. Refuse.
fn refuse_single_node_data_in_cluster_mode(
    config: &BrokerConfig,
    registry: &RegistryFile,
) -> Result<(), String> {
    if config.controller_quorum.trim().is_empty()
        || registry.topics.is_empty()
        || raft::has_metadata(&config.data_dir)
    {
        return Ok(());
    }
    let names: Vec<&str> = registry
        .topics
        .iter()
        .map(|t| t.name.as_str())
        .take(5)
        .collect();
    Err(format!(
        "data directory {} holds {} topic(s) of a single-node broker ({}{}); in cluster mode the \
         broker serves the cluster's topics and would delete these. Start it without \
         --controller-quorum to keep serving them, or give the cluster broker an empty --data-dir \
         (importing a single node's topics into a cluster is not supported)",
        config.data_dir.display(),
        registry.topics.len(),
        names.join(", "),
        if registry.topics.len() > names.len() {
            ", ..."
        } else {
            ""
        }
    ))
}
