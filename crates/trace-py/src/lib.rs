//! # trace-py
//!
//! The native extension `tensor_trace._native` of the Python package (`python/`): a thin PyO3
//! layer over trace-core, so a Python reference records exactly what a Rust or C++ engine does,
//! through the same code. It owns no semantics: settings, name filters, fingerprints,
//! statistics, file names, layouts, ranks and values all come from trace-core, and strided
//! element data is checked and streamed by trace-ffi's [`trace_ffi::record_strided`], the code
//! behind the C ABI's `tt_record`.
//!
//! Design:
//! - Python turns its objects (numpy arrays, torch tensors) into a data address, a dtype name,
//!   a shape and strides in elements (`tensor_trace/_tracer.py`); this crate reads the elements
//!   in place, never copying the tensor.
//! - The GIL is released while hashing, reducing and writing, so several Python threads trace
//!   at once (trace-core's `Tracer` is thread-safe and numbers records under its own lock).
//! - Errors map to Python exceptions defined in `tensor_trace/_errors.py`: a setting to
//!   `ConfigError(setting, value, problem)`, a bad tensor description to `ValueError`, anything
//!   else (I/O, a panic caught here) to `TraceError`.
//! - The disabled path never reaches this crate: `dump_trace` checks a Python flag first.
//!
//! The Python suite (`python/tests`) is this crate's test suite; the usage example is in
//! `docs/PYTHON.md`.
#![deny(missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use trace_core::config::{Config, NameFilter as CoreFilter};
use trace_core::{Context, DType, Layout};
use trace_ffi::FfiError;

/// Why a call failed, before it becomes a Python exception (needs the GIL; see [`to_py`]).
enum Failure {
    Core(trace_core::Error),
    Ffi(FfiError),
    Panic(String),
}

impl From<trace_core::Error> for Failure {
    fn from(e: trace_core::Error) -> Self {
        Failure::Core(e)
    }
}

impl From<FfiError> for Failure {
    fn from(e: FfiError) -> Self {
        match e {
            FfiError::Core(e) => Failure::Core(e),
            other => Failure::Ffi(other),
        }
    }
}

/// The Python exception for `failure`: the classes of `tensor_trace._errors`.
fn to_py(py: Python<'_>, failure: Failure) -> PyErr {
    let errors = match py.import("tensor_trace._errors") {
        Ok(module) => module,
        Err(e) => return e,
    };
    let raise = |class: &str, args: (String, Option<(String, String)>)| {
        let class = match errors.getattr(class) {
            Ok(class) => class,
            Err(e) => return e,
        };
        let made = match args {
            (message, None) => class.call1((message,)),
            (setting, Some((value, problem))) => class.call1((setting, value, problem)),
        };
        match made {
            Ok(exception) => PyErr::from_value(exception),
            Err(e) => e,
        }
    };
    match failure {
        Failure::Core(trace_core::Error::Config {
            setting,
            value,
            problem,
        }) => raise("ConfigError", (setting, Some((value, problem)))),
        Failure::Core(other) => raise("TraceError", (other.to_string(), None)),
        Failure::Ffi(e) => PyValueError::new_err(e.to_string()),
        Failure::Panic(message) => {
            raise("TraceError", (format!("internal panic: {message}"), None))
        }
    }
}

/// Runs `body` without the GIL, turning a panic into [`Failure::Panic`].
fn detached<T: Send>(
    py: Python<'_>,
    body: impl FnOnce() -> Result<T, Failure> + Send,
) -> PyResult<T> {
    let result = py.detach(|| {
        catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(Failure::Panic(message))
        })
    });
    result.map_err(|f| to_py(py, f))
}

/// A tensor as Python describes it: the address of its first element, its dtype's record name
/// (`F32`, `BF16`, ...), shape and strides in elements.
struct Tensor {
    data: usize,
    dtype: DType,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

impl Tensor {
    fn new(dtype: &str, data: usize, shape: Vec<i64>, strides: Vec<i64>) -> PyResult<Self> {
        let dtype = DType::ALL
            .into_iter()
            .find(|d| d.name() == dtype)
            .ok_or_else(|| PyValueError::new_err(format!("unknown dtype {dtype:?}")))?;
        if strides.len() != shape.len() {
            return Err(PyValueError::new_err(format!(
                "shape {shape:?} and strides {strides:?} differ in length"
            )));
        }
        Ok(Self {
            data,
            dtype,
            shape,
            strides,
        })
    }
}

/// A trace-core `Tracer` writing into a directory (`tensor_trace.Tracer` wraps it).
#[pyclass(frozen, module = "tensor_trace._native")]
struct Tracer {
    inner: trace_core::Tracer,
}

#[pymethods]
impl Tracer {
    /// A tracer from explicit settings; errors name the argument (`filter`, `rank`, ...).
    #[new]
    #[pyo3(signature = (dir, *, filter=None, values=None, values_at=None, append=false,
                        rank=None, world_size=None, layout="packed", sketch=None,
                        background=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        filter: Option<String>,
        values: Option<String>,
        values_at: Option<String>,
        append: bool,
        rank: Option<u32>,
        world_size: Option<u32>,
        layout: &str,
        sketch: Option<usize>,
        background: bool,
    ) -> PyResult<Self> {
        let layout = Layout::parse(layout, "layout").map_err(|e| to_py(py, e.into()))?;
        let mut builder = trace_core::Tracer::builder()
            .dir(dir)
            .append(append)
            .layout(layout);
        if let Some(spec) = &filter {
            builder = builder.filter(spec);
        }
        if let Some(spec) = &values {
            builder = builder.values(spec);
        }
        if let Some(spec) = &values_at {
            builder = builder.values_at(spec);
        }
        if let Some(rank) = rank {
            builder = builder.rank(rank);
        }
        if let Some(world_size) = world_size {
            builder = builder.world_size(world_size);
        }
        if let Some(k) = sketch {
            builder = builder.sketch(k);
        }
        if background {
            builder = builder.background();
        }
        let inner = builder.build().map_err(|e| to_py(py, e.into()))?;
        Ok(Self { inner })
    }

    /// The tracer the environment configures (`TENSOR_TRACE_DIR`, ...), None when tracing is
    /// off; raises `ConfigError` for an invalid setting.
    #[staticmethod]
    fn from_env(py: Python<'_>) -> PyResult<Option<Self>> {
        let config = Config::from_env().map_err(|e| to_py(py, e.into()))?;
        config
            .map(|c| trace_core::Tracer::from_config(c).map(|inner| Self { inner }))
            .transpose()
            .map_err(|e| to_py(py, e.into()))
    }

    /// The directory records go into (`dir/rank-{r}` in a multi-process run).
    #[getter]
    fn dir(&self) -> Option<PathBuf> {
        self.inner.dir().map(PathBuf::from)
    }

    /// Whether `name` passes the filter.
    fn wants(&self, name: &str) -> bool {
        self.inner.wants(name)
    }

    /// Captures the tensor at `data`; False when the filter skipped `name`.
    ///
    /// The caller keeps the tensor alive and unmodified during the call.
    #[pyo3(signature = (name, dtype, data, shape, strides, seq=None, layer=None, stage=None))]
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        py: Python<'_>,
        name: String,
        dtype: &str,
        data: usize,
        shape: Vec<i64>,
        strides: Vec<i64>,
        seq: Option<u64>,
        layer: Option<i64>,
        stage: Option<String>,
    ) -> PyResult<bool> {
        let t = Tensor::new(dtype, data, shape, strides)?;
        let tracer = &self.inner;
        detached(py, move || {
            let ctx = Context {
                seq,
                layer,
                stage: stage.as_deref(),
            };
            // SAFETY: the Python caller passes the address of a live array whose shape and
            // strides are `t`'s, and holds a reference to it for the duration of this call.
            let recorded = unsafe {
                trace_ffi::record_strided(
                    tracer,
                    &name,
                    &ctx,
                    t.dtype,
                    t.data as *const u8,
                    &t.shape,
                    Some(&t.strides),
                )
            }?;
            Ok(recorded)
        })
    }

    /// Waits until every record is on disk (only a background writer ever has to wait:
    /// `background=True` or `TENSOR_TRACE_ASYNC=1`).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let tracer = &self.inner;
        detached(py, move || Ok(tracer.flush()?))
    }
}

/// `(blake3 hex, rms, num_elements, stats as JSON)` of the tensor at `data`, nothing written.
#[pyfunction]
fn fingerprint(
    py: Python<'_>,
    dtype: &str,
    data: usize,
    shape: Vec<i64>,
    strides: Vec<i64>,
) -> PyResult<(String, Option<f64>, u64, String)> {
    let t = Tensor::new(dtype, data, shape, strides)?;
    detached(py, move || {
        // SAFETY: as for `Tracer.record`.
        let f = unsafe {
            trace_ffi::fingerprint_strided(t.dtype, t.data as *const u8, &t.shape, Some(&t.strides))
        }?;
        let stats = serde_json::to_string(&f.stats).expect("stats serialize");
        Ok((f.blake3.to_hex().to_string(), f.rms, f.num_elements, stats))
    })
}

/// trace-core's name filter: `TENSOR_TRACE_FILTER`'s globs (`trace_module` uses it for paths).
#[pyclass(frozen, module = "tensor_trace._native")]
struct NameFilter {
    inner: CoreFilter,
}

#[pymethods]
impl NameFilter {
    /// `glob,glob,!glob`; `setting` names the source in errors.
    #[staticmethod]
    fn parse(py: Python<'_>, spec: &str, setting: &str) -> PyResult<Self> {
        let inner = CoreFilter::parse(spec, setting).map_err(|e| to_py(py, e.into()))?;
        Ok(Self { inner })
    }

    /// One glob per item (`{a,b}` allowed), `!glob` excludes; `spec` is quoted in errors.
    #[staticmethod]
    fn from_globs(py: Python<'_>, globs: Vec<String>, setting: &str, spec: &str) -> PyResult<Self> {
        let globs: Vec<&str> = globs.iter().map(String::as_str).collect();
        let inner =
            CoreFilter::from_globs(&globs, setting, spec).map_err(|e| to_py(py, e.into()))?;
        Ok(Self { inner })
    }

    /// Lets every name through.
    #[staticmethod]
    fn all() -> Self {
        Self {
            inner: CoreFilter::all(),
        }
    }

    /// Lets no name through.
    #[staticmethod]
    fn none() -> Self {
        Self {
            inner: CoreFilter::none(),
        }
    }

    /// Whether `name` passes.
    fn matches(&self, name: &str) -> bool {
        self.inner.matches(name)
    }

    /// The filter as it was given.
    #[getter]
    fn spec(&self) -> &str {
        self.inner.spec()
    }
}

/// The file stem trace-core gives a record name (`blk0/q` -> `blk0_q`).
#[pyfunction]
fn sanitize(name: &str) -> String {
    trace_core::sanitize(name)
}

/// The directory of rank `rank` in a multi-process run (`rank-3`).
#[pyfunction]
fn rank_dir_name(rank: u32) -> String {
    trace_core::ranks::rank_dir_name(rank)
}

/// Seconds trace-core's Rust `Tracer::record` takes to capture `n` float32 values at `data`
/// into a new tracer on `dir`, with no Python in the loop: the baseline of
/// `python/tests/bench_dump_trace.py` (never called by the package itself).
#[pyfunction]
fn _rust_record_seconds(py: Python<'_>, dir: PathBuf, data: usize, n: usize) -> PyResult<f64> {
    detached(py, move || {
        let tracer = trace_core::Tracer::builder().dir(dir).build()?;
        // SAFETY: the benchmark passes the address of a live, aligned float32 array of `n`
        // values that it keeps referenced during the call.
        let values = unsafe { std::slice::from_raw_parts(data as *const f32, n) };
        let shape = [n];
        let view = trace_core::TensorView::new(&shape, values).map_err(trace_core::Error::from)?;
        let start = std::time::Instant::now();
        tracer.record("x", &Context::default(), view)?;
        Ok(start.elapsed().as_secs_f64())
    })
}

/// Panics inside the extension, for the test that a panic becomes a `TraceError`.
#[pyfunction]
fn _panic(py: Python<'_>, message: String) -> PyResult<()> {
    detached(py, move || -> Result<(), Failure> { panic!("{message}") })
}

/// The module `tensor_trace._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Tracer>()?;
    m.add_class::<NameFilter>()?;
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(sanitize, m)?)?;
    m.add_function(wrap_pyfunction!(rank_dir_name, m)?)?;
    m.add_function(wrap_pyfunction!(_panic, m)?)?;
    m.add_function(wrap_pyfunction!(_rust_record_seconds, m)?)?;
    m.add("FORMAT_VERSION", trace_core::FORMAT_VERSION)?;
    use trace_core::config as c;
    for (name, variable) in [
        ("ENV_DIR", c::ENV_DIR),
        ("ENV_DIR_COMPAT", c::ENV_DIR_COMPAT),
        ("ENV_FILTER", c::ENV_FILTER),
        ("ENV_VALUES", c::ENV_VALUES),
        ("ENV_VALUES_AT", c::ENV_VALUES_AT),
        ("ENV_APPEND", c::ENV_APPEND),
        ("ENV_ASYNC", c::ENV_ASYNC),
        ("ENV_RANK", c::ENV_RANK),
        ("ENV_WORLD_SIZE", c::ENV_WORLD_SIZE),
        ("ENV_LAYOUT", c::ENV_LAYOUT),
    ] {
        m.add(name, variable)?;
    }
    m.add("RANK_FILE", trace_core::ranks::RANK_FILE)?;
    Ok(())
}
