# The managed plugin's root filesystem. plugin/build.sh builds the wheels first (so that this
# build needs no network) and passes BASE: any image with Python 3.11+ and its venv module.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

COPY plugin/build/wheels /tmp/wheels
RUN python3 -m venv /opt/ipledger \
 && /opt/ipledger/bin/pip install --no-index --no-cache-dir --find-links /tmp/wheels 'ipledger[postgres]' \
 && rm -rf /tmp/wheels \
 && mkdir -p /run/docker/plugins /var/lib/ipledger

ENV PATH=/opt/ipledger/bin:$PATH
ENTRYPOINT ["/opt/ipledger/bin/ipledger", "serve"]
