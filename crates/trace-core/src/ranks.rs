//! Multi-process runs: where rank `r` of a run writes, and finding the ranks again.
//!
//! A tensor-parallel engine runs as `N` processes (the *world*), each holding a slice of the
//! model. Each process writes its own ordinary run, so nothing is shared between processes (no
//! common manifest, no lock):
//!
//! ```text
//! DIR/                      TENSOR_TRACE_DIR, the same for every process
//!   rank-0/                 rank 0's run: manifest.jsonl, *.trace, *.npy, rank.json
//!     rank.json             {"rank":0,"world_size":2}
//!   rank-1/
//!     rank.json             {"rank":1,"world_size":2}
//! ```
//!
//! # Settings and what they mean
//!
//! - `TENSOR_TRACE_WORLD_SIZE` > 1: a multi-process run. `TENSOR_TRACE_RANK` must then be set and
//!   be below the world size; the process writes into `DIR/rank-{rank}` and records `rank.json`
//!   there (written when the run directory is created, with its first record).
//! - `TENSOR_TRACE_WORLD_SIZE` = 1, or unset: a single-process run, written into `DIR` itself
//!   exactly as without these settings. A world of one process *is* a single-process run, so it
//!   compares directly with any single-process reference. `TENSOR_TRACE_RANK`, when set, is
//!   still stamped into every record (and must be 0 when the world size is 1).
//! - A world size of 0 is an error.
//!
//! The Python emitter reads the same variables and, when they are unset, torch.distributed's
//! launcher variables `RANK` and `WORLD_SIZE` (each `TENSOR_TRACE_*` variable wins over its
//! launcher counterpart); the C ABI uses this crate's global tracer and so behaves exactly as
//! described here.
//!
//! ```
//! use trace_core::{ranks, Context, TensorView, Tracer};
//!
//! let dir = tempfile::tempdir()?;
//! for rank in 0..2 {
//!     let tracer = Tracer::builder().dir(dir.path()).rank(rank).world_size(2).build()?;
//!     tracer.record("x", &Context::default(), TensorView::new(&[2], &[1.0f32, 2.0][..])?)?;
//! }
//! let world = ranks::RankedRun::discover(dir.path())?.expect("two rank directories");
//! assert_eq!(world.world_size, 2);
//! assert_eq!(world.ranks, vec![dir.path().join("rank-0"), dir.path().join("rank-1")]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The file each rank directory holds: its [`RankInfo`] as one JSON object.
pub const RANK_FILE: &str = "rank.json";
/// The prefix of a rank directory's name: `rank-{r}`, `r` in decimal without padding.
pub const RANK_DIR_PREFIX: &str = "rank-";

/// The name of rank `rank`'s directory inside the run directory.
pub fn rank_dir_name(rank: u32) -> String {
    format!("{RANK_DIR_PREFIX}{rank}")
}

/// One process of a multi-process run: its rank and the number of processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankInfo {
    /// This process's rank, below `world_size`.
    pub rank: u32,
    /// The number of processes of the run (> 1).
    pub world_size: u32,
}

impl RankInfo {
    /// Checks a rank and world size as given by settings named `rank_setting` and
    /// `world_setting` (for error messages); `Some` only for a multi-process run (world size
    /// above 1), `None` for a single-process one (see the module documentation).
    pub fn from_settings(
        rank: Option<u32>,
        world_size: Option<u32>,
        rank_setting: &str,
        world_setting: &str,
    ) -> Result<Option<RankInfo>> {
        let Some(world_size) = world_size else {
            return Ok(None);
        };
        if world_size == 0 {
            return Err(Error::Config {
                setting: world_setting.to_owned(),
                value: "0".into(),
                problem: "expected the number of processes, at least 1".into(),
            });
        }
        match rank {
            None if world_size == 1 => Ok(None),
            None => Err(Error::Config {
                setting: world_setting.to_owned(),
                value: world_size.to_string(),
                problem: format!(
                    "a world of {world_size} processes needs each process's rank in \
                     {rank_setting} (0 to {})",
                    world_size - 1
                ),
            }),
            Some(rank) if rank >= world_size => Err(Error::Config {
                setting: rank_setting.to_owned(),
                value: rank.to_string(),
                problem: format!(
                    "expected a rank below the world size {world_size} ({world_setting})"
                ),
            }),
            Some(_) if world_size == 1 => Ok(None),
            Some(rank) => Ok(Some(RankInfo { rank, world_size })),
        }
    }

    /// Where this rank writes inside the run directory `base`.
    pub fn dir(&self, base: &Path) -> PathBuf {
        base.join(rank_dir_name(self.rank))
    }

    /// Writes [`RANK_FILE`] into the rank directory `dir` (which exists), atomically and never
    /// replacing a file: when one is there (appending to an earlier run of this rank) it must
    /// say the same rank and world size.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(RANK_FILE);
        match RankInfo::read(&path) {
            Ok(existing) if existing == *self => return Ok(()),
            Ok(existing) => {
                return Err(Error::RankLayout {
                    path,
                    problem: format!(
                        "holds rank {} of a world of {}, but this process is rank {} of {}",
                        existing.rank, existing.world_size, self.rank, self.world_size
                    ),
                })
            }
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let text = serde_json::to_string(self).expect("RankInfo serializes") + "\n";
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| Error::io("write", &path, e))
    }

    /// Reads a [`RANK_FILE`].
    pub fn read(path: &Path) -> Result<RankInfo> {
        let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::RankLayout {
            path: path.to_owned(),
            problem: format!(
                "expected {{\"rank\": R, \"world_size\": N}} with non-negative integers: {e}"
            ),
        })
    }
}

/// A multi-process run found on disk: the rank directories, in rank order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedRun {
    /// The run directory holding the `rank-{r}` directories.
    pub dir: PathBuf,
    /// The world size every rank recorded.
    pub world_size: u32,
    /// `ranks[r]` is rank `r`'s run directory.
    pub ranks: Vec<PathBuf>,
}

impl RankedRun {
    /// Whether `dir` holds rank directories (`rank-{r}` subdirectories) rather than a run.
    pub fn looks_ranked(dir: &Path) -> bool {
        fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| parse_rank_dir(n).is_some())
                    && e.path().is_dir()
            })
        })
    }

    /// Reads the layout of `dir`: `Ok(None)` when it holds no `rank-{r}` directory (an
    /// ordinary run), the ranks when it does. It is an error when the directory holds both
    /// records and rank directories, when a rank directory lacks its [`RANK_FILE`] or names
    /// another rank, when the ranks disagree on the world size, or when a rank of the world is
    /// missing.
    pub fn discover(dir: &Path) -> Result<Option<RankedRun>> {
        let entries = fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
        let mut found: Vec<(u32, PathBuf)> = Vec::new();
        let mut records = None;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match parse_rank_dir(&name) {
                Some(rank) if entry.path().is_dir() => found.push((rank, entry.path())),
                _ if name == crate::record::MANIFEST_FILE || name.ends_with(".trace") => {
                    records = Some(name)
                }
                _ => {}
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        let layout_error = |path: &Path, problem: String| Error::RankLayout {
            path: path.to_owned(),
            problem,
        };
        if let Some(file) = records {
            return Err(layout_error(
                dir,
                format!(
                    "holds both a run ({file}) and rank directories ({}); expected one or the \
                     other",
                    rank_dir_name(found[0].0)
                ),
            ));
        }
        found.sort();
        let mut world_size = None;
        for (rank, path) in &found {
            let info = RankInfo::read(&path.join(RANK_FILE))?;
            if info.rank != *rank {
                return Err(layout_error(
                    &path.join(RANK_FILE),
                    format!("says rank {} inside {}", info.rank, rank_dir_name(*rank)),
                ));
            }
            match world_size {
                None => world_size = Some((info.world_size, path.clone())),
                Some((n, ref first)) if n != info.world_size => {
                    return Err(layout_error(
                        &path.join(RANK_FILE),
                        format!(
                            "says world size {}, but {} says {n}",
                            info.world_size,
                            first.join(RANK_FILE).display()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        let (world_size, _) = world_size.expect("at least one rank");
        let present: Vec<u32> = found.iter().map(|(r, _)| *r).collect();
        if present != (0..world_size).collect::<Vec<_>>() {
            let missing: Vec<String> = (0..world_size)
                .filter(|r| !present.contains(r))
                .map(rank_dir_name)
                .collect();
            return Err(layout_error(
                dir,
                format!(
                    "a world of {world_size} ranks, but {} missing",
                    if missing.is_empty() {
                        "extra rank directories are present".to_owned()
                    } else {
                        format!("{} is", missing.join(", "))
                    }
                ),
            ));
        }
        Ok(Some(RankedRun {
            dir: dir.to_owned(),
            world_size,
            ranks: found.into_iter().map(|(_, p)| p).collect(),
        }))
    }
}

/// The rank of a directory named `rank-{r}` (decimal, no sign, no leading zeros but `0`).
fn parse_rank_dir(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(RANK_DIR_PREFIX)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rank: Option<u32>, world: Option<u32>) -> Result<Option<RankInfo>> {
        RankInfo::from_settings(rank, world, "R", "W")
    }

    #[test]
    fn world_size_one_or_unset_is_a_single_process_run() {
        assert_eq!(settings(None, None).unwrap(), None);
        assert_eq!(settings(Some(3), None).unwrap(), None);
        assert_eq!(settings(None, Some(1)).unwrap(), None);
        assert_eq!(settings(Some(0), Some(1)).unwrap(), None);
        assert_eq!(
            settings(Some(1), Some(2)).unwrap(),
            Some(RankInfo {
                rank: 1,
                world_size: 2
            })
        );
    }

    #[test]
    fn bad_settings_name_the_setting_and_what_was_expected() {
        let e = settings(None, Some(0)).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid W=\"0\": expected the number of processes, at least 1"
        );
        let e = settings(None, Some(4)).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid W=\"4\"") && e.contains("rank in R (0 to 3)"),
            "{e}"
        );
        let e = settings(Some(2), Some(2)).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid R=\"2\": expected a rank below the world size 2 (W)"
        );
        assert!(settings(Some(1), Some(1)).is_err());
    }

    #[test]
    fn rank_dir_names_round_trip_and_reject_lookalikes() {
        for r in [0, 1, 7, 10, 4_000_000_000] {
            assert_eq!(parse_rank_dir(&rank_dir_name(r)), Some(r));
        }
        for bad in [
            "rank-", "rank-01", "rank--1", "rank-+1", "rank-x", "rank_0", "rank-1a",
        ] {
            assert_eq!(parse_rank_dir(bad), None, "{bad}");
        }
    }

    fn make_rank(dir: &Path, rank: u32, world_size: u32) {
        let d = dir.join(rank_dir_name(rank));
        fs::create_dir_all(&d).unwrap();
        RankInfo { rank, world_size }.write(&d).unwrap();
    }

    #[test]
    fn discover_reads_a_complete_world_and_ignores_plain_runs() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(RankedRun::discover(tmp.path()).unwrap(), None);
        assert!(!RankedRun::looks_ranked(tmp.path()));
        make_rank(tmp.path(), 1, 2);
        make_rank(tmp.path(), 0, 2);
        assert!(RankedRun::looks_ranked(tmp.path()));
        let e = crate::run::Run::open(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("a multi-rank run (rank-N directories)"), "{e}");
        let run = RankedRun::discover(tmp.path()).unwrap().unwrap();
        assert_eq!(run.world_size, 2);
        assert_eq!(
            run.ranks,
            vec![tmp.path().join("rank-0"), tmp.path().join("rank-1")]
        );
    }

    #[test]
    fn discover_refuses_incomplete_or_inconsistent_worlds() {
        let tmp = tempfile::tempdir().unwrap();
        make_rank(tmp.path(), 0, 3);
        make_rank(tmp.path(), 2, 3);
        let e = RankedRun::discover(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("a world of 3 ranks, but rank-1 is missing"),
            "{e}"
        );

        let tmp = tempfile::tempdir().unwrap();
        make_rank(tmp.path(), 0, 2);
        make_rank(tmp.path(), 1, 3);
        let e = RankedRun::discover(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("says world size 3, but"), "{e}");

        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("rank-0")).unwrap();
        let e = RankedRun::discover(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("rank.json"), "{e}");

        let tmp = tempfile::tempdir().unwrap();
        make_rank(tmp.path(), 0, 1 + 1);
        make_rank(tmp.path(), 1, 2);
        fs::write(tmp.path().join("manifest.jsonl"), "").unwrap();
        let e = RankedRun::discover(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("holds both a run (manifest.jsonl)"), "{e}");
    }

    #[test]
    fn rank_file_must_agree_when_already_present() {
        let tmp = tempfile::tempdir().unwrap();
        let info = RankInfo {
            rank: 1,
            world_size: 2,
        };
        info.write(tmp.path()).unwrap();
        info.write(tmp.path()).unwrap();
        let e = RankInfo {
            rank: 1,
            world_size: 4,
        }
        .write(tmp.path())
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds rank 1 of a world of 2"), "{e}");
        assert_eq!(
            fs::read_to_string(tmp.path().join(RANK_FILE)).unwrap(),
            "{\"rank\":1,\"world_size\":2}\n"
        );
    }
}
