# syntax=docker/dockerfile:1
# Multi-stage: compile with the dev toolchain, ship only production dependencies and dist/.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# npm workspaces: the gateway at the root, the client's manifest and the emulator under packages/.
COPY package.json package-lock.json ./
COPY packages/client/package.json ./packages/client/
COPY packages/emulator/package.json ./packages/emulator/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
# The gateway needs the client package's manifest (JSON, no build) and the emulator's build.
COPY packages/client/persisted-documents.json ./packages/client/
COPY packages/emulator/tsconfig.json ./packages/emulator/
COPY packages/emulator/src ./packages/emulator/src
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=4000 \
    HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/client/package.json packages/client/persisted-documents.json ./packages/client/
COPY packages/emulator/package.json ./packages/emulator/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/packages/emulator/dist ./packages/emulator/dist
# The development explorer (src/server/explorer.ts) serves four files of graphiql, react and
# react-dom, which are devDependencies: only those files and their package.json are carried over,
# so `docker compose up` (NODE_ENV=development) has an explorer that works offline without
# installing the packages and theirs (over 25 MB). Production serves no explorer.
COPY --from=build /app/node_modules/react/package.json ./node_modules/react/
COPY --from=build /app/node_modules/react/umd/react.production.min.js ./node_modules/react/umd/
COPY --from=build /app/node_modules/react-dom/package.json ./node_modules/react-dom/
COPY --from=build /app/node_modules/react-dom/umd/react-dom.production.min.js ./node_modules/react-dom/umd/
COPY --from=build /app/node_modules/graphiql/package.json /app/node_modules/graphiql/graphiql.min.js /app/node_modules/graphiql/graphiql.min.css ./node_modules/graphiql/
# The embedded identity directory's folder (DIRECTORY_DATA_DIR, without DATABASE_URL): the one
# path in /app the unprivileged user may write. Mount a volume there to keep it across containers.
RUN mkdir -p /app/.data/directory && chown -R node:node /app/.data
# The node image's unprivileged user; nothing else in /app is writable by it.
USER node
EXPOSE 4000
# Liveness only (/healthz): platforms that replace unhealthy containers (Swarm, several PaaS) would
# otherwise replace every one of them during an ACS or Redis outage, which cannot help.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||4000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form, no shell or npm in between: node is PID 1 and receives SIGTERM itself (docs/operations.md,
# "Graceful stop"). The compose file runs the standalone emulator from this same image.
# --max-semi-space-size=32 as in `npm run start:prod`: a young generation big enough that in-flight
# requests die young instead of being promoted (docs/performance.md).
CMD ["node", "--max-semi-space-size=32", "dist/src/main.js"]
