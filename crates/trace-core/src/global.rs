//! The process-wide tracer configured from the environment, and its near-free disabled path.
//!
//! Like `tracing`'s callsite cache, the decision lives in a static atomic read with one relaxed
//! load; the first call takes the cold path that reads the environment once.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Once, OnceLock};

use crate::config::Config;
use crate::tracer::{Context, Tracer};
use crate::{DType, Error, Fingerprinter, Result, TensorView};

const UNINIT: u8 = 0;
const DISABLED: u8 = 1;
/// Enabled, or failed to configure (the error is returned by every capture call).
const ACTIVE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static GLOBAL: OnceLock<Global> = OnceLock::new();

#[derive(Debug)]
enum Global {
    Disabled,
    Ready(Tracer),
    /// The environment held an invalid setting: (setting, value, problem).
    Invalid(String, String, String),
}

/// Whether the global tracer is on. After the first call this is one relaxed atomic load.
#[inline(always)]
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        DISABLED => false,
        ACTIVE => true,
        _ => init(),
    }
}

#[cold]
#[inline(never)]
fn init() -> bool {
    let global = GLOBAL.get_or_init(|| {
        match Config::from_env().and_then(|c| c.map(Tracer::from_config).transpose()) {
            Ok(None) => Global::Disabled,
            Ok(Some(tracer)) => Global::Ready(tracer),
            Err(Error::Config {
                setting,
                value,
                problem,
            }) => Global::Invalid(setting, value, problem),
            // The only other failure is the background writer's thread not starting.
            Err(other) => Global::Invalid(
                crate::config::ENV_ASYNC.into(),
                std::env::var(crate::config::ENV_ASYNC).unwrap_or_default(),
                format!("cannot start the background writer: {other}"),
            ),
        }
    });
    publish(global)
}

fn publish(global: &Global) -> bool {
    let on = !matches!(global, Global::Disabled);
    if matches!(global, Global::Ready(t) if t.config().background.is_some()) {
        register_exit_flush();
    }
    STATE.store(if on { ACTIVE } else { DISABLED }, Ordering::Relaxed);
    on
}

/// Makes `tracer` the global tracer instead of reading the environment.
///
/// Fails (returning the tracer) when the global tracer was already set or already used.
pub fn install(tracer: Tracer) -> std::result::Result<(), Tracer> {
    let mut slot = Some(tracer);
    let global = GLOBAL.get_or_init(|| Global::Ready(slot.take().expect("taken once")));
    match slot {
        Some(tracer) => Err(tracer),
        None => {
            publish(global);
            Ok(())
        }
    }
}

/// The global tracer, when tracing is enabled and configured correctly.
pub fn global() -> Result<Option<&'static Tracer>> {
    if !enabled() {
        return Ok(None);
    }
    match GLOBAL.get() {
        Some(Global::Ready(t)) => Ok(Some(t)),
        Some(Global::Invalid(setting, value, problem)) => Err(Error::Config {
            setting: setting.clone(),
            value: value.clone(),
            problem: problem.clone(),
        }),
        Some(Global::Disabled) | None => Ok(None),
    }
}

/// Captures `view` under `name` when tracing is enabled (the seed's `dump_trace`).
#[inline(always)]
pub fn dump(name: &str, view: TensorView<'_>) -> Result<()> {
    dump_with(name, &Context::default(), view)
}

/// [`dump`] with the token position, layer and stage.
// Always inlined: the disabled path must be the caller's load and branch, without a call that
// would make it build the arguments on the stack.
#[inline(always)]
pub fn dump_with(name: &str, ctx: &Context<'_>, view: TensorView<'_>) -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    dump_slow(name, ctx, view)
}

#[inline(never)]
fn dump_slow(name: &str, ctx: &Context<'_>, view: TensorView<'_>) -> Result<()> {
    if let Some(t) = global()? {
        t.record(name, ctx, view)?;
    }
    Ok(())
}

/// Captures a tensor delivered in chunks (see [`Tracer::record_chunks`]) when enabled.
pub fn dump_chunks_with(
    name: &str,
    ctx: &Context<'_>,
    dtype: DType,
    shape: &[usize],
    feed: impl FnOnce(&mut Fingerprinter) -> Result<()>,
) -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    if let Some(t) = global()? {
        t.record_chunks(name, ctx, dtype, shape, feed)?;
    }
    Ok(())
}

/// Waits until the global tracer's records are on disk.
pub fn flush() -> Result<()> {
    match GLOBAL.get() {
        Some(Global::Ready(t)) => t.flush(),
        _ => Ok(()),
    }
}

/// Statics are never dropped, so a queued record would die with the process: flush at exit.
fn register_exit_flush() {
    static ONCE: Once = Once::new();
    extern "C" fn flush_at_exit() {
        if let Err(e) = flush() {
            eprintln!("tensor-trace: flushing traces at exit: {e}");
        }
    }
    ONCE.call_once(|| {
        // SAFETY: `flush_at_exit` is a plain `extern "C" fn()` that never unwinds (errors are
        // printed) and only touches statics that outlive `exit`.
        unsafe {
            libc::atexit(flush_at_exit);
        }
    });
}

/// Captures a tensor on the global tracer; the name and the view are only evaluated when tracing
/// is enabled, so `format!` and conversions cost nothing when it is off.
///
/// ```
/// use trace_core::{trace_tensor, Context, TensorView};
/// let q = vec![0.0f32; 8];
/// for layer in 0..2 {
///     trace_tensor!(format!("blk{layer}/q"), TensorView::new(&[2, 4], &q[..])?)?;
///     trace_tensor!(format!("blk{layer}/q"), TensorView::new(&[2, 4], &q[..])?, Context::default().layer(layer))?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! trace_tensor {
    ($name:expr, $view:expr $(,)?) => {
        $crate::trace_tensor!($name, $view, $crate::Context::default())
    };
    ($name:expr, $view:expr, $ctx:expr $(,)?) => {
        if $crate::enabled() {
            $crate::dump_with(&$name, &$ctx, $view)
        } else {
            ::core::result::Result::<(), $crate::Error>::Ok(())
        }
    };
}
