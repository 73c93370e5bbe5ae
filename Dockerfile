# One image for every Bazar process; the command picks the role. docker-compose.yml runs
# a 3+3+1 cluster from it; on one machine of several:
#   docker build -t bazar .
#   docker run -d --network host -v $PWD/cluster.yaml:/etc/bazar/cluster.yaml:ro \
#     -v bazar-catalog1:/var/lib/bazar -v $PWD/secret:/etc/bazar/secret:ro \
#     -e BAZAR_SECRET_FILE=/etc/bazar/secret ... bazar node catalog1
# Bazar runs as uid 10001 (below): a mounted secret file must be readable by that uid.
# Without a registry, build on a base made from Debian's archive (deploy/base-image.sh):
#   docker build --network host --build-arg BASE_IMAGE=bazar-base:bookworm -t bazar .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# tini is PID 1: it hands SIGTERM and SIGINT on to Bazar and reaps orphans. The kernel gives
# PID 1 no default signal actions, so without it a signal Bazar did not handle would be lost.
RUN command -v tini >/dev/null || { apt-get update && apt-get install -y --no-install-recommends tini \
      && rm -rf /var/lib/apt/lists/*; }
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/bazar --create-home bazar

# A venv of its own: the same steps then work on python:3.11-slim and on Debian's python3,
# whose system packages pip refuses to change (PEP 668).
# PATH is spelled out: an imported base image (deploy/base-image.sh) defines none.
ENV VIRTUAL_ENV=/opt/bazar PATH=/opt/bazar/bin:/usr/local/bin:/usr/bin:/bin PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 BAZAR_CONFIG=/etc/bazar/cluster.yaml
RUN python3 -m venv "$VIRTUAL_ENV"

# The dependencies, in a layer that is rebuilt only when setup.py changes: install the
# project as setup.py alone describes it (no code yet), keep what it requires, drop it.
COPY setup.py /src/
RUN pip install /src && pip uninstall --yes bazar

# How the image runs, declared before the code so that a code change rebuilds only the
# last two layers. Each replica's journal and snapshot live in /var/lib/bazar/<node id>.
WORKDIR /var/lib/bazar
VOLUME ["/var/lib/bazar"]
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=10s --start-period=30s --retries=3 CMD ["bazar", "health"]
ENTRYPOINT ["tini", "--", "bazar"]
CMD ["--help"]

# The code (.dockerignore keeps out what is not shipped), without the tools extra; the
# compose topology becomes the default cluster file (mount another over it elsewhere).
COPY . /src
RUN pip install --no-deps /src \
    && install -D --mode 644 /src/deploy/cluster.compose.yaml /etc/bazar/cluster.yaml \
    && bazar --help >/dev/null
USER bazar
