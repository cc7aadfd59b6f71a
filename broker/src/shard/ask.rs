//! "Ask another shard and await the answer": the one way shards call each other.
//!
//! A request is a closure run on the other shard ([`Shard::ask`]); it travels over the
//! request mesh with an id, and the closure's result comes back over the reply mesh to the
//! asking shard, which hands it to the waiting task. The asking task's future is completed
//! on its own shard, so no waker crosses threads (glommio's foreign-wake path is not safe).
//!
//! Lanes bound what a peer can make a shard hold: partition work ([`Lane::Data`]) takes one
//! of `shard_queue_depth` slots per peer until it is answered, and while none is free the
//! shard stops reading that peer's channel, so a flood waits in the sender's bounded queue.
//! Long polls ([`Lane::Wait`]) are bounded by `fetch_waiters_max` where they park, and are
//! cancelled when their asker gives up. Control work (admin, images, groups, metrics) is
//! rare and runs at once. Replies have their own mesh and are never held back, so a shard
//! that waits for slots still receives the answers its own requests wait for.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use event_listener::Event;
use futures_channel::oneshot;

use super::{shutting_down, Shard};
use crate::errors::KafkaError;
use crate::runtime::{self, Inbound, Peers};

/// What a closure run on another shard answers, boxed to cross the mesh.
type Answer = Box<dyn Any + Send>;
/// A closure run on another shard.
type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = Answer>>> + Send>;

/// How a request is admitted at the shard that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Partition work: holds a slot of `limits.shard_queue_depth` per peer.
    Data,
    /// A long poll: cancelled when the asker drops its future.
    Wait,
    /// Admin, images, groups, metrics: runs at once.
    Control,
}

/// What shards send each other on the request mesh.
pub enum ShardMsg {
    Ask {
        from: usize,
        id: u64,
        lane: Lane,
        job: Job,
    },
    /// The asker of `id` gave up (a long poll answered elsewhere).
    Cancel { from: usize, id: u64 },
}

/// An answer on the reply mesh.
pub struct ReplyMsg {
    id: u64,
    answer: Answer,
}

/// The asking side's state.
pub(super) struct Asking {
    requests: Peers<ShardMsg>,
    replies: Peers<ReplyMsg>,
    next_id: Cell<u64>,
    /// Asks of this shard waiting for their answer.
    waiting: RefCell<HashMap<u64, oneshot::Sender<Answer>>>,
    /// Cancellable jobs running here for other shards, by (asker, id).
    running: RefCell<HashMap<(usize, u64), Rc<Event>>>,
}

impl Asking {
    pub(super) fn new(requests: Peers<ShardMsg>, replies: Peers<ReplyMsg>) -> Asking {
        Asking {
            requests,
            replies,
            next_id: Cell::new(1),
            waiting: RefCell::new(HashMap::new()),
            running: RefCell::new(HashMap::new()),
        }
    }
}

/// Removes an ask from the waiting map when its future is dropped, and tells the other
/// shard to stop a cancellable job.
struct AskGuard {
    shard: Rc<Shard>,
    to: usize,
    id: u64,
    cancel: bool,
    done: bool,
}

impl Drop for AskGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.shard.ask.waiting.borrow_mut().remove(&self.id);
        if self.cancel {
            let (shard, to, id) = (self.shard.clone(), self.to, self.id);
            runtime::spawn(async move {
                let msg = ShardMsg::Cancel { from: shard.id, id };
                let _ = shard.ask.requests.send(to, msg).await;
            });
        }
    }
}

impl Shard {
    /// Runs `job` on shard `to` (directly when that is this shard) and returns its result;
    /// fails only when that shard is stopping.
    pub async fn ask<T, F, Fut>(
        self: &Rc<Self>,
        to: usize,
        lane: Lane,
        job: F,
    ) -> Result<T, KafkaError>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        if to == self.id {
            return Ok(job(self.clone()).await);
        }
        let id = self.ask.next_id.get();
        self.ask.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.ask.waiting.borrow_mut().insert(id, tx);
        let mut guard = AskGuard {
            shard: self.clone(),
            to,
            id,
            cancel: lane == Lane::Wait,
            done: false,
        };
        let job: Job =
            Box::new(move |shard| Box::pin(async move { Box::new(job(shard).await) as Answer }));
        let msg = ShardMsg::Ask {
            from: self.id,
            id,
            lane,
            job,
        };
        if self.ask.requests.send(to, msg).await.is_err() {
            return Err(shutting_down());
        }
        let answer = rx.await.map_err(|_| shutting_down())?;
        guard.done = true;
        drop(guard);
        let answer = answer
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("an answer has the type its job returns"));
        Ok(*answer)
    }

    /// Asks every other shard (in parallel) and this one; the answers in shard order, those
    /// of stopping shards left out.
    pub async fn ask_all<T, F, Fut>(self: &Rc<Self>, job: F) -> Vec<T>
    where
        F: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let asks = (0..self.shards).map(|to| {
            let job = job.clone();
            self.ask(to, Lane::Control, job)
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// Serves the requests of one peer shard until it stops.
    pub async fn serve_peer(self: Rc<Self>, inbound: Inbound<ShardMsg>) {
        let slots = Arc::new(async_lock::Semaphore::new(
            self.config.limits.shard_queue_depth,
        ));
        let from_peer = inbound.from;
        while let Some(msg) = inbound.recv().await {
            match msg {
                ShardMsg::Ask {
                    from,
                    id,
                    lane,
                    job,
                } => {
                    debug_assert_eq!(from, from_peer);
                    let slot = match lane {
                        Lane::Data => Some(slots.acquire_arc().await),
                        Lane::Wait | Lane::Control => None,
                    };
                    let cancelled = (lane == Lane::Wait).then(|| {
                        let e = Rc::new(Event::new());
                        self.ask.running.borrow_mut().insert((from, id), e.clone());
                        e
                    });
                    let shard = self.clone();
                    let inflight = &self.metrics.cross_shard_inflight;
                    inflight.set(inflight.get() + 1);
                    runtime::spawn(async move {
                        let answer = match cancelled {
                            None => Some(job(shard.clone()).await),
                            Some(cancelled) => {
                                let stop = cancelled.listen();
                                let answer = futures_lite::future::or(
                                    async { Some(job(shard.clone()).await) },
                                    async {
                                        stop.await;
                                        None
                                    },
                                )
                                .await;
                                shard.ask.running.borrow_mut().remove(&(from, id));
                                answer
                            }
                        };
                        if let Some(answer) = answer {
                            let _ = shard.ask.replies.send(from, ReplyMsg { id, answer }).await;
                        }
                        let inflight = &shard.metrics.cross_shard_inflight;
                        inflight.set(inflight.get() - 1);
                        drop(slot);
                    });
                }
                ShardMsg::Cancel { from, id } => {
                    if let Some(e) = self.ask.running.borrow_mut().remove(&(from, id)) {
                        e.notify(usize::MAX);
                    }
                }
            }
        }
    }

    /// Hands the answers from one peer shard to the tasks waiting for them, until it stops.
    pub async fn take_replies(self: Rc<Self>, inbound: Inbound<ReplyMsg>) {
        while let Some(ReplyMsg { id, answer }) = inbound.recv().await {
            if let Some(tx) = self.ask.waiting.borrow_mut().remove(&id) {
                let _ = tx.send(answer);
            }
        }
    }
}
