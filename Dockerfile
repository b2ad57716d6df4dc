# mailgate container image: a Rust builder at the toolchain of rust-toolchain.toml, then a
# minimal Debian runtime with only the binary, the CA certificates (backend TLS checks
# read the system roots) and an unprivileged user. Debian bookworm on both sides, so the
# binary's glibc matches. Deployed by deploy/kubernetes/deployment.yaml (same user id,
# same container ports); docs/kubernetes.md. tests/e2e/test_dockerfile.py keeps this file
# consistent with the build.
#
#   docker build -t mailgate:0.1.0 .

FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions of Cargo.lock, as CI builds them.
# mailgate_build_info's git_commit: docker build --build-arg MAILGATE_GIT_COMMIT=$(git rev-parse --short=12 HEAD)
ARG MAILGATE_GIT_COMMIT=unknown
ENV MAILGATE_GIT_COMMIT=${MAILGATE_GIT_COMMIT}
RUN cargo build --release --locked -p mailgate --bin mailgate \
    && install -D -m 0755 target/release/mailgate /out/usr/bin/mailgate \
    && /out/usr/bin/mailgate --version

FROM debian:bookworm-slim
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/usr/bin/mailgate /usr/bin/mailgate
RUN groupadd --system --gid 10001 mailgate \
    && useradd --system --uid 10001 --gid mailgate --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin mailgate
USER 10001:10001
# Unprivileged ports (no capability needed); a Service or `docker run -p 143:1143 ...`
# maps the standard ones onto them. 9143: admin (/metrics, /healthz, /readyz, API).
EXPOSE 1143 1993 1110 1995 9143
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/mailgate"]
CMD ["run", "-c", "/etc/mailgate/mailgate.yaml"]
