# One image for the five after-sales workers: each compose service / k8s
# Deployment runs its own binary (`as-intake`, `as-review`, ...) from
# /usr/local/bin. Built from Debian bookworm packages, as on the dev machines.

FROM debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config ca-certificates \
      librdkafka-dev libpq-dev libprotobuf-c-dev protobuf-c-compiler libuv1-dev uuid-dev \
      libcurl4-openssl-dev \
      protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The context has no .git (.dockerignore): the commit comes in as an
# argument, e.g. `docker build --build-arg AS_COMMIT=$(git rev-parse --short=12 HEAD) .`.
# TEST_HOOKS=0: the release build, with no AS_FAILPOINT crash points.
ARG AS_COMMIT=unknown
RUN make build TEST_HOOKS=0 AS_COMMIT=$AS_COMMIT

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
# Runtime libraries only, plus curl for the container healthcheck.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 libpq5 libprotobuf-c1 libuv1 libuuid1 libcurl4 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin aftersales
COPY --from=build /src/build/bin/ /usr/local/bin/
USER 10001
EXPOSE 8080
# No default worker: the service picks its binary, e.g. `command: ["as-intake"]`.
CMD ["sh", "-c", "echo 'choose a worker: as-intake, as-review, as-inspection, as-logistics, as-notification' >&2; exit 64"]
