//! A lock that hands itself out strictly in the order it was asked for.
//!
//! Kafka applies the requests of one connection in the order they were sent. Rill runs each
//! request as its own task (pipelining), so what keeps their order is that every step they
//! queue at is first-come, first-served: the sends from one shard to another
//! ([`crate::shard`]) and the appends to one partition ([`crate::partition`]). An ordinary
//! async mutex lets a task that arrives while the lock is being released take it before
//! the waiter that was woken (barging); under load that reorders appends. Here the place in
//! the queue is taken when [`FifoLock::lock`] is *called* (not when its future is first
//! polled), so two calls made in order are served in order.
//!
//! Shard-local (`!Send`): one executor thread owns each lock.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// One place in the queue.
#[derive(Default)]
struct Slot {
    /// The lock was handed to this slot.
    granted: Cell<bool>,
    /// The waiting future was dropped before its turn.
    gone: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

#[derive(Default)]
struct Inner {
    held: Cell<bool>,
    queue: RefCell<VecDeque<Rc<Slot>>>,
}

impl Inner {
    /// Hands the lock to the next waiter still there, or frees it.
    fn release(&self) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            match next {
                Some(slot) if slot.gone.get() => continue,
                Some(slot) => {
                    slot.granted.set(true);
                    if let Some(w) = slot.waker.borrow_mut().take() {
                        w.wake();
                    }
                    return;
                }
                None => {
                    self.held.set(false);
                    return;
                }
            }
        }
    }
}

/// A first-come, first-served async lock.
#[derive(Clone, Default)]
pub struct FifoLock {
    inner: Rc<Inner>,
}

impl FifoLock {
    pub fn new() -> FifoLock {
        FifoLock::default()
    }

    /// Takes a place in the queue now; the future resolves when it is this caller's turn.
    pub fn lock(&self) -> Acquire {
        let slot = Rc::new(Slot::default());
        if self.inner.held.get() {
            self.inner.queue.borrow_mut().push_back(slot.clone());
        } else {
            self.inner.held.set(true);
            slot.granted.set(true);
        }
        Acquire {
            inner: self.inner.clone(),
            slot: Some(slot),
        }
    }

    /// Callers waiting for their turn (not counting the holder).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.inner
            .queue
            .borrow()
            .iter()
            .filter(|s| !s.gone.get())
            .count()
    }
}

/// A place in a [`FifoLock`]'s queue; resolves to the guard.
pub struct Acquire {
    inner: Rc<Inner>,
    /// None once the guard was handed out.
    slot: Option<Rc<Slot>>,
}

impl Future for Acquire {
    type Output = FifoGuard;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FifoGuard> {
        let slot = self.slot.as_ref().expect("Acquire polled after completion");
        if slot.granted.get() {
            self.slot = None;
            return Poll::Ready(FifoGuard {
                inner: self.inner.clone(),
            });
        }
        *slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        if slot.granted.get() {
            // Our turn came but nobody took the guard: pass it on.
            self.inner.release();
        } else {
            slot.gone.set(true);
        }
    }
}

/// Holds a [`FifoLock`] until dropped.
pub struct FifoGuard {
    inner: Rc<Inner>,
}

impl Drop for FifoGuard {
    fn drop(&mut self) {
        self.inner.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = Waker::from(std::sync::Arc::new(Flag(false.into())));
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn turns_follow_the_order_of_the_calls_not_of_the_polls() {
        let lock = FifoLock::new();
        let mut first = lock.lock();
        let mut second = lock.lock();
        let mut third = lock.lock();
        // The third is polled before the second: it still waits for the second.
        let g1 = match poll(&mut first) {
            Poll::Ready(g) => g,
            Poll::Pending => panic!("the first caller holds the lock at once"),
        };
        assert!(poll(&mut third).is_pending());
        assert!(poll(&mut second).is_pending());
        assert_eq!(lock.waiting(), 2);
        drop(g1);
        assert!(poll(&mut third).is_pending(), "the second caller is next");
        let g2 = match poll(&mut second) {
            Poll::Ready(g) => g,
            Poll::Pending => panic!("the second caller's turn"),
        };
        // A caller arriving now queues behind the third (no barging).
        let mut late = lock.lock();
        drop(g2);
        assert!(poll(&mut late).is_pending());
        assert!(poll(&mut third).is_ready());
    }

    #[test]
    fn a_caller_that_gives_up_is_skipped_and_a_granted_unclaimed_turn_passes_on() {
        let lock = FifoLock::new();
        let mut first = lock.lock();
        let second = lock.lock();
        let mut third = lock.lock();
        let g1 = match poll(&mut first) {
            Poll::Ready(g) => g,
            Poll::Pending => panic!("first"),
        };
        drop(second); // gave up while waiting
        assert_eq!(lock.waiting(), 1);
        drop(g1);
        let g3 = match poll(&mut third) {
            Poll::Ready(g) => g,
            Poll::Pending => panic!("the third caller's turn after the second left"),
        };
        let fourth = lock.lock();
        let mut fifth = lock.lock();
        drop(g3); // the fourth is granted but dropped before it polls
        drop(fourth);
        assert!(poll(&mut fifth).is_ready());
    }
}
