# syntax=docker/dockerfile:1
# Multi-stage: compile with the dev toolchain, ship only production dependencies and dist/.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.client.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=4000 \
    HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The node image's unprivileged user; nothing in /app is writable by it.
USER node
EXPOSE 4000
# Liveness only (/healthz): platforms that replace unhealthy containers (Swarm, several PaaS) would
# otherwise replace every one of them during an ACS or Redis outage, which cannot help.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||4000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form, no shell or npm in between: node is PID 1 and receives SIGTERM itself (docs/operations.md,
# "Graceful stop"). The compose file runs the standalone emulator from this same image.
# --max-semi-space-size=32 as in `npm run start:prod`: a young generation big enough that in-flight
# requests die young instead of being promoted (README, Performance).
CMD ["node", "--max-semi-space-size=32", "dist/src/main.js"]
