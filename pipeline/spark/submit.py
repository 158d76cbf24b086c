"""Entry point for ``spark-submit``: the ``infergate-billing`` CLI inside a Spark driver.

spark-submit takes a Python file, not a console script, so this file hands its arguments to
the CLI; ``--engine spark`` then finds the session spark-submit configured (master, executors,
memory) and pins only the SQL settings billing depends on. Run it in client deploy mode: the
DuckDB database is a file on the driver's machine. The rating is pure Spark SQL (no Python
UDFs), so executors need no Python packages. See docs/spark.md.

    spark-submit --master spark://head:7077 --deploy-mode client \\
        "$(python -c 'import pipeline.spark.submit as s; print(s.__file__)')" \\
        --db /srv/billing/infergate.duckdb rate --period 2026-11 --engine spark
"""

from __future__ import annotations

from pipeline.cli import main

if __name__ == "__main__":
    main()
