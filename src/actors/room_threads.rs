//! The threads rooms run on. A room is one actor, so everything it does
//! (its members, its order, its deliveries) happens on one thread, in the
//! order its mailbox gives it; but two rooms need not share a thread. The
//! chat server starts each new room on the next of `ROOM_THREADS` arbiters
//! in turn, so many busy rooms spread over every core while each keeps its
//! ordering. Each thread is named `room-N`, so a per-thread CPU breakdown
//! (`top -H`, the load tester's `--server-pid`) shows how the rooms' work
//! is spread.

use actix::prelude::*;

/// A fixed pool of arbiters, handed out in turn.
pub(crate) struct RoomThreads {
    arbiters: Vec<ArbiterHandle>,
    next: usize,
}

impl RoomThreads {
    /// Starts `threads` arbiters (at least one). They stop with the actix
    /// system.
    pub(crate) fn start(threads: usize) -> RoomThreads {
        let arbiters = (0..threads.max(1))
            .map(|n| {
                let arbiter = Arbiter::new().handle();
                arbiter.spawn_fn(move || name_thread(n));
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

/// Names the current thread `room-N` (Linux keeps 15 bytes), for whoever
/// reads `/proc/PID/task/*/comm`. A name that cannot be set only costs
/// that readability.
fn name_thread(n: usize) {
    let name = format!("room-{n}");
    if let Ok(name) = std::ffi::CString::new(name) {
        let _ = rustix::thread::set_name(&name);
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
}
