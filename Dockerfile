# The wearmon image: the CLI (stream processor, monitor, replay, trainer) and the MLflow
# server of the same version. Slim, runs as a non-root user; the dependency layer is built
# from pyproject.toml + constraints.txt alone, so code changes do not reinstall it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1

RUN groupadd --system --gid 10001 wearmon \
 && useradd --system --uid 10001 --gid wearmon --home-dir /home/wearmon --create-home wearmon \
 && mkdir -p /data /mlflow && chown wearmon:wearmon /data /mlflow

WORKDIR /app

# 1. dependencies only (cached while pyproject.toml and constraints.txt do not change)
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt -c constraints.txt

# 2. the code
COPY README.md ./
COPY wearmon ./wearmon
COPY producers ./producers
COPY stream_processor ./stream_processor
COPY trainer ./trainer
COPY monitoring ./monitoring
COPY deploy ./deploy
RUN pip install --no-deps . && python -c "import wearmon.cli.main"

USER wearmon
ENV WEARMON_DATA_DIR=/data \
    WEARMON_DEPLOY_DIR=/app/deploy \
    HOME=/home/wearmon
EXPOSE 8001 8002 8003
ENTRYPOINT ["wearmon"]
CMD ["--help"]
