//! The tracer: filters names, fingerprints tensors and hands records to a sink.

use std::path::PathBuf;

use crate::config::{Config, Layout, NameFilter, ValuesAt, DEFAULT_QUEUE};
use crate::ranks::RankInfo;
use crate::record::{TraceRecord, FORMAT_VERSION};
use crate::sink::{DirSink, MemorySink};
use crate::view::{shape_elements, Data};
use crate::writer::BackgroundWriter;
use crate::{DType, Error, Fingerprinter, Result, TensorView};

/// Where a record sits in the model: the upstream crate's `seq`, `layer` and `stage`.
///
/// Borrowed and `Copy`, so building one costs nothing when tracing is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context<'a> {
    /// Token position: 0 = prefill, 1+ = decode step.
    pub seq: Option<u64>,
    /// Layer: -1 = embeddings/logits, 0+ = transformer layers.
    pub layer: Option<i64>,
    /// Stage within the layer, e.g. `q_proj`.
    pub stage: Option<&'a str>,
}

impl<'a> Context<'a> {
    /// Sets the token position.
    pub fn seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// Sets the layer (-1 for embeddings and logits).
    pub fn layer(mut self, layer: i64) -> Self {
        self.layer = Some(layer);
        self
    }

    /// Sets the stage.
    pub fn stage(mut self, stage: &'a str) -> Self {
        self.stage = Some(stage);
        self
    }
}

#[derive(Debug)]
enum Sink {
    Memory(MemorySink),
    Dir(DirSink),
    Background(BackgroundWriter),
}

/// Captures named tensors into a sink. Thread-safe: share it by reference.
///
/// ```
/// use trace_core::{Context, TensorView, Tracer};
/// let dir = tempfile::tempdir()?;
/// // One file per record, named as the seed named them (the default layout is one log).
/// let tracer = Tracer::builder()
///     .dir(dir.path())
///     .layout(trace_core::Layout::Files)
///     .values("logits")
///     .build()?;
/// let h = [0.5f32, -1.0, 2.0, 0.0];
/// tracer.record("blk0/attn_norm", &Context::default().seq(0).layer(0), TensorView::new(&[1, 4], &h[..])?)?;
/// tracer.record("blk0/attn_norm", &Context::default().seq(1).layer(0), TensorView::new(&[1, 4], &h[..])?)?;
/// assert!(dir.path().join("blk0_attn_norm.trace").exists());   // the seed's name
/// assert!(dir.path().join("blk0_attn_norm.1.trace").exists()); // the decode step, not lost
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Tracer {
    // Boxed so a `Tracer` moves cheaply (it is returned in `Result`s and stored in statics).
    config: Box<Config>,
    sink: Box<Sink>,
}

impl Tracer {
    /// A builder with the defaults: in memory, every name, no raw values.
    pub fn builder() -> TracerBuilder {
        TracerBuilder::default()
    }

    /// A tracer keeping records in memory (see [`Tracer::records`]).
    pub fn in_memory() -> Self {
        Self::from_config(Config::default()).expect("an in-memory tracer needs no I/O")
    }

    /// A tracer for `config`; the directory is created on the first record. With a world size
    /// above 1, the records go into `dir/rank-{rank}` (see [`crate::ranks`]).
    pub fn from_config(config: Config) -> Result<Self> {
        let rank_info =
            RankInfo::from_settings(config.rank, config.world_size, "rank", "world_size")?;
        let dir_sink = |dir: &PathBuf| {
            let sink = DirSink::new(
                rank_info.map_or_else(|| dir.clone(), |r| r.dir(dir)),
                config.append,
                config.values_choice(),
                config.layout,
            );
            match rank_info {
                Some(info) => sink.with_rank(info),
                None => sink,
            }
        };
        let sink = match (&config.dir, config.background) {
            (None, _) => Sink::Memory(MemorySink::new(config.values_choice())),
            (Some(dir), None) => Sink::Dir(dir_sink(dir)),
            (Some(dir), Some(capacity)) => {
                Sink::Background(BackgroundWriter::spawn(dir_sink(dir), capacity)?)
            }
        };
        Ok(Self {
            config: Box::new(config),
            sink: Box::new(sink),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `name` passes the filter (callers may skip preparing a tensor otherwise).
    pub fn wants(&self, name: &str) -> bool {
        self.config.filter.matches(name)
    }

    /// Captures a whole tensor. Returns `false` when the filter skipped it.
    ///
    /// With a background writer, a small tensor (at most [`BACKGROUND_FINGERPRINT_MAX`]
    /// elements) is converted to F32 into an owned buffer and fingerprinted on the writer's
    /// thread, so the caller pays a copy instead of a hash. Larger tensors are fingerprinted here,
    /// on all cores, and never copied.
    pub fn record(&self, name: &str, ctx: &Context<'_>, view: TensorView<'_>) -> Result<bool> {
        if let Sink::Background(writer) = self.sink.as_ref() {
            if view.data().len() <= BACKGROUND_FINGERPRINT_MAX {
                if !self.wants(name) {
                    return Ok(false);
                }
                let mut values = vec![0f32; view.data().len()];
                view.data().convert_into(&mut values);
                let record = self.new_record(name, ctx, view.data().dtype(), view.shape());
                let keep = self.config.may_keep_values(name);
                writer.capture(record, values, keep, self.config.sketch)?;
                return Ok(true);
            }
        }
        self.record_chunks(name, ctx, view.data().dtype(), view.shape(), |fp| {
            fp.update(view.data())
        })
    }

    /// Captures a tensor delivered in chunks: `feed` passes every element, in row-major order,
    /// to the [`Fingerprinter`]. The element count must match `shape`.
    pub fn record_chunks(
        &self,
        name: &str,
        ctx: &Context<'_>,
        dtype: DType,
        shape: &[usize],
        feed: impl FnOnce(&mut Fingerprinter) -> Result<()>,
    ) -> Result<bool> {
        if !self.wants(name) {
            return Ok(false);
        }
        let expected = shape_elements(shape).unwrap_or(u64::MAX);
        let buckets = crate::sketch::buckets_for(self.config.sketch, expected);
        let mut fp = Fingerprinter::new().with_sketch(buckets)?;
        if self.config.may_keep_values(name) {
            fp = fp.keeping_values();
        }
        // An empty first chunk of the declared dtype pins it, so a wrong chunk is an error.
        fp.update(Data::empty(dtype))?;
        feed(&mut fp)?;
        if fp.num_elements() != expected {
            return Err(Error::ElementCount {
                name: name.to_owned(),
                shape: shape.to_vec(),
                expected,
                found: fp.num_elements(),
            });
        }
        let (f, values) = fp.finish_with_values();
        let mut record = self.new_record(name, ctx, dtype, shape);
        f.fill_record(&mut record);
        match self.sink.as_ref() {
            Sink::Memory(sink) => sink.write(record, values),
            Sink::Dir(sink) => {
                sink.write(record, values.as_deref())?;
            }
            Sink::Background(writer) => writer.write(record, values)?,
        }
        Ok(true)
    }

    /// A record of this tracer without its fingerprint (see `Fingerprint::fill_record`).
    fn new_record(
        &self,
        name: &str,
        ctx: &Context<'_>,
        dtype: DType,
        shape: &[usize],
    ) -> TraceRecord {
        TraceRecord {
            name: name.to_owned(),
            shape: shape.to_vec(),
            dtype: dtype.name().to_owned(),
            blake3: String::new(),
            rms: None,
            num_elements: 0,
            seq: ctx.seq,
            layer: ctx.layer,
            stage: ctx.stage.map(str::to_owned),
            format_version: Some(FORMAT_VERSION),
            index: None,
            occurrence: None,
            rank: self.config.rank,
            stats: None,
            values: None,
            sketch: None,
        }
    }

    /// Waits until every record is on disk (only the background writer ever has to wait) and
    /// reports an error it hit.
    pub fn flush(&self) -> Result<()> {
        match self.sink.as_ref() {
            Sink::Background(writer) => writer.flush(),
            Sink::Memory(_) | Sink::Dir(_) => Ok(()),
        }
    }

    /// The records of an in-memory tracer, in capture order (empty for a directory tracer).
    pub fn records(&self) -> Vec<TraceRecord> {
        self.records_with_values()
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    /// The records of an in-memory tracer with their raw values where the values filter asked.
    pub fn records_with_values(&self) -> Vec<(TraceRecord, Option<Vec<f32>>)> {
        match self.sink.as_ref() {
            Sink::Memory(sink) => sink.records(),
            Sink::Dir(_) | Sink::Background(_) => Vec::new(),
        }
    }

    /// The output directory, when writing to one.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self.sink.as_ref() {
            Sink::Dir(sink) => Some(sink.dir()),
            Sink::Memory(_) | Sink::Background(_) => self.config.dir.as_deref(),
        }
    }
}

/// Largest tensor (in elements) that a background writer fingerprints on its own thread; the
/// caller then copies at most 256 KiB.
pub const BACKGROUND_FINGERPRINT_MAX: usize = 64 * 1024;

/// Settings for a [`Tracer`] without environment variables.
#[derive(Debug, Default)]
pub struct TracerBuilder {
    dir: Option<PathBuf>,
    filter: Option<String>,
    values: Option<String>,
    values_at: Option<String>,
    append: bool,
    background: Option<usize>,
    rank: Option<u32>,
    world_size: Option<u32>,
    layout: Layout,
    sketch: Option<usize>,
}

impl TracerBuilder {
    /// Write records into `dir` (created on first use).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Only names matching these comma-separated globs (`!glob` excludes).
    pub fn filter(mut self, globs: &str) -> Self {
        self.filter = Some(globs.to_owned());
        self
    }

    /// Also save raw values as `.npy` for names matching these globs (`*` for all).
    pub fn values(mut self, globs: &str) -> Self {
        self.values = Some(globs.to_owned());
        self
    }

    /// Also save raw values of single records, by name and occurrence: `blk0/q@1,logits@0-3`
    /// (the grammar of `TENSOR_TRACE_VALUES_AT`, see [`ValuesAt`]).
    pub fn values_at(mut self, items: &str) -> Self {
        self.values_at = Some(items.to_owned());
        self
    }

    /// Allow adding to a directory that already holds a run (indexes continue after it).
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    /// Write files on a background thread, queueing up to [`DEFAULT_QUEUE`] records.
    pub fn background(mut self) -> Self {
        self.background = Some(DEFAULT_QUEUE);
        self
    }

    /// Write files on a background thread with a queue of `capacity` records.
    pub fn background_queue(mut self, capacity: usize) -> Self {
        self.background = Some(capacity);
        self
    }

    /// Stamp `rank` into every record.
    pub fn rank(mut self, rank: u32) -> Self {
        self.rank = Some(rank);
        self
    }

    /// The number of processes of the run; above 1, this process writes into
    /// `dir/rank-{rank}` and [`TracerBuilder::rank`] is required (see [`crate::ranks`]).
    pub fn world_size(mut self, world_size: u32) -> Self {
        self.world_size = Some(world_size);
        self
    }

    /// Write the packed layout (`records.jsonl`, the default) or one file per record.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Buckets of the value sketch in every record (0 = none; default
    /// [`DEFAULT_SKETCH_K`](crate::sketch::DEFAULT_SKETCH_K)), the setting `TENSOR_TRACE_SKETCH`.
    pub fn sketch(mut self, k: usize) -> Self {
        self.sketch = Some(k);
        self
    }

    /// Checks the settings and builds the tracer.
    pub fn build(self) -> Result<Tracer> {
        let filter = match &self.filter {
            Some(spec) => NameFilter::parse(spec, "filter")?,
            None => NameFilter::all(),
        };
        let values = match &self.values {
            Some(spec) => NameFilter::parse(spec, "values")?,
            None => NameFilter::none(),
        };
        let values_at = match &self.values_at {
            Some(spec) => ValuesAt::parse(spec, "values_at")?,
            None => ValuesAt::none(),
        };
        if self.background.is_some() && self.dir.is_none() {
            return Err(Error::Config {
                setting: "background".into(),
                value: "on".into(),
                problem: "a background writer needs a directory".into(),
            });
        }
        Tracer::from_config(Config {
            dir: self.dir,
            filter,
            values,
            values_at,
            append: self.append,
            background: self.background,
            rank: self.rank,
            world_size: self.world_size,
            layout: self.layout,
            sketch: match self.sketch {
                Some(k) => crate::config::parse_sketch(&k.to_string(), "sketch")?,
                None => crate::sketch::DEFAULT_SKETCH_K,
            },
        })
    }
}
