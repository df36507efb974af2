//! The one driver: every model ([`Harness`]) runs through the same stages. Its engine (A),
//! the chosen reference in f64 (B) and, for calibrated verdicts, again in the engine's
//! precision (C), the diff under the reference's rules, and the model's verdict; or, with
//! `--bisect`, the same three sides as programs through trace-cli's bisect.

use anyhow::{Context, Result};
use trace_cli::bisect::{Bisection, DEFAULT_WINDOW};

use crate::exec::{open_run, Progress};
use crate::judge::{self, Judge};
use crate::model::minilm::MiniLmHarness;
use crate::model::smollm2::SmolLm2Harness;
use crate::model::synthetic::SyntheticHarness;
use crate::model::tp::TensorParallelHarness;
use crate::model::{Harness, Sides, Verdict};
use crate::options::Options;
use crate::reference::Reference;
use crate::task::{Job, Model, Precision, Task};

/// Runs the crossval `o` describes and prints its report; whether it passed.
pub fn execute(o: &Options) -> Result<bool> {
    match o.model {
        Model::Synthetic => drive(&SyntheticHarness, o),
        Model::MiniLm => drive(&MiniLmHarness, o),
        Model::TensorParallel => drive(&TensorParallelHarness, o),
        Model::SmolLm2 => drive(&SmolLm2Harness, o),
    }
}

fn drive<H: Harness>(h: &H, o: &Options) -> Result<bool> {
    if o.bisect.is_some() {
        return crate::bisect::report(o.json, || bisect(h, o));
    }
    if o.against.is_some() {
        return against(h, o);
    }
    let outcome = run(h, o)?;
    print!("{}", outcome.render(o));
    if o.json {
        // stdout holds the JSON report only.
        if let Some(note) = outcome.note() {
            eprintln!("{note}");
        }
    }
    Ok(outcome.passed())
}

/// Runs the whole crossval of model `h` and returns what it found.
pub fn run<H: Harness>(h: &H, o: &Options) -> Result<H::Outcome> {
    let progress = Progress::new(o.quiet);
    let inputs = h.prepare(o, &progress)?;
    let engine_dir = o.out.join(h.engine_dir());
    let engine = h.run_engine(o, &inputs, &engine_dir, &progress)?;
    if let Some((dir, rules)) = h.own_reference(o)? {
        let sides = Sides {
            engine: engine_dir,
            reference: o.out.join(dir),
            baseline: None,
        };
        let report = judge::diff_dirs(&sides.engine, &sides.reference, rules)?;
        return h.conclude(o, report, engine, Vec::new(), &sides);
    }
    let reference = registry_reference(o)?;
    let task = h.task(o, &inputs)?;
    let baseline_engine = baseline_engine(reference, &task);
    let sides = Sides {
        engine: engine_dir,
        reference: o.out.join(reference.name()),
        baseline: o
            .judge
            .baseline
            .then(|| Judge::baseline_dir(&o.out, baseline_engine.name(), o.engine_precision())),
    };
    let reference_tokens = run_references(o, reference, task, &sides, &progress)?;
    progress.stage(&format!(
        "trace-diff: candle (A) against {} (B), {}",
        reference.name(),
        o.judge.describe()
    ));
    let a = open_run(&sides.engine)?;
    let b = open_run(&sides.reference)?;
    let c = sides.baseline.as_deref().map(open_run).transpose()?;
    let report = o
        .judge
        .diff(&a, &b, c.as_ref(), reference.rules(h.model())?)?;
    h.conclude(o, report, engine, reference_tokens, &sides)
}

/// `--against`: that reference's engine (A, in the engine's precision) against the reference
/// (B in f64, C in the engine's precision), the rules composed from the two runs' engine views;
/// prints trace-diff's report and returns whether they agree.
fn against<H: Harness>(h: &H, o: &Options) -> Result<bool> {
    let progress = Progress::new(o.quiet);
    let inputs = h.prepare(o, &progress)?;
    let (engine, reference) = (o.against.context("--against")?, registry_reference(o)?);
    let sides = Sides {
        engine: o.out.join(engine.name()),
        reference: o.out.join(reference.name()),
        baseline: o
            .judge
            .baseline
            .then(|| Judge::baseline_dir(&o.out, reference.name(), o.engine_precision())),
    };
    progress.stage(&format!(
        "A: {} in {} -> {}",
        engine.name(),
        o.engine_precision().name(),
        sides.engine.display()
    ));
    let task = h.task(o, &inputs)?;
    engine
        .run(&Job {
            task,
            precision: o.engine_precision(),
            trace_dir: &sides.engine,
            quiet: o.quiet,
        })
        .with_context(|| format!("run the {} engine", engine.name()))?;
    run_references(o, reference, task, &sides, &progress)?;
    let spec = |side, flag, dir| trace_diff::views::SideSpec::new(side, flag, dir, None);
    let rules = trace_diff::views::choose(
        spec("A", "--view-a", &sides.engine),
        spec("B", "--view-b", &sides.reference),
        sides
            .baseline
            .as_deref()
            .map(|c| spec("the baseline", "--view-c", c)),
    )?
    .unwrap_or_default();
    progress.stage(&format!(
        "trace-diff: {} (A) against {} (B), {}, through their engine views",
        engine.name(),
        reference.name(),
        o.judge.describe()
    ));
    let a = open_run(&sides.engine)?;
    let b = open_run(&sides.reference)?;
    let c = sides.baseline.as_deref().map(open_run).transpose()?;
    let report = o.judge.diff(&a, &b, c.as_ref(), rules)?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", trace_diff::render::text(&report, &Default::default()));
    }
    Ok(report.outcome.exit_code() == 0)
}

/// Runs the reference in f64 into `sides.reference` and, for calibrated verdicts, in the
/// engine's precision into `sides.baseline`; returns the tokens of the first.
fn run_references(
    o: &Options,
    reference: &'static dyn Reference,
    task: Task<'_>,
    sides: &Sides,
    progress: &Progress,
) -> Result<Vec<u32>> {
    let baseline_engine = baseline_engine(reference, &task);
    let run = |engine: &dyn Reference, precision, trace_dir| {
        engine
            .run(&Job {
                task,
                precision,
                trace_dir,
                quiet: o.quiet,
            })
            .with_context(|| format!("run the {} reference", engine.name()))
    };
    // A GGUF's B is the reference on the weights without quantization, C on the engine's file.
    let (precision, baseline_precision) = match task {
        Task::Gguf { engine_file, .. } => (
            "the weights dequantized to F32",
            format!("on the engine's file {}", engine_file.display()),
        ),
        _ => (
            if reference.computes_in(Precision::F64) {
                "f64"
            } else {
                "its own precision"
            },
            format!(
                "in the engine's precision ({})",
                o.engine_precision().name()
            ),
        ),
    };
    progress.stage(&format!(
        "reference {} ({precision}): {} -> {}",
        reference.name(),
        reference.about(),
        sides.reference.display()
    ));
    let tokens = run(reference, Precision::F64, &sides.reference)?;
    if let Some(baseline) = &sides.baseline {
        progress.stage(&format!(
            "baseline: {} {baseline_precision} -> {}",
            baseline_engine.name(),
            baseline.display()
        ));
        run(baseline_engine, o.engine_precision(), baseline)?;
    }
    Ok(tokens)
}

/// Bisects the engine (as `crossval-side`) against the reference's program, in `o.out/bisect`.
pub fn bisect<H: Harness>(h: &H, o: &Options) -> Result<Bisection> {
    let reference = registry_reference(o)?;
    let inputs = h.prepare(o, &Progress::new(true))?;
    let a = h.engine_command(o, &inputs)?;
    let task = h.task(o, &inputs)?;
    let command = |precision| {
        reference.command(&Job {
            task,
            precision,
            trace_dir: &o.out,
            quiet: o.quiet,
        })
    };
    let b = command(Precision::F64)?;
    let c = o
        .judge
        .baseline
        .then(|| command(o.engine_precision()))
        .transpose()?;
    crate::bisect::run(
        &a,
        &b,
        c.as_ref(),
        &o.out.join("bisect"),
        o.bisect.unwrap_or(DEFAULT_WINDOW),
        reference.rules(h.model())?,
        &o.judge,
    )
}

/// The reference of the registry `o` names (every model without its own reference has one).
/// The engine whose run is the baseline: it computes in the engine's arithmetic, so it is the
/// reference itself, or the engine the reference names for that task (llama.cpp on a
/// quantized GGUF, for transformers).
fn baseline_engine(reference: &'static dyn Reference, task: &Task<'_>) -> &'static dyn Reference {
    reference.baseline_engine(task).unwrap_or(reference)
}

pub(crate) fn registry_reference(o: &Options) -> Result<&'static dyn Reference> {
    o.reference
        .with_context(|| format!("--model {} takes no --reference", o.model.name()))
}
