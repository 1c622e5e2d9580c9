"""The reference crates/recs is measured against: `implicit`'s CPU ALS on the same matrix.

Reads the triples file crates/recs writes (`recs::dataset::write_triples`: the 8 bytes
RECSTRP1, rows/cols/nnz as little-endian u64, then nnz u32 rows, nnz u32 columns, nnz f32
values), trains `implicit.cpu.als.AlternatingLeastSquares` with the conjugate-gradient solver
and the given hyperparameters, and prints one JSON object on stdout:

  seconds_per_iteration (mean), iteration_seconds (each), topk_seconds (recommend for all
  users at once, already-bought items filtered) and, with --test, precision/map/ndcg at
  --eval-k from implicit.evaluation.ranking_metrics_at_k.

Confidence: crates/recs uses c = 1 + alpha*r (Hu, Koren & Volinsky); implicit uses c = alpha*r.
So the reference passes 1 + alpha*r as the data with implicit's alpha = 1: the same model,
the same arithmetic per iteration. BLAS is limited to one thread (threadpoolctl), as implicit
itself recommends, so `--threads` is the whole budget on both sides.

Run with the venv scripts/recs-env.sh prints, e.g.:
  "$(scripts/recs-env.sh | tail -n1)" tests/python/recs_reference.py --train m.bin --threads 2
"""

import argparse
import json
import sys
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

MAGIC = b"RECSTRP1"


def read_triples(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != MAGIC:
        sys.exit(f"{path}: not a triples file")
    rows, cols, nnz = np.frombuffer(data, dtype="<u8", count=3, offset=8)
    rows, cols, nnz = int(rows), int(cols), int(nnz)
    base = 32
    r = np.frombuffer(data, dtype="<u4", count=nnz, offset=base)
    c = np.frombuffer(data, dtype="<u4", count=nnz, offset=base + 4 * nnz)
    v = np.frombuffer(data, dtype="<f4", count=nnz, offset=base + 8 * nnz)
    matrix = sp.coo_matrix((v, (r, c)), shape=(rows, cols), dtype=np.float32).tocsr()
    matrix.sum_duplicates()
    return matrix


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--regularization", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--cg-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=20, help="list length for the top-K timing")
    parser.add_argument("--eval-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-topk", action="store_true")
    args = parser.parse_args()

    import implicit
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k

    train = read_triples(args.train)
    confidence = train.copy()
    confidence.data = 1.0 + args.alpha * np.abs(confidence.data)

    out = {
        "implicit_version": implicit.__version__,
        "users": train.shape[0],
        "items": train.shape[1],
        "nnz": int(train.nnz),
        "factors": args.factors,
        "regularization": args.regularization,
        "alpha": args.alpha,
        "iterations": args.iterations,
        "cg_steps": args.cg_steps,
        "threads": args.threads,
    }
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=args.factors,
            regularization=args.regularization,
            alpha=1.0,
            iterations=args.iterations,
            use_cg=True,
            use_native=True,
            num_threads=args.threads,
            random_state=args.seed,
        )
        model.cg_steps = args.cg_steps
        times = []
        started = time.perf_counter()
        model.fit(confidence, show_progress=False, callback=lambda it, t, loss: times.append(t))
        out["fit_seconds"] = time.perf_counter() - started
        out["iteration_seconds"] = times
        out["seconds_per_iteration"] = sum(times) / len(times)

        if not args.skip_topk:
            users = np.arange(train.shape[0], dtype=np.int32)
            started = time.perf_counter()
            ids, _ = model.recommend(users, train, N=args.k, filter_already_liked_items=True)
            out["topk_seconds"] = time.perf_counter() - started
            out["topk_k"] = args.k
            out["topk_first_user"] = ids[0].tolist()

        if args.test:
            test = read_triples(args.test)
            metrics = ranking_metrics_at_k(
                model, train, test, K=args.eval_k, show_progress=False, num_threads=args.threads
            )
            out["eval_k"] = args.eval_k
            out.update({name: float(metrics[name]) for name in ("precision", "map", "ndcg")})
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
