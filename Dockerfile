# One image, both binaries: /usr/local/bin/collector and /usr/local/bin/shipper.
# The Container App's `command` picks which one runs (infra/modules/apps.bicep).
#
# Build in Azure without a local Docker engine:
#   az acr build --registry <acr> --image okta-sentinel:<tag> .
# See infra/README.md.

ARG RUST_VERSION=1.90

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# aws-lc-rs (TLS) builds C code; cmake/perl cover its fallback build paths. ISA-L's igzip
# (common/src/gzip.rs) is built from source with autotools, libtool and nasm, and linked
# statically: the runtime image needs nothing more.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake perl pkg-config \
    nasm autoconf automake libtool make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins -p collector -p shipper \
 && install -D -m 0755 target/release/collector /out/collector \
 && install -D -m 0755 target/release/shipper /out/shipper

# distroless/cc: glibc + libgcc + CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/collector /out/shipper /usr/local/bin/
USER nonroot:nonroot
# Health, readiness and metrics (HTTP_ADDR); the Bicep sets 0.0.0.0:9464 / 0.0.0.0:9465.
EXPOSE 9464 9465
ENTRYPOINT ["/usr/local/bin/shipper"]
CMD ["run"]
