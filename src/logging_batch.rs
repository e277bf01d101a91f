//! Every log line, in batches, written by one background thread. Queued one by one, every
//! access line woke a writer thread (a futex wake and a context switch on the request's core)
//! and made its own allocation: measured, the access log cost 5.2 µs of CPU per request (e2e
//! rows (g) against (c), stop 25). Here request threads append whole lines to one shared
//! buffer under a lock, and the batch thread writes the buffer with one `write(2)` every
//! [`EVERY`] (sooner past [`FLUSH_AT`] bytes, or when a tracing line is waiting): one wake-up
//! per batch, and none at all while idle.
//!
//! Tracing's lines come through the same buffer ([`EventWriter`]), so an access line and a
//! tracing line never interleave, even on a pipe where a large `write(2)` is not atomic.
//! Before stop 28 the batches went on through tracing-appender's writer thread: a copy of
//! each batch and a second thread on the request's core, for nothing this thread cannot do.
//!
//! Nothing is lost and memory stays bounded: past [`MAX`] bytes not yet written, a request
//! thread waits for the batch to drain. An access line waits at most about [`EVERY`]; a
//! tracing line is written at once. On shutdown, [`Batcher::close`] writes what is left, and
//! a line logged after that is written directly.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a batch gathers lines after its first.
pub(super) const EVERY: Duration = Duration::from_millis(20);
/// A batch this large is written at once. Small enough that the two buffers stay in the
/// core's cache while request threads fill one and the batch thread writes the other.
const FLUSH_AT: usize = 32 * 1024;
/// Bytes waiting beyond which request threads wait.
const MAX: usize = 4 * 1024 * 1024;

/// Where the batches go.
type Out = Box<dyn Write + Send>;

pub(super) struct Batcher {
    state: Mutex<State>,
    /// Wakes the batch thread: a first line, a full batch, a tracing line, or closing.
    more: Condvar,
    /// Wakes request threads waiting for room.
    room: Condvar,
    /// The output. Held by the batch thread while it writes, and by whoever logs once the
    /// batch thread is gone.
    out: Mutex<Out>,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// A tracing line is waiting: write without gathering more.
    now: bool,
    closed: bool,
    /// The batch thread has written the last batch and returned.
    done: bool,
}

impl Batcher {
    /// Starts the batch thread, which writes to `out`.
    pub(super) fn start(out: Out) -> (Arc<Batcher>, JoinHandle<()>) {
        let b = Arc::new(Batcher {
            state: Mutex::new(State::default()),
            more: Condvar::new(),
            room: Condvar::new(),
            out: Mutex::new(out),
        });
        let run = b.clone();
        let handle = std::thread::Builder::new()
            .name("fluxgate-log".into())
            .spawn(move || run.run())
            .expect("spawn the log thread");
        (b, handle)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one whole line (or several); `now`: write it without waiting for a batch.
    pub(super) fn push(&self, line: &[u8], now: bool) {
        let mut s = self.lock();
        while s.buf.len() >= MAX && !s.closed {
            self.more.notify_one();
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.done {
            // The batch thread is gone (shutdown): write it here, in order behind the rest.
            drop(s);
            let mut out = self.out();
            let _ = out.write_all(line);
            let _ = out.flush();
            return;
        }
        let before = s.buf.len();
        s.buf.extend_from_slice(line);
        // Only a batch's first line, the one that fills it, or one to write now wakes the
        // thread.
        if now && !s.now {
            s.now = true;
            self.more.notify_one();
        } else if before == 0 || (before < FLUSH_AT && s.buf.len() >= FLUSH_AT) {
            self.more.notify_one();
        }
    }

    /// Writes what is left and stops the thread (then join its handle).
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.more.notify_one();
    }

    fn run(&self) {
        let mut spare = Vec::with_capacity(FLUSH_AT);
        loop {
            let mut s = self.lock();
            while s.buf.is_empty() && !s.closed {
                s = self.more.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            // Let the batch gather more lines, unless it is full, urgent or the end.
            if !s.closed && !s.now && s.buf.len() < FLUSH_AT {
                s = self
                    .more
                    .wait_timeout(s, EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            std::mem::swap(&mut s.buf, &mut spare);
            s.now = false;
            let closed = s.closed;
            // Taken before the state is let go, so lines logged meanwhile queue behind it.
            let mut out = self.out();
            drop(s);
            self.room.notify_all();
            if !spare.is_empty() {
                let _ = out.write_all(&spare);
                let _ = out.flush();
                spare.clear();
                // A burst can grow the buffer far past a batch: give that memory back.
                spare.shrink_to(4 * FLUSH_AT);
            }
            drop(out);
            if closed {
                let mut s = self.lock();
                if s.buf.is_empty() {
                    s.done = true;
                    return;
                }
            }
        }
    }
}

/// Tracing's writer: an event's bytes gathered, then queued whole when the event is written.
pub(super) struct EventWriter {
    batcher: Arc<Batcher>,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.batcher.push(&self.buf, true);
        }
    }
}

/// Makes an [`EventWriter`] per tracing event.
#[derive(Clone)]
pub(super) struct MakeEventWriter(pub(super) Arc<Batcher>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeEventWriter {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            batcher: self.0.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// A writer whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_whole_and_in_order_and_closing_writes_the_rest() {
        let sink = Shared::default();
        let (b, thread) = Batcher::start(Box::new(sink.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        // Thread 3 writes as tracing does (each line at once), the others
                        // as the access log does.
                        let line = format!("{t} {i:05} {}\n", "x".repeat(i % 300));
                        if t == 3 {
                            let mut w = MakeEventWriter(b.clone()).make_writer();
                            // An event in pieces is still queued whole.
                            let (a, z) = line.split_at(line.len() / 2);
                            w.write_all(a.as_bytes()).unwrap();
                            w.write_all(z.as_bytes()).unwrap();
                        } else {
                            b.push(line.as_bytes(), false);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        b.close();
        thread.join().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let mut parts = line.split(' ');
            let t: usize = parts.next().unwrap().parse().unwrap();
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "thread {t}'s lines in order, none lost or torn");
            assert_eq!(parts.next().unwrap_or("").len(), i % 300);
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4], "every line written");
    }

    #[test]
    fn a_line_logged_after_closing_is_written_not_lost() {
        let sink = Shared::default();
        let (b, thread) = Batcher::start(Box::new(sink.clone()));
        b.push(b"before\n", false);
        b.close();
        thread.join().unwrap();
        b.push(b"after\n", false);
        let mut w = MakeEventWriter(b.clone()).make_writer();
        w.write_all(b"event\n").unwrap();
        drop(w);
        assert_eq!(&*sink.0.lock().unwrap(), b"before\nafter\nevent\n");
    }
}
