# image-edit-server: API (ROLE=api), worker (ROLE=worker) or both (ROLE=all, the default).
# Run it behind an init (docker run --init, compose `init: true`): the server is the command itself
# (no npm, no shell), so SIGTERM reaches it and it drains (docs/deploy.md, "Signals").
FROM node:20-bookworm-slim

# MALLOC_ARENA_MAX: glibc would otherwise give libvips' decoder threads an arena each, which keep
# freed image memory, and RSS stays high long after a burst of large inputs (docs/security.md).
# TMPDIR: tsx compiles on the fly and caches there (writable by the unprivileged user).
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=4000 \
    MALLOC_ARENA_MAX=2 \
    TMPDIR=/tmp

WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# Runtime dependencies only (tsx and esbuild are runtime dependencies: the server runs from .ts).
# onnxruntime-node's CUDA download stays skipped (.npmrc); sharp and onnxruntime-node ship
# prebuilt binaries for linux-x64 glibc.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --chown=root:root src ./src
COPY --chown=root:root models ./models
COPY --chown=root:root ui ./ui
COPY --chown=root:root tsconfig.json ./

# Unprivileged, read-only application files (the image's `node` user, uid 1000).
USER node
EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||4000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "--import", "tsx", "src/server/main.ts"]
