"""``make demo``: the whole story on the embedded penguins data, offline.

1. data: the penguins scaled to ``--rows`` rows of Parquet (jobs.datagen);
2. train the default pipeline on the real birds and save it as a bundle in every format;
3. parity of every format and engine against the original on the held-out birds;
4. score the Parquet with the Spark job (local[*]), print its summary and the first rows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from jobs._cli import Parser, guarded

__all__ = ["main"]


def _step(text: str) -> None:
    from formats.render import console

    console().rule(f"[bold]{text}")


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_main, argv)


def _main(argv: list[str]) -> int:
    parser = Parser(prog="python -m jobs.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of data to score")
    parser.add_argument("--workdir", default=".", help="where data/, bundles/ and out/ go")
    parser.add_argument("--model", default="rf", help="rf, logreg, hgb, xgboost or lightgbm")
    parser.add_argument("--no-spark", action="store_true", help="stop after the parity table")
    args = parser.parse_args(argv)
    root = Path(args.workdir)
    data, bundle_dir, output = root / "data/penguins", root / "bundles/penguins", root / "out/scores"

    def story() -> None:
        from formats import parity, save
        from formats.render import console, parity_table, print_saved
        from jobs.datagen import generate
        from jobs.export import split, train

        _step(f"1. data: {args.rows:,} rows of penguins Parquet in {data}")
        start = time.perf_counter()
        files = generate(args.rows, data)
        console().print(f"{len(files)} file(s) in {time.perf_counter() - start:.1f} s")

        _step(f"2. train the {args.model} pipeline and save it in every format: {bundle_dir}")
        pipeline, x_train = train(args.model)
        bundle = save(pipeline, bundle_dir, sample=x_train, name="penguins", overwrite=True)
        print_saved(bundle)

        _step("3. parity of every format and engine on the held-out birds")
        _x_train, x_test, _y_train, _y_test = split()
        report = parity(bundle, x_test)
        console().print(parity_table(report))

        if args.no_spark:
            return
        _step(f"4. score {data} with Spark: spark-submit jobs/score.py")
        from jobs.score import main as score_main
        from jobs.scoring.settings import DEFAULT_CONF

        # the repository's conf/local.toml wherever the demo is run from
        code = score_main(
            ["--conf", str(DEFAULT_CONF), "--bundle", str(bundle_dir), "--input", str(data),
             "--output", str(output), "--set", "output.mode=overwrite"]
        )  # fmt: skip
        if code:
            raise SystemExit(code)
        import pandas as pd

        console().print(f"first rows of {output}:")
        first = pd.read_parquet(output).sort_values("row_id").head(5)
        console().print(first.to_string(index=False))  # row ids, not pandas' file offsets

    story()
    return 0


if __name__ == "__main__":
    sys.exit(main())
