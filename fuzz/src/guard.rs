//! The fuzz harness's guards: a global allocator that aborts on any single allocation above a
//! bound while an input runs, and a watchdog that aborts when one input runs too long. Both print
//! the target and the input (hex) to stderr first, so a finding can be replayed and kept as a
//! regression (see `regressions/`).
//!
//! An oversized allocation cannot be turned into an error (the allocator may not unwind, and
//! kafka-protocol's `Vec::with_capacity` would abort on a null anyway), and a stuck input cannot
//! be interrupted: printing the input and aborting the process is all a guard can do. Panics are
//! not the guards' business: the runner catches them per input.

#![allow(unsafe_code)] // GlobalAlloc and the raw write to fd 2 in an allocation

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The system allocator, refusing (by aborting with a report) any single allocation above the
/// bound armed on the current thread.
pub struct GuardedAlloc;

#[global_allocator]
static ALLOCATOR: GuardedAlloc = GuardedAlloc;

thread_local! {
    /// The largest single allocation allowed on this thread; `usize::MAX` when disarmed.
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// The input being run on this thread: (target name, input), as raw parts, for the report.
    static CURRENT: Cell<(*const u8, usize, *const u8, usize)> =
        const { Cell::new((std::ptr::null(), 0, std::ptr::null(), 0)) };
}

/// Arms the allocation bound on this thread while `f` runs on `input` of `target`.
pub fn with_alloc_limit<R>(limit: usize, target: &str, input: &[u8], f: impl FnOnce() -> R) -> R {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            LIMIT.set(usize::MAX);
            CURRENT.set((std::ptr::null(), 0, std::ptr::null(), 0));
        }
    }
    CURRENT.set((target.as_ptr(), target.len(), input.as_ptr(), input.len()));
    LIMIT.set(limit);
    let _disarm = Disarm;
    f()
}

fn check(size: usize) {
    let limit = LIMIT.try_with(Cell::get).unwrap_or(usize::MAX);
    if size <= limit {
        return;
    }
    let _ = LIMIT.try_with(|l| l.set(usize::MAX));
    let (target, target_len, input, input_len) =
        CURRENT
            .try_with(Cell::get)
            .unwrap_or((std::ptr::null(), 0, std::ptr::null(), 0));
    // SAFETY: both were set from live slices by `with_alloc_limit`, whose closure is still
    // running (this allocation is made from inside it).
    let (target, input) = unsafe { (slice(target, target_len), slice(input, input_len)) };
    let mut err = Stderr;
    let _ = write!(
        err,
        "\n== FUZZ FINDING: an allocation of {size} bytes (bound {limit}) in target "
    );
    let _ = err.write_all(target);
    let _ = write!(err, "\ninput ({} bytes, hex):\n", input.len());
    write_hex(&mut err, input);
    let _ = err.write_all(b"\n");
    std::process::abort();
}

/// # Safety
/// `ptr` must be null or valid for `len` bytes.
unsafe fn slice<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() {
        &[]
    } else {
        // SAFETY: per the function's contract.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// Writes to fd 2 without allocating (std's `Stderr` may allocate on first use).
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::fd::FromRawFd;
        // SAFETY: fd 2 is open for the life of the process; ManuallyDrop never closes it.
        let mut file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(2) });
        file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hex, 64 bytes a line, through a stack buffer.
fn write_hex(out: &mut impl Write, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for line in bytes.chunks(64) {
        let mut buf = [0u8; 129];
        for (i, byte) in line.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(byte >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
        }
        buf[2 * line.len()] = b'\n';
        let _ = out.write_all(&buf[..=2 * line.len()]);
    }
}

/// Hex of `bytes`, 64 bytes a line (the format of the files in `regressions/`).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    write_hex(&mut out, bytes);
    String::from_utf8_lossy(&out).into_owned()
}

// SAFETY: defers to `System` for every operation, after `check`, which only reads thread-locals
// (const-initialised, no destructor: no allocation) and aborts.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What the watchdog watches: the input running now and since when.
struct Running {
    target: String,
    input: Vec<u8>,
    since: Instant,
}

/// A thread that aborts the process (after printing the input) when one input runs longer than
/// its timeout. Stops when dropped.
pub struct Watchdog {
    state: Arc<Mutex<(Option<Running>, bool)>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching with `timeout` per input.
    pub fn start(timeout: Duration) -> Self {
        let state = Arc::new(Mutex::new((None::<Running>, false)));
        let watched = state.clone();
        let thread = std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let guard = watched.lock().unwrap_or_else(PoisonError::into_inner);
                let (running, stop) = &*guard;
                if *stop {
                    return;
                }
                if let Some(running) = running
                    && running.since.elapsed() > timeout
                {
                    let _ = writeln!(
                        Stderr,
                        "\n== FUZZ FINDING: an input of target {} ran longer than {timeout:?}\ninput ({} bytes, hex):",
                        running.target,
                        running.input.len()
                    );
                    write_hex(&mut Stderr, &running.input);
                    std::process::abort();
                }
            }
        });
        Self {
            state,
            thread: Some(thread),
        }
    }

    /// Marks `input` of `target` as running from now; `None` when nothing runs.
    pub fn running(&self, current: Option<(&str, &[u8])>) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        guard.0 = current.map(|(target, input)| Running {
            target: target.to_owned(),
            input: input.to_vec(),
            since: Instant::now(),
        });
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
