# syntax=docker/dockerfile:1
# The pg-replicate replicator (`pg-replicate run`) as a container. From the repository root:
#   docker build -t pg-replicate .
#   docker run --rm -v "$PWD/replicator.yaml:/etc/pg-replicate/replicator.yaml:ro" -v replica:/data \
#     -e PG_REPLICATE_SOURCE_PASSWORD_FILE=/run/secrets/pg_password -p 9898:9898 \
#     pg-replicate --config /etc/pg-replicate/replicator.yaml
# Three stages: build (compile TypeScript), prod-deps (runtime dependencies only), runtime (what
# ships: Node, production node_modules, compiled JavaScript; no compiler, no tests; non-root).
ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
# Manifests first, so the dependency layer stays cached until they change. Every workspace's
# package.json matches the lockfile; only the two shipped packages (and the root's TypeScript) are
# installed.
COPY package.json package-lock.json tsconfig.base.json ./
COPY packages/pg-replicate/package.json packages/pg-replicate/
COPY packages/duckdb/package.json packages/duckdb/
COPY packages/bigquery/package.json packages/bigquery/
COPY packages/testkit/package.json packages/testkit/
COPY packages/tools/package.json packages/tools/
RUN npm ci --no-audit --no-fund --ignore-scripts --include-workspace-root \
      --workspace pg-replicate --workspace @pg-replicate/duckdb
COPY packages/pg-replicate/tsconfig.json packages/pg-replicate/
COPY packages/pg-replicate/bin packages/pg-replicate/bin/
COPY packages/pg-replicate/src packages/pg-replicate/src/
COPY packages/duckdb/tsconfig.json packages/duckdb/
COPY packages/duckdb/src packages/duckdb/src/
RUN npx tsc -b packages/pg-replicate packages/duckdb

FROM build AS prod-deps
RUN npm ci --no-audit --no-fund --ignore-scripts --omit=dev \
      --workspace pg-replicate --workspace @pg-replicate/duckdb

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# Two malloc arenas instead of glibc's 8 per core: the threads DuckDB runs on (libuv's pool, its
# own) each kept an arena's freed memory — 30–35 MB more at peak in npm run bench:huge-tx.
ENV NODE_ENV=production MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules/
COPY --from=build /app/package.json ./
COPY --from=build /app/packages/pg-replicate/package.json packages/pg-replicate/
COPY --from=build /app/packages/pg-replicate/bin packages/pg-replicate/bin/
COPY --from=build /app/packages/pg-replicate/dist packages/pg-replicate/dist/
COPY --from=build /app/packages/duckdb/package.json packages/duckdb/
COPY --from=build /app/packages/duckdb/dist packages/duckdb/dist/
# /data holds the DuckDB file or the stdout sink's state file: mount a volume there.
RUN mkdir -p /data /etc/pg-replicate && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 9898
# Liveness only; use /readyz (streaming or backfilling) for readiness probes and load balancers.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PG_REPLICATE_HTTP_PORT||9898)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM stops gracefully within shutdown.timeoutMs (30 s by default): give `docker stop -t` more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/packages/pg-replicate/bin/pg-replicate.js", "run"]
