# The action's image: one static musl binary on `scratch`, with CA certificates.
# Built natively for each platform (linux/amd64, linux/arm64); see the README's release notes.

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
COPY examples ./examples
RUN cargo build --release --locked --bin token-keeper \
 && mkdir /out \
 && cp target/release/token-keeper /out/token-keeper \
 && ln -s token-keeper /out/token-keeper-main \
 && ln -s token-keeper /out/token-keeper-post

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Copying the folder keeps the two entrypoint names as links to the one binary.
COPY --from=build /out/ /usr/local/bin/
LABEL org.opencontainers.image.source="https://github.com/token-keeper/token-keeper" \
      org.opencontainers.image.description="Mint GitHub App tokens and keep them fresh for git in long jobs"
ENTRYPOINT ["/usr/local/bin/token-keeper"]
