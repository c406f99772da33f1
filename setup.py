from setuptools import find_packages, setup

setup(
    name="medallion_assets",
    version="0.1.0",
    description=(
        "Monthly bronze/silver/gold e-commerce event assets: PySpark computes, Delta Lake stores, "
        "Dagster orchestrates."
    ),
    packages=find_packages(exclude=["medallion_assets_tests", "medallion_assets_tests.*"]),
    python_requires=">=3.10,<3.14",
    install_requires=[
        "dagster>=1.13,<1.14",
        "dagster-webserver>=1.13,<1.14",
        # `dg check defs`, `dg list defs`, `dg launch`, `dg dev` (the project is a dg project).
        "dagster-dg-cli>=1.13,<1.14",
        "dagster-pyspark>=0.29,<0.30",
        "dagster-deltalake>=0.29,<0.30",
        "deltalake>=1.6,<2",
        # The connect extra is the Spark Connect client (grpcio, protobuf, zstandard): `make dev`
        # and MEDALLION_SPARK_REMOTE use it; the classic local session does not need it.
        "pyspark[connect]>=4.0,<4.4",
        "pyarrow>=18",
        "polars>=1.0",
        "numpy>=1.26",
        # PySpark 4.3 warns on pandas 3; pandas comes in through PySpark's optional paths.
        "pandas>=2.2,<3",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            # `make test` runs the suite on several workers (the real-system tests mostly wait).
            "pytest-xdist>=3.6",
            "selenium>=4.20",
            "duckdb>=1.1",
            "psutil>=5.9",
            # A real SMTP server for the e-mail alert tests.
            "aiosmtpd>=1.4",
            # `make lint`; pinned to a minor release so new rules arrive by choice.
            "ruff>=0.17,<0.18",
        ],
        # A team deployment keeps Dagster's instance in PostgreSQL (deploy/dagster.yaml).
        # dagster-postgres brings psycopg2; SQLAlchemy 2.1 would map a plain `postgresql://` URL to
        # psycopg 3 instead (not installed, not what dagster-postgres is tested with): stay on 2.0.
        "postgres": [
            "dagster-postgres>=0.29,<0.30",
            "sqlalchemy>=2.0,<2.1",
        ],
    },
    entry_points={
        "console_scripts": [
            "medallion-sample-data=medallion_assets.tools.sample_data:main",
            "medallion-top-brands=medallion_assets.tools.top_brands:main",
        ],
    },
)
