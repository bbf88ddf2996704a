//! Run records on disk: `results/<experiment>/runs/<run_id>/record.json`.
//! Its presence marks the run complete; it is written to a temporary file
//! and renamed into place.

use super::atomic::write_atomic;
use crate::training::record::RunRecord;
use anyhow::Context;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const RECORD_FILE: &str = "record.json";

pub fn run_dir(experiment_dir: &Path, run_id: &str) -> PathBuf {
    experiment_dir.join("runs").join(run_id)
}

pub fn save(experiment_dir: &Path, record: &RunRecord) -> anyhow::Result<()> {
    let path = run_dir(experiment_dir, &record.run_id).join(RECORD_FILE);
    let json = serde_json::to_vec_pretty(record).expect("record serializes");
    write_atomic(&path, &json)
}

/// The run ids under `experiment_dir/runs/` that have a record file.
pub fn stored_ids(experiment_dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let runs = experiment_dir.join("runs");
    let entries = match std::fs::read_dir(&runs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", runs.display())),
    };
    let mut ids = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", runs.display()))?;
        if entry.path().join(RECORD_FILE).is_file() {
            ids.insert(entry.file_name().to_string_lossy().to_string());
        }
    }
    Ok(ids)
}

/// The stored record of `run_id`, if complete.
pub fn load(experiment_dir: &Path, run_id: &str) -> anyhow::Result<Option<RunRecord>> {
    let path = run_dir(experiment_dir, run_id).join(RECORD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let record: RunRecord = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt", path.display()))?;
            Ok(Some(record))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
