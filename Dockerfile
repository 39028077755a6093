# dnspol in a container: python:3.11-slim, a non-root user, DNS on 5353 inside the
# container (publish it as 53: `-p 53:5353/udp -p 53:5353/tcp`, as docker-compose.yml
# does), so no capability is needed. Metrics, /health and /ready on 9153.
#
#   docker build -t dnspol .
#   docker run -v "$PWD/policies:/etc/dnspol:ro" -p 53:5353/udp -p 53:5353/tcp -p 9153:9153 dnspol
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY constraints ./constraints
COPY dnspol ./dnspol
# the versions the test suite passed with (scripts/test.sh tests these and the floors)
RUN pip install -c constraints/latest.txt . && rm -rf /src

RUN useradd --system --uid 5353 --home-dir /nonexistent --shell /usr/sbin/nologin dnspol
COPY --chown=root:root policies /etc/dnspol
USER dnspol
WORKDIR /etc/dnspol

EXPOSE 5353/udp 5353/tcp 9153/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9153/ready', timeout=2)"]

# One worker process per usable core (--workers N to choose); SIGTERM drains and exits 0.
ENTRYPOINT ["dnspol"]
CMD ["serve", "--config", "/etc/dnspol/dnspol.yaml", "--listen", "0.0.0.0:5353", \
     "--metrics-listen", "0.0.0.0:9153"]
