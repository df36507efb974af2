//! Raw values: reading a record's `.npy` file, one pair at a time, from wherever a side's
//! values come from ([`ValueSource`]).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use trace_core::run::{Run, RunRecord};

use crate::error::{Error, Result};
use crate::report::Warning;

/// Where one side's raw values come from: the `.npy` files of a run directory, or (for a
/// multi-rank run reassembled in memory) the ranks' files combined.
pub(crate) trait ValueSource {
    /// The values of `r` as f64, `None` when it has none; `Err` names the file and what is
    /// wrong with it.
    fn values(&self, r: &RunRecord) -> Option<Result<Vec<f64>, (PathBuf, String)>>;
}

/// The `.npy` files of a run directory, named by the records relative to it.
pub(crate) struct Dir<'a>(pub(crate) &'a Path);

impl ValueSource for Dir<'_> {
    fn values(&self, r: &RunRecord) -> Option<Result<Vec<f64>, (PathBuf, String)>> {
        let path = self.0.join(r.values.as_ref()?);
        Some(load(&path, &r.record.shape).map_err(|problem| (path, problem)))
    }
}

impl ValueSource for Run {
    fn values(&self, r: &RunRecord) -> Option<Result<Vec<f64>, (PathBuf, String)>> {
        Dir(self.dir()).values(r)
    }
}

/// Loads one side's values; a problem is a warning (or an error in strict mode).
pub(crate) fn load_or_warn(
    source: &dyn ValueSource,
    r: &RunRecord,
    side: &'static str,
    strict: bool,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Vec<f64>>> {
    match source.values(r) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err((path, problem))) if strict => Err(Error::Values { path, problem }),
        Some(Err((path, problem))) => {
            warnings.push(Warning {
                side: Some(side),
                message: format!(
                    "{}: {problem}; record {:?} judged without values",
                    path.display(),
                    r.record.name
                ),
            });
            Ok(None)
        }
    }
}

/// Reads a little-endian `f4` or `f8` C-order `.npy` whose shape must equal `shape`.
///
/// Returns the problem as a sentence naming the field (`shape`, `descr`, `fortran_order`) on
/// failure; the caller adds the path.
pub fn load(path: &Path, shape: &[usize]) -> Result<Vec<f64>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read values: {e}"))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .map_err(|e| format!("not a valid .npy file: {e}"))?;
    let found: Vec<u64> = npy.shape().to_vec();
    let expected: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    if found != expected {
        return Err(format!(
            "field `shape`: the .npy holds shape {found:?} but the record says {expected:?}"
        ));
    }
    if npy.order() != npyz::Order::C {
        return Err("field `fortran_order`: expected C order (false)".to_owned());
    }
    let descr = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => format!("{other:?}"),
    };
    let truncated = |e: std::io::Error| format!("cannot read the values (truncated file?): {e}");
    match descr.as_str() {
        "<f4" => Ok(npy
            .into_vec::<f32>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect()),
        "<f8" => npy.into_vec::<f64>().map_err(truncated),
        _ => Err(format!(
            "field `descr`: expected '<f4' or '<f8' (little-endian float), found {descr}"
        )),
    }
}

/// Writes a little-endian F32 C-order `.npy` with npyz, for test fixtures (any shape, so a
/// fixture can disagree with its record on purpose).
#[cfg(test)]
pub(crate) fn write_f32_npy(path: &Path, shape: &[usize], values: &[f32]) -> std::io::Result<()> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(File::create(path)?))
        .begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.npy");
        write_f32_npy(&p, &[2, 2], &[1.0, 2.0, 3.0, 4.5]).unwrap();
        assert_eq!(load(&p, &[2, 2]).unwrap(), [1.0, 2.0, 3.0, 4.5]);
        let msg = load(&p, &[4]).unwrap_err();
        assert!(msg.contains("`shape`") && msg.contains("[2, 2]"), "{msg}");

        write_f32_npy(&p, &[], &[7.0]).unwrap();
        assert_eq!(load(&p, &[]).unwrap(), [7.0]);
        write_f32_npy(&p, &[3], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(load(&p, &[3]).unwrap().len(), 3);

        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        let msg = load(&p, &[3]).unwrap_err();
        assert!(msg.contains("truncated"), "{msg}");
        std::fs::write(&p, b"garbage").unwrap();
        assert!(load(&p, &[3]).unwrap_err().contains("not a valid .npy"));
    }
}
