//! Optional background writer: a thread writes the files, and fingerprints small tensors too.
//!
//! A tensor of at most [`crate::BACKGROUND_FINGERPRINT_MAX`] elements reaches the thread as an
//! owned copy of its canonical F32 values (cheaper for the caller than hashing it); a larger one
//! is fingerprinted by the caller on all cores and only its record is queued.
//!
//! The queue is bounded: when it is full the caller waits, so a record is never dropped. Errors
//! hit by the thread are kept and returned by the next `write` or `flush`. Dropping the writer
//! (or [`crate::flush`] at process exit for the global tracer) drains the queue.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::record::TraceRecord;
use crate::sink::DirSink;
use crate::{Error, Result};

enum Msg {
    Write(Box<TraceRecord>, Option<Vec<f32>>),
    /// A record still to be fingerprinted from these canonical F32 values (and to keep them
    /// as `.npy` when the bool says so).
    /// The record, its canonical values, whether to save them, the sketch's buckets.
    Capture(Box<TraceRecord>, Vec<f32>, bool, usize),
    Flush(SyncSender<()>),
}

#[derive(Debug)]
pub(crate) struct BackgroundWriter {
    tx: Mutex<Option<SyncSender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The first error the thread hit, reported once to the caller.
    failure: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Write(r, _) => write!(f, "Write({})", r.name),
            Msg::Capture(r, ..) => write!(f, "Capture({})", r.name),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl BackgroundWriter {
    pub(crate) fn spawn(sink: DirSink, capacity: usize) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let failure = Arc::new(Mutex::new(None));
        let thread_failure = Arc::clone(&failure);
        let thread = std::thread::Builder::new()
            .name("tensor-trace-writer".into())
            .spawn(move || run(sink, rx, thread_failure))
            .map_err(|e| Error::io("start writer thread for", "trace directory", e))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            failure,
        })
    }

    pub(crate) fn write(&self, record: TraceRecord, values: Option<Vec<f32>>) -> Result<()> {
        self.check()?;
        self.send(Msg::Write(Box::new(record), values))
    }

    /// Queues a record to be fingerprinted from `values` on the writer's thread.
    pub(crate) fn capture(
        &self,
        record: TraceRecord,
        values: Vec<f32>,
        keep: bool,
        sketch: usize,
    ) -> Result<()> {
        self.check()?;
        self.send(Msg::Capture(Box::new(record), values, keep, sketch))
    }

    /// Waits until every queued record is on disk; returns the first error the thread hit.
    pub(crate) fn flush(&self) -> Result<()> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.send(Msg::Flush(ack_tx))?;
        ack_rx
            .recv()
            .map_err(|_| Error::Writer("writer thread exited before flushing".into()))?;
        self.check()
    }

    fn send(&self, msg: Msg) -> Result<()> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match tx.as_ref() {
            Some(tx) => tx
                .send(msg)
                .map_err(|_| Error::Writer("writer thread is gone".into())),
            None => Err(Error::Writer("writer already shut down".into())),
        }
    }

    fn check(&self) -> Result<()> {
        match self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(message) => Err(Error::Writer(message)),
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain the queue and exit.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        if let Some(message) = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            eprintln!("tensor-trace: background writer: {message}");
        }
    }
}

fn run(sink: DirSink, rx: Receiver<Msg>, failure: Arc<Mutex<Option<String>>>) {
    let fail = |e: Error| {
        let mut slot = failure.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| e.to_string());
    };
    for msg in rx {
        match msg {
            Msg::Write(record, values) => {
                if let Err(e) = sink.write(*record, values.as_deref()) {
                    fail(e);
                }
            }
            Msg::Capture(mut record, values, keep, sketch) => {
                // The canonical F32 values fingerprint exactly like the original dtype.
                let buckets = crate::sketch::buckets_for(sketch, values.len() as u64);
                let f = crate::Fingerprinter::new()
                    .with_sketch(buckets)
                    .and_then(|mut fp| {
                        fp.update(crate::Data::F32(&values))?;
                        Ok(fp.finish())
                    });
                let f = match f {
                    Ok(f) => f,
                    Err(e) => {
                        fail(e);
                        continue;
                    }
                };
                f.fill_record(&mut record);
                if let Err(e) = sink.write(*record, keep.then_some(&values[..])) {
                    fail(e);
                }
            }
            Msg::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}
