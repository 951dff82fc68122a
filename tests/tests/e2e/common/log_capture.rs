//! Every log line the gateways in this test process emit while a [`Capture`] is alive, at every level (the
//! gateway's and its HTTP client's), for tests that prove no secret reaches the logs.
//!
//! One process-wide subscriber, installed before the first in-process gateway starts (a thread-scoped one
//! races other test threads registering the same callsites, and the gateway runs work on several threads).
//! While no capture is alive it records nothing: its filter is a single atomic load per event.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Installs the subscriber once per process; `Harness::start_with` calls it before starting a gateway.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| BufferWriter)
            // Dynamic: asked at every event (a plain `filter_fn` caches its first answer per callsite).
            .with_filter(dynamic_filter_fn(|_, _| ACTIVE.load(Ordering::Relaxed) > 0));
        // The telemetry binary installs the gateway's own subscriber first; there nothing is captured.
        let _ = tracing_subscriber::registry().with(layer).try_init();
    });
}

/// Records from its start to its drop. Lines of other tests running at the same time are recorded too: a
/// secret in those is as much a leak.
pub struct Capture {
    from: usize,
}

impl Capture {
    pub fn start() -> Self {
        install();
        let from = BUFFER.lock().unwrap().len();
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Capture { from }
    }

    /// What was logged since this capture started.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&BUFFER.lock().unwrap()[self.from..]).into_owned()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

struct BufferWriter;

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        BUFFER.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
