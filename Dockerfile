# The speedlayer image: every role (`shard`, `coordinator`, `replay`, `query` ...) is
# `node bin/speedlayer.js <role>`, which loads the TypeScript sources through tsx.
#   docker build -t speedlayer:0.1.0 .
# deploy/k8s/ refers to this image as speedlayer:0.1.0.

# Dependencies, with the native builds (roaring compiles from source; classic-level
# ships prebuilt binaries).
FROM node:20-bookworm-slim AS deps
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
  && node -e "require('roaring'); require('classic-level')"

FROM node:20-bookworm-slim
# etcdctl, for operators inspecting the cluster's keys from inside a pod.
RUN apt-get update \
  && apt-get install -y --no-install-recommends etcd-client \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY proto ./proto
COPY datasets/elastic-apache-logs ./datasets/elastic-apache-logs
# The `node` user of the base image (uid 1000), as the manifests' securityContext expects.
USER node
ENTRYPOINT ["node", "bin/speedlayer.js"]
CMD ["--help"]
