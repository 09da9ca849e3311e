# One image, both processes: `modelmon up` runs the capture proxy and the analyzer, supervised.
#   docker build -t modelmon .
#   docker run -p 8080:8080 -v modelmon-data:/var/lib/modelmon \
#     -v "$PWD/modelmon.yaml:/etc/modelmon/modelmon.yaml:ro" -v "$PWD/baseline:/etc/modelmon/baseline:ro" modelmon
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY modelmon ./modelmon
COPY capture_proxy ./capture_proxy
COPY analyzer ./analyzer
RUN pip install . && rm -rf /src

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/modelmon --shell /usr/sbin/nologin modelmon \
    && mkdir -p /var/lib/modelmon /etc/modelmon/baseline \
    && chown modelmon:modelmon /var/lib/modelmon
COPY configs/docker.yaml /etc/modelmon/modelmon.yaml

USER modelmon
WORKDIR /var/lib/modelmon
VOLUME ["/var/lib/modelmon"]
EXPOSE 8080 8090

# The proxy answers this itself, so the probe works while the analyzer restarts (no curl in slim).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/monitor/proxy/health', timeout=4)"]

ENTRYPOINT ["modelmon"]
CMD ["up", "--config", "/etc/modelmon/modelmon.yaml"]
