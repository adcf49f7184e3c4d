# syntax=docker/dockerfile:1
#
# outbox-relay container image.
#
#   docker build -t outbox-relay .
#   docker run --rm -p 9464:9464 \
#     -e RELAY_DATABASE_URL=postgres://user:pass@db:5432/app \
#     -e RELAY_REDIS_URL=redis://redis:6379 \
#     outbox-relay
#
# The default command migrates the database (sql/*.sql) and then relays until SIGTERM.
# `docker run ... outbox-relay node dist/main.js migrate` only migrates.
#
# examples/ is copied too (a few KB) so that docker-compose.yml can run the demo producer from this
# same image: it needs the `postgres` package, which is a runtime dependency anyway.

ARG NODE_IMAGE=node:24-alpine

# ---- build: all dependencies, compile TypeScript to dist/ -------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the compiler needs no install scripts, and it skips the optional native builds of
# test-only dependencies (testcontainers -> ssh2/cpu-features), which would need python and make.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only --------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime -----------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    RELAY_HTTP_HOST=0.0.0.0 \
    RELAY_HTTP_PORT=9464
WORKDIR /app
# Files stay owned by root: the `node` user can read and run them but not change them.
# package.json is needed at run time ("type": "module"). dist/ reads ../sql/*.sql (migrations) and
# ../lua/publish.lua (the Redis publish script), so both sit next to dist/.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY sql ./sql
COPY lua ./lua
COPY examples ./examples
USER node
EXPOSE 9464
# Liveness through node's own fetch (no curl/wget in the image). Uses RELAY_HTTP_PORT if overridden.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.RELAY_HTTP_PORT || '9464') + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The relay shuts down cleanly on SIGTERM (it installs its own handler, which matters as PID 1, where
# signals have no default action). `docker run --init` / compose `init: true` also reaps zombies.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
