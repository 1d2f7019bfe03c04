//! Names for the server's own threads, so that a per-thread CPU breakdown
//! (`top -H`, `/proc/PID/task/*/comm`, the load tester's `--server-pid`)
//! says which part of the server is busy: `http-N` for the workers that
//! run the connections (sockets, sessions), `room-N` for the room threads,
//! `history-write` and `history-read-N` for storage. The main thread (the
//! chat server) keeps the program's name; threads the libraries start
//! keep theirs (`actix-server ac…` accepts connections).

/// Names the calling thread. Linux keeps the first 15 bytes. A name that
/// cannot be set costs only that readability, so failure is ignored.
pub(crate) fn name_this_thread(name: &str) {
    if let Ok(name) = std::ffi::CString::new(name) {
        let _ = rustix::thread::set_name(&name);
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
}
