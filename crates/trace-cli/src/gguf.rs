//! GGUF model files: the header read with the byte offset of every field (so bad input is named
//! precisely), and [`dequantize`], which rewrites a quantized GGUF as F32, one tensor at a time.
//!
//! The numbers come from candle-core: each block of quantized data becomes floats through
//! `candle_core::quantized::ggml_file::qtensor_from_ggml` and `QTensor::dequantize`, the same
//! code candle's quantized models run. The container is read and written here because
//! candle's `gguf_file` keeps metadata and tensors in hash maps (their order is lost, and with
//! it an empty array's element type), reports no offsets, and its writer holds every tensor in
//! memory and always aligns to 32 bytes.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::{ggml_file, GgmlDType};
use candle_core::Device;

/// The GGUF magic, `GGUF` read as a little-endian `u32`.
const MAGIC: u32 = 0x4655_4747;
/// The version [`dequantize`] writes (the current one).
const WRITE_VERSION: u32 = 3;
/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's type id for F32, and llama.cpp's `general.file_type` for an all-F32 file.
const F32_TYPE: u32 = 0;
/// GGML tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Elements dequantized at a time: a multiple of every block size (1, 32, 256), so a chunk
/// is whole blocks, and 4 MiB of F32.
const CHUNK_ELEMENTS: u64 = 1 << 20;

/// A GGUF problem: I/O, or a malformed file, named by path, byte offset and tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not a GGUF this tool can read, or is cut short.
    #[error("{}: byte {offset}{}: {message}", path.display(), tensor_part(tensor))]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in the file the problem is.
        offset: u64,
        /// The tensor concerned, if any.
        tensor: Option<String>,
        /// What is wrong, and what was expected.
        message: String,
    },
    /// The output names the input file.
    #[error("{}: the output is the input file; write the F32 copy elsewhere", path.display())]
    SameFile {
        /// The input.
        path: PathBuf,
    },
}

fn tensor_part(tensor: &Option<String>) -> String {
    tensor
        .as_ref()
        .map(|name| format!(", tensor {name:?}"))
        .unwrap_or_default()
}

/// A GGUF metadata value. Strings are kept as bytes and arrays with their element type, so a
/// value is written back exactly as it was read.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(Vec<u8>),
    /// The element type id, and the elements.
    Array(u32, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The GGUF value type id.
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(..) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// The name of a GGUF value type id.
pub fn value_type_name(id: u32) -> &'static str {
    const NAMES: [&str; 13] = [
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64",
        "f64",
    ];
    NAMES.get(id as usize).copied().unwrap_or("unknown")
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Dimensions in GGML order: the fastest-varying first (as `gguf-dump` prints them).
    pub dims: Vec<u64>,
    /// The ggml type id.
    pub type_id: u32,
    /// Offset of the data from the start of the tensor data section.
    pub offset: u64,
    /// Where this entry starts in the file (for error messages).
    pub entry_offset: u64,
}

impl TensorInfo {
    /// The number of elements ([`read_header`] checks that it fits in a `u64`).
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The type as candle-core reads it, or `None` for a type [`dequantize`] cannot convert.
    pub fn dtype(&self) -> Option<GgmlDType> {
        supported_dtype(self.type_id)
    }

    /// The bytes of data, or `None` for an unsupported type (or a size beyond a `u64`).
    pub fn data_bytes(&self) -> Option<u64> {
        let dtype = self.dtype()?;
        (self.elements() / dtype.block_size() as u64).checked_mul(dtype.type_size() as u64)
    }
}

/// The types candle-core dequantizes (the ones gguf-py dequantizes too).
fn supported_dtype(type_id: u32) -> Option<GgmlDType> {
    Some(match type_id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// ggml's name for a tensor type id (`ggml_type` in ggml.h), or `type N` for one it lacks.
pub fn type_name(type_id: u32) -> String {
    const NAMES: [&str; 40] = [
        "F32", "F16", "Q4_0", "Q4_1", "", "", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
        "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
        "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "", "", "", "TQ1_0",
        "TQ2_0", "", "", "", "MXFP4",
    ];
    match NAMES.get(type_id as usize) {
        Some(name) if !name.is_empty() => (*name).to_string(),
        _ => format!("type {type_id}"),
    }
}

/// A GGUF file's header: everything before the tensor data.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// The format version (1 to 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// The tensor table in file order.
    pub tensors: Vec<TensorInfo>,
    /// The tensor data alignment (`general.alignment`, a power of two as llama.cpp requires,
    /// else 32).
    pub alignment: u64,
    /// Where the tensor data section starts.
    pub data_offset: u64,
    /// The file's size.
    pub file_len: u64,
}

impl Header {
    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Reads little-endian fields and knows where it is, so every error names its offset.
struct Fields<'a, R> {
    inner: R,
    pos: u64,
    len: u64,
    path: &'a Path,
    version: u32,
    tensor: Option<String>,
}

impl<R: Read> Fields<'_, R> {
    fn error(&self, offset: u64, message: impl Into<String>) -> GgufError {
        GgufError::Format {
            path: self.path.to_owned(),
            offset,
            tensor: self.tensor.clone(),
            message: message.into(),
        }
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, GgufError> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(self.error(
                self.pos,
                format!(
                    "truncated: {what} needs {n} bytes, the file ends {} bytes later",
                    self.len.saturating_sub(self.pos)
                ),
            ));
        }
        let mut buf = vec![0; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|source| GgufError::Io {
                path: self.path.to_owned(),
                source,
            })?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let bytes = self.bytes(N as u64, what)?;
        Ok(bytes.try_into().expect("read exactly N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count or length: `u32` in version 1, `u64` after.
    fn count(&mut self, what: &str) -> Result<u64, GgufError> {
        if self.version == 1 {
            self.u32(what).map(u64::from)
        } else {
            self.u64(what)
        }
    }

    fn string(&mut self, what: &str) -> Result<Vec<u8>, GgufError> {
        let len = self.count(what)?;
        self.bytes(len, what)
    }

    fn value(&mut self, type_id: u32, what: &str) -> Result<Value, GgufError> {
        Ok(match type_id {
            0 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                [b] => return Err(self.error(self.pos - 1, format!("{what}: bool byte {b}"))),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                let at = self.pos;
                let elem_type = self.u32(what)?;
                if elem_type > 12 {
                    return Err(self.error(at, format!("{what}: unknown array type {elem_type}")));
                }
                let n = self.count(what)?;
                // Every element takes at least one byte: a count beyond the file is a lie, and
                // must not become an allocation.
                if n > self.len - self.pos {
                    return Err(self.error(at, format!("{what}: {n} elements run past the end")));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem_type, what)?);
                }
                Value::Array(elem_type, items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            other => {
                return Err(self.error(self.pos - 4, format!("{what}: unknown value type {other}")))
            }
        })
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> GgufError + '_ {
    move |source| GgufError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads the header of the GGUF file at `path`, and checks that every tensor's data lies
/// within the file.
pub fn read_header(path: &Path) -> Result<Header, GgufError> {
    let file = File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    read_header_from(BufReader::new(file), len, path)
}

fn read_header_from(inner: impl Read, len: u64, path: &Path) -> Result<Header, GgufError> {
    let mut r = Fields {
        inner,
        pos: 0,
        len,
        path,
        version: 0,
        tensor: None,
    };
    let magic = r.array::<4>("the magic")?;
    if u32::from_le_bytes(magic) != MAGIC {
        return Err(r.error(
            0,
            format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")"),
        ));
    }
    let version = r.u32("the version")?;
    if !(1..=3).contains(&version) {
        return Err(r.error(
            4,
            format!("unsupported GGUF version {version} (expected 1 to 3)"),
        ));
    }
    r.version = version;
    let n_tensors = r.count("the tensor count")?;
    let n_metadata = r.count("the metadata count")?;
    let mut metadata = Vec::new();
    for _ in 0..n_metadata {
        let key = String::from_utf8_lossy(&r.string("a metadata key")?).into_owned();
        let what = format!("metadata {key:?}");
        let type_id = r.u32(&what)?;
        let value = r.value(type_id, &what)?;
        metadata.push((key, value));
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let entry_offset = r.pos;
        r.tensor = None;
        let name = String::from_utf8_lossy(&r.string("a tensor name")?).into_owned();
        r.tensor = Some(name.clone());
        let n_dims = r.u32("the dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(r.error(r.pos - 4, format!("{n_dims} dimensions (at most 4)")));
        }
        let dims = (0..n_dims)
            .map(|_| r.count("a dimension"))
            .collect::<Result<Vec<_>, _>>()?;
        if dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .is_none()
        {
            return Err(r.error(
                entry_offset,
                format!("dimensions {dims:?} overflow 64 bits"),
            ));
        }
        let type_id = r.u32("the tensor type")?;
        let offset = r.u64("the data offset")?;
        tensors.push(TensorInfo {
            name,
            dims,
            type_id,
            offset,
            entry_offset,
        });
    }
    r.tensor = None;
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, value)) => match value.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => {
                let message = format!("general.alignment {value:?} is not a power of two");
                return Err(r.error(0, message));
            }
        },
    };
    let header = Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset: r.pos.div_ceil(alignment) * alignment,
        file_len: len,
    };
    check_data_ranges(&header, path)?;
    Ok(header)
}

/// Every tensor of a known type must fit between the data section's start and the file's end.
fn check_data_ranges(header: &Header, path: &Path) -> Result<(), GgufError> {
    for t in &header.tensors {
        let Some(dtype) = t.dtype() else { continue };
        let error = |offset, message| GgufError::Format {
            path: path.to_owned(),
            offset,
            tensor: Some(t.name.clone()),
            message,
        };
        if t.elements() % dtype.block_size() as u64 != 0 {
            return Err(error(
                t.entry_offset,
                format!(
                    "{} elements, not a multiple of {}'s block size {}",
                    t.elements(),
                    type_name(t.type_id),
                    dtype.block_size()
                ),
            ));
        }
        let end = (header.data_offset.checked_add(t.offset))
            .and_then(|start| start.checked_add(t.data_bytes()?));
        match end {
            Some(end) if end <= header.file_len => {}
            _ => {
                return Err(error(
                    header.data_offset.saturating_add(t.offset),
                    format!(
                        "tensor data ({} bytes of {}) runs past the end of the file ({} bytes)",
                        t.data_bytes().unwrap_or(0),
                        type_name(t.type_id),
                        header.file_len
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// What [`dequantize`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dequantized {
    /// Tensors written.
    pub tensors: usize,
    /// Of those, how many were not F32 in the input.
    pub converted: usize,
    /// The output file's size.
    pub bytes: u64,
}

/// Writes `input` (a GGUF with tensors of any type candle-core dequantizes: F32, F16, BF16,
/// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K) to `output` with every tensor as F32, the
/// metadata kept in order (`general.file_type` set to 0, all F32) and the alignment kept.
///
/// Streaming: the tensors are converted in chunks of 2^20 elements, so the peak memory is the
/// header (metadata, tensor table) plus the buffers of one chunk, whatever the model's size:
/// the input chunk and candle's copy of it (2 x 4 MiB for F32 input, 2 x 0.6 MiB for Q4_1),
/// candle's F32 tensor, its `Vec<f32>` and their bytes (3 x 4 MiB): at most 20 MiB. The output is
/// written to a temporary file beside `output` and renamed over it once complete and synced
/// (with the input's permissions); the input is never written, and an `output` that is the
/// input is refused.
pub fn dequantize(input: &Path, output: &Path) -> Result<Dequantized, GgufError> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            return Err(GgufError::SameFile {
                path: input.to_owned(),
            });
        }
    }
    let header = read_header(input)?;
    if let Some(t) = header.tensors.iter().find(|t| t.dtype().is_none()) {
        return Err(GgufError::Format {
            path: input.to_owned(),
            offset: t.entry_offset,
            tensor: Some(t.name.clone()),
            message: format!(
                "tensor type {} ({}) cannot be dequantized (supported: F32, F16, BF16, Q4_0, \
                 Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)",
                t.type_id,
                type_name(t.type_id)
            ),
        });
    }
    let out = f32_header(&header);
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_error(output))?;
    let mut w = BufWriter::new(tmp.as_file());
    write_header(&mut w, &out).map_err(io_error(output))?;
    let mut src = BufReader::new(File::open(input).map_err(io_error(input))?);
    let mut pos = header_len(&out);
    for (t, o) in header.tensors.iter().zip(&out.tensors) {
        let at = header.data_offset + t.offset;
        src.seek(SeekFrom::Start(at)).map_err(io_error(input))?;
        let padding = out.data_offset + o.offset - pos;
        w.write_all(&vec![0; padding as usize])
            .map_err(io_error(output))?;
        copy_as_f32(&mut src, &mut w, t, (input, at), output)?;
        pos += padding + 4 * o.elements();
    }
    w.flush().map_err(io_error(output))?;
    drop(w);
    // A temporary file is private (0600 on Unix); the copy gets the input's permissions.
    let permissions = fs::metadata(input).map_err(io_error(input))?.permissions();
    tmp.as_file()
        .set_permissions(permissions)
        .map_err(io_error(output))?;
    tmp.as_file().sync_all().map_err(io_error(output))?;
    tmp.persist(output).map_err(|e| GgufError::Io {
        path: output.to_owned(),
        source: e.error,
    })?;
    Ok(Dequantized {
        tensors: header.tensors.len(),
        converted: header.tensors.iter().filter(|t| t.type_id != 0).count(),
        bytes: pos,
    })
}

/// The output's header: F32 tensors laid out at the input's alignment, `general.file_type` 0.
fn f32_header(input: &Header) -> Header {
    let mut metadata = input.metadata.clone();
    match metadata.iter_mut().find(|(k, _)| k == "general.file_type") {
        Some((_, value)) => *value = Value::U32(F32_TYPE),
        None => metadata.push(("general.file_type".into(), Value::U32(F32_TYPE))),
    }
    let mut offset = 0;
    let tensors = input
        .tensors
        .iter()
        .map(|t| {
            let entry = TensorInfo {
                type_id: F32_TYPE,
                offset,
                ..t.clone()
            };
            offset = (offset + 4 * t.elements()).div_ceil(input.alignment) * input.alignment;
            entry
        })
        .collect();
    let mut out = Header {
        version: WRITE_VERSION,
        metadata,
        tensors,
        alignment: input.alignment,
        data_offset: 0,
        file_len: 0,
    };
    out.data_offset = header_len(&out).div_ceil(out.alignment) * out.alignment;
    out.file_len = out.tensors.last().map_or(out.data_offset, |t| {
        out.data_offset + t.offset + 4 * t.elements()
    });
    out
}

/// The bytes [`write_header`] writes.
fn header_len(header: &Header) -> u64 {
    let mut counter = Counter(0);
    write_header(&mut counter, header).expect("counting never fails");
    counter.0
}

struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a version 3 header (without the padding before the data).
fn write_header(w: &mut impl Write, header: &Header) -> io::Result<()> {
    w.write_all(&MAGIC.to_le_bytes())?;
    w.write_all(&WRITE_VERSION.to_le_bytes())?;
    w.write_all(&(header.tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(header.metadata.len() as u64).to_le_bytes())?;
    for (key, value) in &header.metadata {
        write_string(w, key.as_bytes())?;
        w.write_all(&value.type_id().to_le_bytes())?;
        write_value(w, value)?;
    }
    for t in &header.tensors {
        write_string(w, t.name.as_bytes())?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            w.write_all(&d.to_le_bytes())?;
        }
        w.write_all(&t.type_id.to_le_bytes())?;
        w.write_all(&t.offset.to_le_bytes())?;
    }
    Ok(())
}

fn write_string(w: &mut impl Write, s: &[u8]) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s)
}

fn write_value(w: &mut impl Write, value: &Value) -> io::Result<()> {
    match value {
        Value::U8(v) => w.write_all(&v.to_le_bytes()),
        Value::I8(v) => w.write_all(&v.to_le_bytes()),
        Value::U16(v) => w.write_all(&v.to_le_bytes()),
        Value::I16(v) => w.write_all(&v.to_le_bytes()),
        Value::U32(v) => w.write_all(&v.to_le_bytes()),
        Value::I32(v) => w.write_all(&v.to_le_bytes()),
        Value::F32(v) => w.write_all(&v.to_le_bytes()),
        Value::Bool(v) => w.write_all(&[u8::from(*v)]),
        Value::String(s) => write_string(w, s),
        Value::Array(elem_type, items) => {
            w.write_all(&elem_type.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|item| write_value(w, item))
        }
        Value::U64(v) => w.write_all(&v.to_le_bytes()),
        Value::I64(v) => w.write_all(&v.to_le_bytes()),
        Value::F64(v) => w.write_all(&v.to_le_bytes()),
    }
}

/// Streams one tensor's data from `src` (positioned at `at`) to `w` as little-endian F32,
/// a chunk of whole blocks at a time.
fn copy_as_f32(
    src: &mut impl Read,
    w: &mut impl Write,
    t: &TensorInfo,
    (input, at): (&Path, u64),
    output: &Path,
) -> Result<(), GgufError> {
    let dtype = t.dtype().expect("checked before writing");
    let (block, block_bytes) = (dtype.block_size() as u64, dtype.type_size() as u64);
    let mut done = 0;
    let mut raw = Vec::new();
    while done < t.elements() {
        let n = CHUNK_ELEMENTS.min(t.elements() - done);
        raw.resize((n / block * block_bytes) as usize, 0);
        src.read_exact(&mut raw).map_err(io_error(input))?;
        let floats = ggml_file::qtensor_from_ggml(dtype, &raw, vec![n as usize], &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .and_then(|x| x.to_vec1::<f32>())
            .map_err(|e| GgufError::Format {
                path: input.to_owned(),
                offset: at + done / block * block_bytes,
                tensor: Some(t.name.clone()),
                message: format!("dequantizing {}: {e}", type_name(t.type_id)),
            })?;
        let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
        w.write_all(&bytes).map_err(io_error(output))?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Q4_0 tensor table entry.
    fn q4_0(name: &str, dims: Vec<u64>) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims,
            type_id: 2,
            offset: 0,
            entry_offset: 0,
        }
    }

    fn header(metadata: Vec<(String, Value)>, tensors: Vec<TensorInfo>) -> Header {
        let mut h = Header {
            version: 3,
            metadata,
            tensors,
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
            file_len: 0,
        };
        h.data_offset = header_len(&h).div_ceil(32) * 32;
        h.file_len = h.data_offset + 1024;
        h
    }

    #[test]
    fn header_round_trips_with_order_and_empty_arrays() {
        let metadata = vec![
            ("z.first".to_string(), Value::String(b"llama".to_vec())),
            ("a.second".to_string(), Value::Array(8, vec![])),
            ("general.alignment".to_string(), Value::U32(32)),
            (
                "m.nested".to_string(),
                Value::Array(9, vec![Value::Array(4, vec![Value::U32(7)])]),
            ),
            ("f".to_string(), Value::F64(-0.5)),
        ];
        let tensors = vec![q4_0("w", vec![32, 2])];
        let h = header(metadata, tensors);
        let mut bytes = Vec::new();
        write_header(&mut bytes, &h).unwrap();
        bytes.resize(h.file_len as usize, 0);
        let back = read_header_from(&bytes[..], h.file_len, Path::new("x.gguf")).unwrap();
        assert_eq!(back.metadata, h.metadata);
        assert_eq!(back.tensors[0].dims, vec![32, 2]);
        assert_eq!(back.data_offset, h.data_offset);
    }

    #[test]
    fn f32_header_lays_tensors_out_at_the_alignment() {
        let mut h = header(
            vec![("general.alignment".into(), Value::U32(64))],
            vec![q4_0("a", vec![3]), q4_0("b", vec![32])],
        );
        h.alignment = 64;
        let out = f32_header(&h);
        assert_eq!(out.tensors[1].offset, 64);
        assert_eq!(out.data_offset % 64, 0);
        assert_eq!(out.get("general.file_type"), Some(&Value::U32(0)));
    }

    /// A small file: header, padding and the data of one Q4_0 tensor of 64 elements.
    fn small_file() -> Vec<u8> {
        let metadata = vec![
            (
                "general.architecture".into(),
                Value::String(b"llama".to_vec()),
            ),
            (
                "t".into(),
                Value::Array(8, vec![Value::String(b"ab".to_vec())]),
            ),
        ];
        let tensors = vec![q4_0("w", vec![32, 2])];
        let h = header(metadata, tensors);
        let mut bytes = Vec::new();
        write_header(&mut bytes, &h).unwrap();
        bytes.resize((h.data_offset + 36) as usize, 0);
        bytes
    }

    #[test]
    fn every_truncation_and_corrupt_byte_is_an_error_or_a_read_never_a_panic() {
        let good = small_file();
        assert!(read_header_from(&good[..], good.len() as u64, Path::new("x")).is_ok());
        for cut in 0..good.len() {
            let r = read_header_from(&good[..cut], cut as u64, Path::new("x"));
            assert!(r.is_err(), "a file cut at {cut} read as {r:?}");
        }
        for at in 0..good.len() {
            for byte in [0x00, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = read_header_from(&bad[..], bad.len() as u64, Path::new("x"));
            }
        }
    }

    #[test]
    fn overflowing_dimensions_are_an_error_not_a_panic() {
        let t = q4_0("w", vec![1 << 40, 1 << 40]);
        let h = header(vec![], vec![]);
        let mut bytes = Vec::new();
        write_header(
            &mut bytes,
            &Header {
                tensors: vec![t],
                ..h
            },
        )
        .unwrap();
        let len = bytes.len() as u64;
        let err = read_header_from(&bytes[..], len, Path::new("x.gguf")).unwrap_err();
        assert!(err.to_string().contains("overflow 64 bits"), "{err}");
    }

    #[test]
    fn a_huge_array_count_is_an_error_not_an_allocation() {
        let h = header(vec![("k".into(), Value::Array(0, vec![]))], vec![]);
        let mut bytes = Vec::new();
        write_header(&mut bytes, &h).unwrap();
        // The array's count is the last 8 bytes.
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
        let len = bytes.len() as u64;
        let err = read_header_from(&bytes[..], len, Path::new("x.gguf")).unwrap_err();
        assert!(err.to_string().contains("run past the end"), "{err}");
    }
}
