//! The threads rooms run on. A room is one actor, so everything it does
//! (its members, its order, its deliveries) happens on one thread, in the
//! order its mailbox gives it; but two rooms need not share a thread. The
//! chat server starts each new room on the next of `ROOM_THREADS` arbiters
//! in turn, so many busy rooms spread over every core while each keeps its
//! ordering. Each thread is named `room-N`, so a per-thread CPU breakdown
//! (`top -H`, the load tester's `--server-pid`) shows how the rooms' work
//! is spread.

use actix::prelude::*;

use crate::thread_name::name_this_thread;

/// A fixed pool of arbiters, handed out in turn.
pub(crate) struct RoomThreads {
    arbiters: Vec<ArbiterHandle>,
    next: usize,
}

impl RoomThreads {
    /// Starts `threads` arbiters (at least one). They stop when this is
    /// dropped, with the chat server.
    pub(crate) fn start(threads: usize) -> RoomThreads {
        let arbiters = (0..threads.max(1))
            .map(|n| {
                let arbiter = Arbiter::new().handle();
                arbiter.spawn_fn(move || name_this_thread(&format!("room-{n}")));
                arbiter
            })
            .collect();
        RoomThreads { arbiters, next: 0 }
    }

    /// The arbiter the next room starts on.
    pub(crate) fn next(&mut self) -> &ArbiterHandle {
        let n = self.next % self.arbiters.len();
        self.next = self.next.wrapping_add(1);
        &self.arbiters[n]
    }
}

impl Drop for RoomThreads {
    /// The chat server is gone, so its system is ending (after shutdown,
    /// when every room has handed its chats to storage, or at the end of
    /// a test's app): the threads end too, with whatever rooms are left,
    /// instead of outliving it.
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[actix_web::test]
    async fn rooms_are_spread_over_named_threads_in_turn() {
        let mut threads = RoomThreads::start(2);
        let (tell, told) = mpsc::channel();
        for _ in 0..4 {
            let tell = tell.clone();
            threads.next().spawn_fn(move || {
                let me = std::thread::current().id();
                let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
                let _ = tell.send((me, name.trim().to_string()));
            });
        }
        let seen: Vec<_> = (0..4)
            .map(|_| told.recv_timeout(std::time::Duration::from_secs(5)))
            .collect::<Result<_, _>>()
            .expect("every arbiter ran its task");
        let mut ids: Vec<_> = seen.iter().map(|(id, _)| *id).collect();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert_eq!(ids.len(), 2, "two threads, each given two rooms");
        let mut names: Vec<_> = seen.iter().map(|(_, name)| name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names, ["room-0", "room-1"]);
    }

    #[actix_web::test]
    async fn the_threads_end_when_the_pool_is_dropped() {
        let mut threads = RoomThreads::start(2);
        let handles = [threads.next().clone(), threads.next().clone()];
        assert!(handles.iter().all(|h| h.spawn_fn(|| ())), "running");
        drop(threads);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // A stopped arbiter takes nothing more once its thread has ended.
        while handles.iter().any(|h| h.spawn_fn(|| ())) && std::time::Instant::now() < deadline {
            actix::clock::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            handles.iter().all(|h| !h.spawn_fn(|| ())),
            "a dropped pool leaves no thread behind"
        );
    }
}
