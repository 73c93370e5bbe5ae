from setuptools import find_packages, setup

TOOLS = ["matplotlib>=3.7"]  # the chaos timeline and the benchmark CDF plots

setup(
    name="bazar",
    version="0.1.0",
    description="A replicated online bookstore: catalog and order Raft groups behind a caching frontend.",
    python_requires=">=3.11",
    packages=find_packages(include=[f"{top}{sub}" for top in ("node", "frontend", "consensus", "cluster", "web",
                                                                "chaos", "bench") for sub in ("", ".*")]),
    package_data={"node": ["books.json"], "frontend": ["templates/*.html", "static/*"]},
    install_requires=[
        "pysyncobj==0.3.17",   # pinned exactly: consensus/ corrects its private functions (consensus/patching.py)
        "cryptography>=41",    # PySyncObj's encrypted sessions (the cluster secret)
        "flask>=3.0",
        "requests>=2.31",
        "lru-dict>=1.3",
        "waitress>=3.0",       # a production WSGI server: threads in one process
        "PyYAML>=6.0",         # cluster.yaml
    ],
    extras_require={
        # What replicas never need: `bazar chaos` and `bazar bench` draw their plots with it
        # (imported only when they do), so images and servers stay without it.
        "tools": TOOLS,
        "test": TOOLS + ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3",
                         "selenium>=4.20"],  # drives Debian's chromium + chromedriver; downloads nothing
    },
    entry_points={"console_scripts": ["bazar=cluster.cli:main"]},
)
