//! `fleet recs evaluate`: the model offline, on a time split of real interaction logs, beside a
//! popularity baseline and (when its Python environment is there) the `implicit` library
//! trained on the very same split files.
//!
//! - MovieLens-100K (`scripts/fetch-movielens.sh`): every rating is an interaction.
//! - The Superstore order lines (`scripts/fetch-dataset.sh`, the catalogue `fleet seed`
//!   loads): customer × product purchases, timed by order date.
//!
//! Each is split at the 80% quantile of time (train on the past, test on the future); metrics
//! are `implicit`'s precision, MAP and NDCG at 10 (see `recs::eval`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use recs::dataset::{read_ratings_csv, write_triples, Interaction};
use recs::eval::{evaluate, time_split, AlsRecommender, Split};
use recs::{AlsParams, CsrMatrix, Metrics, Popularity};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Data(String),
    #[error("the `implicit` reference failed: {0}")]
    Reference(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EvalError {
    let what = what.into();
    move |source| EvalError::Io { what, source }
}

/// ALS hyperparameters chosen on a validation split cut from MovieLens' training period only
/// (the last 20% of it; the test period never looked at): 32 factors, strong regularisation,
/// low confidence.
pub fn movielens_params(threads: usize) -> AlsParams {
    AlsParams {
        factors: 32,
        regularization: 1.0,
        alpha: 1.0,
        iterations: 15,
        threads,
        ..AlsParams::default()
    }
}

/// The `implicit` library in the venv `scripts/recs-env.sh` makes, run on triples files.
pub struct Reference {
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Reference {
    /// Makes (or finds) the venv through `scripts/recs-env.sh` under `repo`.
    pub fn prepare(repo: &Path) -> Result<Self, EvalError> {
        let out = Command::new("bash")
            .arg(repo.join("scripts/recs-env.sh"))
            .output()
            .map_err(io("running scripts/recs-env.sh"))?;
        if !out.status.success() {
            return Err(EvalError::Reference(format!(
                "scripts/recs-env.sh: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let python = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(Self {
            python: python.into(),
            script: repo.join("tests/python/recs_reference.py"),
        })
    }

    /// Trains on `train` (and scores on `test`) with `p`; its JSON answer.
    pub fn run(
        &self,
        train: &Path,
        test: Option<&Path>,
        p: &AlsParams,
        k: usize,
        extra: &[&str],
    ) -> Result<serde_json::Value, EvalError> {
        let mut command = Command::new(&self.python);
        command.arg(&self.script).arg("--train").arg(train);
        if let Some(test) = test {
            command.arg("--test").arg(test);
        }
        for (flag, value) in [
            ("--factors", p.factors.to_string()),
            ("--regularization", p.regularization.to_string()),
            ("--alpha", p.alpha.to_string()),
            ("--iterations", p.iterations.to_string()),
            ("--cg-steps", p.cg_steps.to_string()),
            ("--threads", p.threads.to_string()),
            ("--k", k.to_string()),
        ] {
            command.arg(flag).arg(value);
        }
        let out = command
            .args(extra)
            .output()
            .map_err(io("running the implicit reference"))?;
        if !out.status.success() {
            return Err(EvalError::Reference(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| EvalError::Reference(format!("unreadable answer: {e}")))
    }
}

/// Writes `m` as a triples file the reference reads.
pub fn save(m: &CsrMatrix, path: &Path) -> Result<(), EvalError> {
    let file = std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    write_triples(m, std::io::BufWriter::new(file))
        .map_err(|e| EvalError::Data(format!("writing {}: {e}", path.display())))
}

/// MovieLens as implicit feedback: a rating is an interaction, whatever its value.
pub fn movielens(csv: &Path) -> Result<Vec<Interaction>, EvalError> {
    let file = std::fs::File::open(csv).map_err(io(format!("opening {}", csv.display())))?;
    let log = read_ratings_csv(std::io::BufReader::new(file))
        .map_err(|e| EvalError::Data(e.to_string()))?;
    Ok(log
        .interactions
        .into_iter()
        .map(|i| Interaction { weight: 1.0, ..i })
        .collect())
}

/// The Superstore order lines as customer × product purchases at their order date (days
/// since 1970, from `YYYY-MM-DD` or `M/D/YYYY`).
pub fn superstore(csv: &Path) -> Result<Vec<Interaction>, EvalError> {
    let bytes = std::fs::read(csv).map_err(io(format!("reading {}", csv.display())))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| EvalError::Data(format!("{}: {e}", csv.display())))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| EvalError::Data(format!("{}: no `{name}` column", csv.display())))
    };
    let (customer, product, date) = (
        column("Customer ID")?,
        column("Product ID")?,
        column("Order Date")?,
    );
    let mut users: HashMap<String, u32> = HashMap::new();
    let mut items: HashMap<String, u32> = HashMap::new();
    let mut out = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| EvalError::Data(format!("line {}: {e}", line + 2)))?;
        let day = days(&record[date]).ok_or_else(|| {
            EvalError::Data(format!("line {}: bad date {:?}", line + 2, &record[date]))
        })?;
        let next = users.len() as u32;
        let user = *users.entry(record[customer].to_string()).or_insert(next);
        let next = items.len() as u32;
        let item = *items.entry(record[product].to_string()).or_insert(next);
        out.push(Interaction {
            user,
            item,
            weight: 1.0,
            timestamp: day * 86_400,
        });
    }
    Ok(out)
}

/// Days since 1970-01-01 of `YYYY-MM-DD` or `M/D/YYYY`.
fn days(text: &str) -> Option<i64> {
    let (iso, separator) = if text.contains('-') {
        (true, '-')
    } else {
        (false, '/')
    };
    let mut parts = text.split(separator).map(|p| p.parse::<i64>().ok());
    let (a, b, c) = (parts.next()??, parts.next()??, parts.next()??);
    let (y, m, d) = if iso { (a, b, c) } else { (c, a, b) };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || parts.next().is_some() {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The grid behind [`movielens_params`]: every combination scored on a validation split cut
/// from the training period only (its last 20%), so the test period is never looked at.
pub fn tune(interactions: &[Interaction], threads: usize) -> Result<Vec<String>, EvalError> {
    let split = time_split(interactions, 0.8).map_err(|e| EvalError::Data(e.to_string()))?;
    let validation =
        time_split(&split.train_interactions, 0.8).map_err(|e| EvalError::Data(e.to_string()))?;
    let popular = evaluate(&Popularity::fit(&validation.train), &validation, 10)
        .map_err(|e| EvalError::Data(e.to_string()))?;
    let mut lines = vec![format!(
        "validation: train {} pairs, validation {} pairs; popularity precision {:.4} map {:.4} ndcg {:.4}",
        validation.train.nnz(),
        validation.test.nnz(),
        popular.precision,
        popular.map,
        popular.ndcg
    )];
    for factors in [32, 64] {
        for regularization in [0.05, 0.1, 0.5, 1.0] {
            for alpha in [1.0, 5.0, 10.0, 20.0, 40.0] {
                let params = AlsParams {
                    factors,
                    regularization,
                    alpha,
                    ..movielens_params(threads)
                };
                let model = recs::train(&validation.train, &params, |_| {})
                    .map_err(|e| EvalError::Data(e.to_string()))?;
                let m = evaluate(
                    &AlsRecommender {
                        model: &model,
                        threads,
                    },
                    &validation,
                    10,
                )
                .map_err(|e| EvalError::Data(e.to_string()))?;
                lines.push(format!(
                    "factors {factors:>3} reg {regularization:<4} alpha {alpha:<4} precision {:.4} map {:.4} ndcg {:.4}",
                    m.precision, m.map, m.ndcg
                ));
            }
        }
    }
    Ok(lines)
}

/// One data set's figures.
pub struct Evaluation {
    pub name: String,
    pub split: (usize, usize, usize, usize),
    pub als: Metrics,
    pub popular: Metrics,
    pub implicit: Option<serde_json::Value>,
    pub train_seconds: f64,
}

/// ALS and popularity (and the reference, if given) on `interactions`' time split.
pub fn run(
    name: &str,
    interactions: &[Interaction],
    params: &AlsParams,
    reference: Option<&Reference>,
    scratch: &Path,
) -> Result<Evaluation, EvalError> {
    let split: Split =
        time_split(interactions, 0.8).map_err(|e| EvalError::Data(format!("{name}: {e}")))?;
    let started = Instant::now();
    let model = recs::train(&split.train, params, |_| {})
        .map_err(|e| EvalError::Data(format!("{name}: training: {e}")))?;
    let train_seconds = started.elapsed().as_secs_f64();
    let als = evaluate(
        &AlsRecommender {
            model: &model,
            threads: params.threads,
        },
        &split,
        10,
    )
    .map_err(|e| EvalError::Data(e.to_string()))?;
    let popular = evaluate(&Popularity::fit(&split.train), &split, 10)
        .map_err(|e| EvalError::Data(e.to_string()))?;
    let implicit = match reference {
        Some(r) => {
            let (train, test) = (
                scratch.join(format!("{name}-train.triples")),
                scratch.join(format!("{name}-test.triples")),
            );
            save(&split.train, &train)?;
            save(&split.test, &test)?;
            Some(r.run(&train, Some(&test), params, 10, &["--skip-topk"])?)
        }
        None => None,
    };
    Ok(Evaluation {
        name: name.to_string(),
        split: (
            split.train.rows(),
            split.train.cols(),
            split.train.nnz(),
            split.test.nnz(),
        ),
        als,
        popular,
        implicit,
        train_seconds,
    })
}

impl Evaluation {
    /// The printed lines.
    pub fn report(&self) -> Vec<String> {
        let (users, items, train, test) = self.split;
        let row = |who: &str, p: f64, map: f64, ndcg: f64| {
            format!("  {who:<22} {p:>13.4} {map:>8.4} {ndcg:>8.4}")
        };
        let mut lines = vec![
            format!(
                "{}: time split at 80%: train {users} users × {items} items, {train} pairs; test {test} pairs, {} test users",
                self.name, self.als.users
            ),
            format!("  {:<22} {:>13} {:>8} {:>8}", "model", "precision@10", "MAP@10", "NDCG@10"),
            row("ALS (ours)", self.als.precision, self.als.map, self.als.ndcg),
        ];
        if let Some(j) = &self.implicit {
            let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
            lines.push(row(
                &format!("implicit {}", j["implicit_version"].as_str().unwrap_or("?")),
                f("precision"),
                f("map"),
                f("ndcg"),
            ));
        }
        lines.push(row(
            "popularity",
            self.popular.precision,
            self.popular.map,
            self.popular.ndcg,
        ));
        let gain = |a: f64, b: f64| {
            if b > 0.0 {
                (a / b - 1.0) * 100.0
            } else {
                f64::NAN
            }
        };
        lines.push(format!(
            "  ALS vs popularity: precision {:+.1}%, MAP {:+.1}%, NDCG {:+.1}%  (ALS trained in {:.2} s)",
            gain(self.als.precision, self.popular.precision),
            gain(self.als.map, self.popular.map),
            gain(self.als.ndcg, self.popular.ndcg),
            self.train_seconds
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_dates_become_days_since_the_epoch() {
        assert_eq!(days("1/1/1970"), Some(0));
        assert_eq!(days("11/8/2016"), Some(17_113));
        assert_eq!(days("2016-11-08"), Some(17_113));
        assert_eq!(
            days("3/1/2016").unwrap() - days("2/28/2016").unwrap(),
            2,
            "leap year"
        );
        for bad in [
            "",
            "13/1/2016",
            "1/32/2016",
            "1/1",
            "a/b/c",
            "1/1/2016/1",
            "2016-13-01",
        ] {
            assert_eq!(days(bad), None, "{bad}");
        }
    }
}
