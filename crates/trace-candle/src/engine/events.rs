//! The engine's side of the pipeline events: spans around its steps, fed with views of the real
//! candle tensors.
//!
//! Everything here is gated on the span recording: when the events tracer is off (or the step
//! is filtered out) no tensor is looked at, no view is built and no string is formatted. When it
//! records, a contiguous CPU tensor (every tensor the engine hands over is one) is viewed in
//! place through its storage, without a copy; anything else is made contiguous on the CPU first.

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use trace_core::{Data, TensorView};
use trace_events::{Exit, InferenceTracer, Site, Span, TraceStep};

/// Runs `f` on a trace-core view of `t`'s values in row-major order.
pub(crate) fn with_view<R>(t: &Tensor, f: impl FnOnce(TensorView<'_>) -> R) -> Result<R> {
    let t = if t.device().is_cpu() && t.is_contiguous() {
        t.clone()
    } else {
        t.to_device(&Device::Cpu)?.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        unreachable!("the tensor was moved to the CPU");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        unreachable!("the tensor was made contiguous");
    };
    let data = match cpu {
        CpuStorage::U8(v) => Data::U8(&v[start..end]),
        CpuStorage::U32(v) => Data::U32(&v[start..end]),
        CpuStorage::I32(v) => Data::I32(&v[start..end]),
        CpuStorage::I64(v) => Data::I64(&v[start..end]),
        CpuStorage::BF16(v) => Data::BF16(&v[start..end]),
        CpuStorage::F16(v) => Data::F16(&v[start..end]),
        CpuStorage::F32(v) => Data::F32(&v[start..end]),
        CpuStorage::F64(v) => Data::F64(&v[start..end]),
        _ => {
            crate::trace_dtype(t.dtype())?;
            unreachable!("trace_dtype rejects the other dtypes")
        }
    };
    let view = TensorView::new(layout.dims(), data).map_err(candle_core::Error::wrap)?;
    Ok(f(view))
}

/// Runs `f` on the values of a float vector tensor (the logits), as F32 (BF16 logits are widened
/// exactly).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = match t.dtype() {
        DType::BF16 | DType::F16 => t.to_dtype(DType::F32)?,
        _ => t.clone(),
    };
    with_view(&t, |v| match v.data() {
        Data::F32(s) => Ok(f(s)),
        other => Err(candle_core::Error::msg(format!(
            "expected F32 logits, found {:?}",
            other.dtype()
        ))),
    })?
}

/// A Jidoka violation returned under the `stop` policy, as an engine error.
pub(crate) fn stopped(e: trace_events::TraceError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// The events tracer of one forward pass (one iteration: 0 = prefill, then one per decode step).
#[derive(Clone, Copy)]
pub(crate) struct Ev<'a> {
    pub tracer: &'a InferenceTracer,
    pub iteration: usize,
}

impl<'a> Ev<'a> {
    fn site(&self, layer: Option<usize>, name: Option<&'static str>) -> Site<'static> {
        let site = Site::iteration(self.iteration);
        let site = match layer {
            Some(l) => site.layer(l),
            None => site,
        };
        match name {
            Some(n) => site.name(n),
            None => site,
        }
    }

    /// Enters `step`, recording the input tensor's shape and stats when the step is traced (so
    /// a NaN at its exit says whether this step produced it).
    pub fn enter(
        &self,
        step: TraceStep,
        layer: Option<usize>,
        name: Option<&'static str>,
        input: &Tensor,
    ) -> Result<Span<'a>> {
        let site = self.site(layer, name);
        if !self.tracer.should_trace(step) {
            return Ok(self.tracer.enter(step, site));
        }
        with_view(input, |v| self.tracer.enter_with_input(step, site, v))
    }

    /// Enters `step` without an input tensor.
    pub fn enter_bare(&self, step: TraceStep, name: Option<&'static str>) -> Span<'a> {
        self.tracer.enter(step, self.site(None, name))
    }
}

/// Exits `span` with `output`'s shape and stats (NaN/Inf checks).
pub(crate) fn exit_with(span: Span<'_>, output: &Tensor) -> Result<()> {
    if !span.is_recording() {
        return Ok(());
    }
    with_view(output, |v| span.exit(Exit::new().output(v)))?.map_err(stopped)
}

/// Exits `span` with the logits (stats, NaN/Inf checks and top-k logits) and whatever `more`
/// adds (the sampled token).
pub(crate) fn exit_logits(
    span: Span<'_>,
    logits: &Tensor,
    more: impl for<'x> FnOnce(Exit<'x>) -> Exit<'x>,
) -> Result<()> {
    if !span.is_recording() {
        return Ok(());
    }
    with_f32(logits, |l| span.exit(more(Exit::new().logits(l))))?.map_err(stopped)
}

/// The string of a byte-level token as a vocabulary would spell it: printable ASCII as itself,
/// any other byte as a Llama-style byte-fallback token (`<0x0A>`).
pub fn token_string(token: u32) -> String {
    match u8::try_from(token) {
        Ok(b) if (0x20..0x7f).contains(&b) => char::from(b).to_string(),
        Ok(b) => format!("<0x{b:02X}>"),
        Err(_) => format!("<unk {token}>"),
    }
}

/// Streaming byte-level decoding: the text of `tokens` with a trailing incomplete UTF-8 sequence
/// held back (it is not garbage yet: the next token may complete it). Invalid bytes elsewhere
/// decode to U+FFFD.
pub fn decode_stream(tokens: &[u32]) -> String {
    let bytes: Vec<u8> = tokens
        .iter()
        .map(|&t| u8::try_from(t).unwrap_or(b'?'))
        .collect();
    let mut offset = 0;
    let complete = loop {
        match std::str::from_utf8(&bytes[offset..]) {
            Ok(_) => break bytes.len(),
            Err(e) => match e.error_len() {
                None => break offset + e.valid_up_to(),
                Some(n) => offset += e.valid_up_to() + n,
            },
        }
    };
    String::from_utf8_lossy(&bytes[..complete]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_borrow_or_copy_row_major() {
        let t = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let got = with_view(&t.t().unwrap(), |v| {
            (v.shape().to_vec(), format!("{:?}", v.data()))
        })
        .unwrap();
        assert_eq!(got.0, vec![2, 2]);
        assert!(got.1.contains("[1.0, 3.0, 2.0, 4.0]"), "{}", got.1);
        let ids = Tensor::new(&[7u32, 8], &Device::Cpu).unwrap();
        let got = with_view(&ids, |v| matches!(v.data(), Data::U32(&[7, 8]))).unwrap();
        assert!(got);
    }

    #[test]
    fn token_strings() {
        assert_eq!(token_string(u32::from(b'a')), "a");
        assert_eq!(token_string(10), "<0x0A>");
        assert_eq!(token_string(0xE2), "<0xE2>");
        assert_eq!(token_string(300), "<unk 300>");
    }

    #[test]
    fn streaming_decode_holds_back_an_incomplete_tail() {
        let euro: Vec<u32> = "€".bytes().map(u32::from).collect();
        assert_eq!(decode_stream(&[u32::from(b'a'), euro[0], euro[1]]), "a");
        assert_eq!(
            decode_stream(&[u32::from(b'a'), euro[0], euro[1], euro[2]]),
            "a€"
        );
        // A stray continuation byte is garbage at once.
        assert_eq!(decode_stream(&[0x80, u32::from(b'b')]), "\u{FFFD}b");
    }
}
