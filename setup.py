import os

from setuptools import find_packages, setup

# One installed name: each top-level folder of the repository is installed as bazar.<folder>
# (node/ is bazar.node), so that nothing generic (web, node, cluster...) lands in site-packages.
FOLDERS = ("node", "frontend", "consensus", "cluster", "web", "local", "chaos", "bench")
PACKAGES = ["bazar"] + [f"bazar.{name}" for name in find_packages(
    include=[f"{folder}{sub}" for folder in FOLDERS for sub in ("", ".*")])]
if not os.path.isdir("bazar"):  # setup.py alone (the Dockerfile's dependency layer): dependencies only
    PACKAGES = []

TOOLS = ["matplotlib>=3.7"]  # the chaos timeline and the benchmark CDF plots

setup(
    name="bazar",
    version="0.1.0",
    description="A replicated online bookstore: catalog and order Raft groups behind a caching frontend.",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_dir={"bazar": "bazar", **{f"bazar.{folder}": folder for folder in FOLDERS}},
    package_data={"bazar.node": ["books.json"], "bazar.frontend": ["templates/*.html", "static/*"]},
    install_requires=[
        "pysyncobj==0.3.17",   # pinned exactly: consensus/ corrects its private functions (consensus/patching.py)
        "cryptography>=41",    # PySyncObj's encrypted sessions (the cluster secret)
        "flask>=3.0",
        "requests>=2.31",
        "lru-dict>=1.3",
        "waitress>=3.0",       # a production WSGI server: threads in one process
        "PyYAML>=6.0",         # cluster.yaml
        "prometheus-client>=0.17",  # GET /metrics on every process (web/metrics.py)
    ],
    extras_require={
        # What replicas never need: `bazar chaos` and `bazar bench` draw their plots with it
        # (imported only when they do), so images and servers stay without it.
        "tools": TOOLS,
        "test": TOOLS + ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3", "pytest-xdist>=3.5",
                         "selenium>=4.20"],  # drives Debian's chromium + chromedriver; downloads nothing
    },
    entry_points={"console_scripts": ["bazar=bazar.cli:main"]},
)
