# One image for every Bazar process; the command picks the role:
#   docker build -t bazar .
#   docker run --network host -v $PWD/cluster.yaml:/bazar/cluster.yaml bazar node catalog1
#   docker run --network host ... bazar frontend
#   docker run --network host bazar up            (a whole local cluster in one container)
# Raft addresses off loopback need the cluster secret: -e BAZAR_SECRET=...
FROM python:3.11-slim

WORKDIR /bazar
COPY setup.py cluster.yaml ./
COPY consensus consensus
COPY cluster cluster
COPY node node
COPY frontend frontend
COPY web web
COPY chaos chaos
COPY bench bench
RUN pip install --no-cache-dir . && useradd --system --home /bazar bazar && mkdir -p var && chown bazar var
USER bazar

# Data (journal + snapshot per replica) lives under var/ by default: mount a volume there.
VOLUME ["/bazar/var"]
EXPOSE 8000
ENTRYPOINT ["bazar", "--config", "/bazar/cluster.yaml"]
CMD ["up"]
