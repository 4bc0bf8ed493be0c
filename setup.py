"""Packaging for killreport_assets.

Dagster's packages are pinned as one matched set: dagster-postgres 0.29.27 requires
dagster==1.13.27 exactly, and an unpinned install silently resolves an ancient dagster-postgres.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

DAGSTER = "1.13.27"
DAGSTER_LIBS = "0.29.27"
# The version is written once, in the package (User-Agent, `killreport --version`).
VERSION = re.search(r'__version__ = "([^"]+)"', (Path(__file__).parent / "killreport_assets" / "version.py").read_text())[1]

setup(
    name="killreport_assets",
    version=VERSION,
    description="Nightly refresh of EVE Online alliances and corporations from ESI, as a Dagster asset graph.",
    packages=find_packages(exclude=["killreport_assets_tests", "killreport_assets_tests.*"]),
    package_data={"killreport_assets": ["storage/migrations/*.py", "storage/migrations/versions/*.py"]},
    include_package_data=True,
    python_requires=">=3.11,<3.15",  # as dagster 1.13 (which allows 3.10-3.14); CI runs 3.11
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        f"dagster-graphql=={DAGSTER}",
        f"dagster-postgres=={DAGSTER_LIBS}",
        "pika>=1.3,<2",
        "httpx>=0.27,<1",
        "pandas>=2.1,<3",
        # pandas draws the asset pages' charts with it (DataFrame.plot), inlined as PNG in Markdown.
        "matplotlib>=3.8,<4",
        "pydantic>=2.6,<3",
        "SQLAlchemy>=2.0,<2.2",
        "alembic>=1.13,<2",
        "psycopg2-binary>=2.9,<3",
        "starlette>=0.37",
        "uvicorn>=0.29",
    ],
    extras_require={
        "dev": [
            "pytest>=8,<10",
            "pytest-timeout>=2.3",
            "jsonschema>=4.21",
            "ruff>=0.6",
            # Drives Debian's Chromium (/usr/bin/chromium) in the UI test; no browser download needed.
            "playwright>=1.40",
            # The dependency audit of .ci/run (.ci/audit): PyPA's own checker of PyPI advisories.
            "pip-audit>=2.7",
        ],
    },
    entry_points={"console_scripts": ["killreport=killreport_assets.cli:main"]},
)
