# The ioc image: one Python distribution, every part; docker-compose.yml picks the part
# with the command (ioc ingest | ioc analytics | ioc api | ioc simulate | ioc db migrate).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ioc
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY ingest ./ingest
COPY analytics ./analytics
COPY api ./api
COPY simulators ./simulators
COPY ioc ./ioc
RUN /opt/ioc/bin/pip install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/ioc/bin:$PATH IOC_LOG_FORMAT=json
COPY --from=build /opt/ioc /opt/ioc
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ioc
USER ioc
WORKDIR /tmp
EXPOSE 8000 9101 9102
CMD ["ioc", "--help"]
