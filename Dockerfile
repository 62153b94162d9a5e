# The action's image: the static musl binary and a CA bundle on `scratch`, nothing else.
#
# The build context is laid out by `scripts/stage-image`, here and in the release workflow alike:
# cargo builds the binary natively for one platform, and this file only packages it. Build with
# `scripts/build-image`, or `docker build <context>` after staging.
#
#   bin/token-keeper             the static binary (and its two entrypoint names, as links)
#   ca-certificates.crt          the build host's CA bundle (Debian's or Ubuntu's ca-certificates)
#
# No base image: `scratch` has no shell, so the runner's `INPUT_*` variables are read from the
# environment by the binary itself. No USER and no WORKDIR: the runner sets both for actions.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Copying the folder keeps `token-keeper-main` and `token-keeper-post` as links to the binary.
COPY bin/ /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/token-keeper"]
