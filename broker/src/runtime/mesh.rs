//! The bounded channels between every pair of shards (glommio's channel mesh).
//!
//! Sends from one shard to another leave in the order they were *called*: each destination
//! has a first-come, first-served lock ([`crate::fifo::FifoLock`]) taken when `send` is
//! called, so when the channel is full, the waiting senders go out in their order instead of
//! whichever is polled first. That, with the owner's FIFO appends, keeps a connection's
//! requests to a partition on another shard in the order they were sent.

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::channels::shared_channel::ConnectedReceiver;

use crate::fifo::FifoLock;

/// A mesh of bounded channels of `T` between every pair of shards, before the shards join.
pub struct Mesh<T: Send> {
    builder: MeshBuilder<T, Full>,
}

impl<T: Send> Clone for Mesh<T> {
    fn clone(&self) -> Self {
        Mesh {
            builder: self.builder.clone(),
        }
    }
}

impl<T: Send + 'static> Mesh<T> {
    pub(super) fn full(shards: usize, depth: usize) -> Mesh<T> {
        Mesh {
            builder: MeshBuilder::full(shards, depth),
        }
    }

    /// Joins the mesh from this shard (every shard must join): the senders to every other
    /// shard and one receiver from each.
    pub async fn join(self) -> Result<(Peers<T>, Vec<Inbound<T>>), String> {
        let (senders, mut receivers) = self
            .builder
            .join()
            .await
            .map_err(|_| "could not join the shard channel mesh".to_string())?;
        let lanes = (0..senders.nr_consumers())
            .map(|_| FifoLock::new())
            .collect();
        let inbound = receivers
            .streams()
            .into_iter()
            .map(|(from, rx)| Inbound { from, rx })
            .collect();
        Ok((Peers { senders, lanes }, inbound))
    }
}

/// Sends to other shards.
pub struct Peers<T: Send> {
    senders: Senders<T>,
    /// One send order per destination.
    lanes: Vec<FifoLock>,
}

impl<T: Send + 'static> Peers<T> {
    /// Sends `msg` to shard `to` after the sends to it called before this one, waiting
    /// while its queue is full. Fails when that shard has stopped (the message is dropped).
    pub fn send(
        &self,
        to: usize,
        msg: T,
    ) -> impl std::future::Future<Output = Result<(), PeerGone>> + '_ {
        // The place in line is taken now, not at the first poll.
        let turn = self.lanes.get(to).map(FifoLock::lock);
        async move {
            let _turn = match turn {
                Some(t) => t.await,
                None => return Err(PeerGone),
            };
            self.senders.send_to(to, msg).await.map_err(|_| PeerGone)
        }
    }
}

/// The destination shard has stopped (or is this shard, which the mesh does not connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerGone;

/// Messages from one other shard.
pub struct Inbound<T: Send> {
    pub from: usize,
    rx: ConnectedReceiver<T>,
}

impl<T: Send> Inbound<T> {
    /// The next message; None once that shard stopped.
    pub async fn recv(&self) -> Option<T> {
        self.rx.recv().await
    }
}
