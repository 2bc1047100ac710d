# genrelay: a slim, non-root image that runs `genrelay run` with its database on a volume.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
COPY sandbox ./sandbox
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/genrelay.db \
    DATA_DIR=/data/files \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080
RUN useradd --create-home --uid 10001 genrelay && mkdir -p /data/files && chown -R genrelay /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER genrelay
WORKDIR /home/genrelay
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
ENTRYPOINT ["genrelay"]
CMD ["run"]
