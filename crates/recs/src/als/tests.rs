use super::*;
use crate::eval::{evaluate, time_split, AlsRecommender};
use crate::popular::Popularity;
use crate::synth::{generate, to_matrix, SynthConfig};

fn small_shop() -> SynthConfig {
    SynthConfig {
        users: 2_000,
        items: 400,
        mean_interactions: 25.0,
        topics: 8,
        topic_affinity: 0.9,
        seed: 11,
        ..SynthConfig::default()
    }
}

fn params(factors: usize) -> AlsParams {
    AlsParams {
        factors,
        regularization: 0.1,
        alpha: 5.0,
        iterations: 8,
        threads: 2,
        ..AlsParams::default()
    }
}

#[test]
fn loss_goes_down_over_iterations() {
    let config = small_shop();
    let matrix = to_matrix(&generate(&config), config.users, config.items).unwrap();
    let mut losses = Vec::new();
    let p = AlsParams {
        compute_loss: true,
        ..params(16)
    };
    train(&matrix, &p, |stats| losses.push(stats.loss.unwrap())).unwrap();
    assert_eq!(losses.len(), 8);
    // CG from a warm start never moves far uphill; overall the loss must fall clearly.
    for pair in losses.windows(2) {
        assert!(pair[1] <= pair[0] * 1.001, "{losses:?}");
    }
    assert!(losses[7] < losses[0] * 0.95, "{losses:?}");
}

#[test]
fn deterministic_whatever_the_thread_count() {
    let config = SynthConfig {
        users: 300,
        ..small_shop()
    };
    let matrix = to_matrix(&generate(&config), config.users, config.items).unwrap();
    let one = train(
        &matrix,
        &AlsParams {
            threads: 1,
            ..params(24)
        },
        |_| {},
    )
    .unwrap();
    let two = train(
        &matrix,
        &AlsParams {
            threads: 2,
            ..params(24)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(one, two);
}

/// Solves `(YᵀY + reg·I + Σ (c−1) y yᵀ) x = Σ c y` exactly (Cholesky, f64).
fn exact_row(y: &Factors, columns: &[u32], values: &[f32], reg: f64, alpha: f64) -> Vec<f64> {
    let f = y.factors();
    let mut a = vec![0f64; f * f];
    let mut b = vec![0f64; f];
    for item in 0..y.rows() {
        let yi = y.row(item);
        for r in 0..f {
            for c in 0..f {
                a[r * f + c] += f64::from(yi[r]) * f64::from(yi[c]);
            }
        }
    }
    for (&item, &weight) in columns.iter().zip(values) {
        let conf = 1.0 + alpha * f64::from(weight);
        let yi = y.row(item as usize);
        for r in 0..f {
            b[r] += conf * f64::from(yi[r]);
            for c in 0..f {
                a[r * f + c] += (conf - 1.0) * f64::from(yi[r]) * f64::from(yi[c]);
            }
        }
    }
    (0..f).for_each(|d| a[d * f + d] += reg);
    // Cholesky a = L Lᵀ, then two triangular solves.
    let mut l = vec![0f64; f * f];
    for i in 0..f {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * f + k] * l[j * f + k]).sum();
            l[i * f + j] = if i == j {
                (a[i * f + i] - s).sqrt()
            } else {
                (a[i * f + j] - s) / l[j * f + j]
            };
        }
    }
    let mut z = vec![0f64; f];
    for i in 0..f {
        z[i] = (b[i] - (0..i).map(|k| l[i * f + k] * z[k]).sum::<f64>()) / l[i * f + i];
    }
    let mut x = vec![0f64; f];
    for i in (0..f).rev() {
        x[i] = (z[i] - (i + 1..f).map(|k| l[k * f + i] * x[k]).sum::<f64>()) / l[i * f + i];
    }
    x
}

#[test]
fn conjugate_gradient_converges_to_the_exact_solution() {
    let (users, items, factors) = (6, 9, 5);
    let matrix = CsrMatrix::from_triples(
        users,
        items,
        [
            (0, 1, 1.0),
            (0, 4, 3.0),
            (1, 0, 1.0),
            (2, 2, 2.0),
            (2, 3, 1.0),
            (2, 8, 1.0),
            (4, 5, 1.0),
            (5, 1, 1.0),
            (5, 7, 4.0),
        ],
    )
    .unwrap();
    let values: Vec<f32> = (0..items * factors)
        .map(|i| ((i * 7 + 3) % 11) as f32 / 11.0 - 0.4)
        .collect();
    let y = Factors::from_rows(items, factors, &values).unwrap();
    let p = AlsParams {
        factors,
        regularization: 0.3,
        alpha: 2.0,
        cg_steps: 3 * factors, // enough to converge from any start
        ..AlsParams::default()
    };
    for isa in [Isa::detect(), Isa::Portable] {
        let mut x = random_factors(users, factors, 1).unwrap();
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| solve_side(isa, &matrix, &mut x, &y, &p));
        for u in 0..users {
            let (columns, weights) = matrix.row(u);
            if columns.is_empty() {
                assert!(x.row(u).iter().all(|&v| v == 0.0));
                continue;
            }
            let exact = exact_row(&y, columns, weights, 0.3, 2.0);
            for (got, want) in x.row(u).iter().zip(&exact) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-4,
                    "user {u}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn beats_popularity_on_held_out_purchases() {
    let config = small_shop();
    let split = time_split(&generate(&config), 0.8).unwrap();
    let model = train(&split.train, &params(16), |_| {}).unwrap();
    let als = evaluate(
        &AlsRecommender {
            model: &model,
            threads: 2,
        },
        &split,
        10,
    )
    .unwrap();
    let popular = evaluate(&Popularity::fit(&split.train), &split, 10).unwrap();
    assert!(als.users > 1_000);
    assert!(
        als.precision > popular.precision * 1.2,
        "{als:?} vs {popular:?}"
    );
    assert!(als.map > popular.map, "{als:?} vs {popular:?}");
    assert!(als.ndcg > popular.ndcg, "{als:?} vs {popular:?}");
}

#[test]
fn rejects_bad_parameters() {
    let m = CsrMatrix::empty(2, 2);
    let bad = |p: AlsParams| train(&m, &p, |_| {}).is_err();
    assert!(bad(AlsParams {
        factors: 0,
        ..AlsParams::default()
    }));
    assert!(bad(AlsParams {
        factors: 300,
        ..AlsParams::default()
    }));
    assert!(bad(AlsParams {
        regularization: 0.0,
        ..AlsParams::default()
    }));
    assert!(bad(AlsParams {
        alpha: f32::NAN,
        ..AlsParams::default()
    }));
}
