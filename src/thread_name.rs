//! Names for the server's own threads, so that a per-thread CPU breakdown
//! (`top -H`, `/proc/PID/task/*/comm`, the load tester's `--server-pid`)
//! says which part of the server is busy: `http-N` for the workers that
//! run the connections (sockets, sessions), `room-N` for the room threads,
//! `history-write` and `history-read-N` for storage. The main thread (the
//! chat server) keeps the program's name; threads the libraries start
//! keep theirs (`actix-server ac…` accepts connections).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Names the calling thread. Linux keeps the first 15 bytes. A name that
/// cannot be set costs only that readability, so failure is ignored.
pub(crate) fn name_this_thread(name: &str) {
    if let Ok(name) = std::ffi::CString::new(name) {
        let _ = rustix::thread::set_name(&name);
    }
}

/// Numbered names for threads of one kind (`http-0`, `http-1`, ...), for
/// factories that a library calls once on each new thread without saying
/// which one it is (actix-server's workers, a `SyncArbiter`'s threads).
pub(crate) struct Numbered {
    prefix: &'static str,
    next: AtomicUsize,
}

impl Numbered {
    pub(crate) fn new(prefix: &'static str) -> Numbered {
        Numbered {
            prefix,
            next: AtomicUsize::new(0),
        }
    }

    /// Names the calling thread with the prefix and the next number.
    pub(crate) fn name_this_thread(&self) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        name_this_thread(&format!("{}-{n}", self.prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_what_proc_shows() {
        let name = std::thread::spawn(|| {
            name_this_thread("history-write");
            std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default()
        })
        .join()
        .expect("the thread ran");
        assert_eq!(name.trim(), "history-write");
    }

    #[test]
    fn numbered_threads_take_the_next_number_each() {
        let names = std::sync::Arc::new(Numbered::new("http"));
        let seen: Vec<String> = (0..2)
            .map(|_| {
                let names = names.clone();
                std::thread::spawn(move || {
                    names.name_this_thread();
                    std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default()
                })
                .join()
                .expect("the thread ran")
                .trim()
                .to_string()
            })
            .collect();
        assert_eq!(seen, ["http-0", "http-1"]);
    }
}
